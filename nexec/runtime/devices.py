"""Which devices this process can run on."""
from __future__ import annotations

__all__ = ["available_devices", "check_device"]


def available_devices() -> list[str]:
    """``['cpu']`` plus ``'cuda:N'`` for each GPU Numba can see; never raises."""
    from nexec.kernels.cuda import backend

    # One device per process for now: the executor allocates on the current CUDA device.
    return ["cpu", "cuda:0"] if backend.is_available() else ["cpu"]


def check_device(device: str) -> str:
    """Normalises a device name, raising a clear error when it is not available."""
    from nexec.errors import NexecError

    device = device.lower()
    if device == "cpu":
        return device
    if device in ("cuda", "cuda:0", "gpu"):
        from nexec.kernels.cuda import backend

        if not backend.is_available():
            raise NexecError(
                f"device={device!r} was asked for, but no CUDA GPU is usable here "
                f"({backend.unavailable_reason()}). nexec runs on NVIDIA GPUs through Numba: "
                "install the driver and `pip install 'nexec[cuda]'`; to try the CUDA path "
                "without a GPU, set NUMBA_ENABLE_CUDASIM=1 before starting Python (slow). "
                f"Available here: {available_devices()}.")
        return "cuda"
    raise NexecError(f"Unknown device {device!r}; available: {available_devices()}.")
