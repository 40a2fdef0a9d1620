"""Devices: where kernels run. nexec's own (CPU, CUDA) register through the same
``nexec_devices`` hook as a plugin's.

Example:
    >>> from nexec.devices import get_device
    >>> get_device("cpu").name
    'cpu'
"""
from __future__ import annotations

from nexec.devices.base import ALIGNMENT, Device, KernelNamespace
from nexec.errors import NexecError
from nexec.plugins import registry

__all__ = ["Device", "KernelNamespace", "ALIGNMENT", "get_device", "check_device",
           "available_devices"]


def _find(name: str) -> Device | None:
    key = name.lower()
    for device in registry().devices.values():
        if key == device.name or key in device.aliases:
            return device
    return None


def available_devices() -> list[str]:
    """The registered devices that can run here (``['cpu']`` plus ``'cuda:0'`` with a GPU)."""
    out = []
    for device in registry().devices.values():
        if device.available():
            out.append(device.aliases[0] if device.aliases and ":" in device.aliases[0]
                       else device.name)
    return out


def check_device(device: str) -> str:
    """The canonical name of ``device``, or a clear error when it is unknown or unusable."""
    if not isinstance(device, str):
        raise NexecError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}.")
    found = _find(device)
    if found is None:
        raise NexecError(f"Unknown device {device!r}; available: {available_devices()}.")
    if not found.available():
        raise NexecError(
            f"device={device!r} was asked for, but {found.unavailable_reason()} "
            f"Available here: {available_devices()}.")
    return found.name


def get_device(device: str) -> Device:
    """The registered device called ``device`` (after :func:`check_device`)."""
    found = _find(check_device(device))
    assert found is not None
    return found
