"""Plain NumPy float64 references of the fused activations, shared by the kernel tests."""
import numpy as np

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, TANH


def ref_sigmoid(x: np.ndarray) -> np.ndarray:
    """Sigmoid without overflow for large negative inputs."""
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def ref_act(z: np.ndarray, act: int) -> np.ndarray:
    """The activation ``act`` of ``z`` (softmax over the last axis), in float64."""
    z = np.asarray(z, dtype=np.float64)
    if act == LINEAR:
        return z.copy()
    if act == RELU:
        return np.maximum(z, 0.0)
    if act == SIGMOID:
        return ref_sigmoid(z)
    if act == TANH:
        return np.tanh(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_act_grad(y: np.ndarray, dy: np.ndarray, act: int) -> np.ndarray:
    """``dy`` through the activation whose output is ``y``, in float64."""
    y = np.asarray(y, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    if act == LINEAR:
        return dy.copy()
    if act == RELU:
        return dy * (y > 0)
    if act == SIGMOID:
        return dy * y * (1 - y)
    if act == TANH:
        return dy * (1 - y * y)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
