"""Which devices this process can run on."""
from __future__ import annotations

__all__ = ["available_devices", "check_device"]


def available_devices() -> list[str]:
    """``['cpu']`` plus ``'cuda:N'`` for each GPU Numba can see; never raises."""
    out = ["cpu"]
    try:
        from numba import cuda

        if cuda.is_available():
            out += [f"cuda:{i}" for i in range(len(cuda.gpus))]
    except Exception:  # noqa: BLE001 - no driver, no toolkit, broken install: just no GPU
        pass
    return out


def check_device(device: str) -> str:
    """Normalises a device name, raising a clear error when it is not available."""
    from nexec.errors import NexecError

    device = device.lower()
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        raise NexecError(
            f"Device {device!r} is not supported by this version of nexec: the CUDA backend "
            f"is not implemented yet. Available here: {available_devices()}. Use device='cpu'.")
    raise NexecError(f"Unknown device {device!r}; available: {available_devices()}.")
