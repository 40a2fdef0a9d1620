"""The backend module: the one importer of numba.cuda, availability, launch helpers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nexec.kernels.cuda as cuda_pkg
from nexec.kernels.cuda import backend

pytestmark = [pytest.mark.cudasim]  # no skip: these checks need neither GPU nor simulator

PKG = Path(cuda_pkg.__file__).parent


def imports_numba_cuda(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            if any(a.name == "numba.cuda" or a.name.startswith("numba.cuda.")
                   or a.name.startswith("numba_cuda") for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(("numba.cuda", "numba_cuda")):
                return True
            if node.module == "numba" and any(a.name == "cuda" for a in node.names):
                return True
    return False


def test_only_backend_imports_numba_cuda():
    files = sorted(PKG.glob("*.py"))
    assert {f.name for f in files} >= {"backend.py", "activation.py", "dense.py", "conv.py",
                                       "merge.py", "loss.py", "optimizer.py"}
    offenders = [f.name for f in files if f.name != "backend.py" and imports_numba_cuda(f)]
    assert offenders == []
    assert imports_numba_cuda(PKG / "backend.py")


def test_is_available_never_raises_and_is_bool(monkeypatch):
    assert isinstance(backend.is_available(), bool)

    class Broken:
        def is_available(self):
            raise RuntimeError("driver exploded")

    monkeypatch.setattr(backend, "cuda", Broken())
    assert backend.is_available() is False
    monkeypatch.setattr(backend, "cuda", None)
    assert backend.is_available() is False
    assert "cannot be imported" in backend.unavailable_reason()
    with pytest.raises(backend.CudaUnavailableError):
        backend.device_array((2,))


def test_launch_helpers():
    assert backend.cdiv(0, 16) == 0 and backend.cdiv(17, 16) == 2
    assert [backend.pow2_at_least(n, 256) for n in (0, 1, 3, 32, 33, 1000)] == \
        [1, 1, 4, 32, 64, 256]
    for n in (1, 5, 31, 1000, 10 ** 7):
        blocks, threads = backend.config_1d(n)
        assert threads & (threads - 1) == 0 and threads <= backend.MAX_THREADS
        assert 1 <= blocks <= backend.max_blocks()
    if backend.is_simulator():
        assert backend.max_threads() == 32 and backend.max_blocks() == 2


def test_stand_in_jit_decorates_but_refuses_to_launch():
    """What kernel modules get when numba.cuda cannot be imported at all."""
    def kernel(a):
        a[0] = 1

    for decorated in (backend._unavailable_jit(kernel),
                      backend._unavailable_jit(device=True)(kernel)):
        with pytest.raises(backend.CudaUnavailableError):
            decorated[1, 32]([0])
        with pytest.raises(backend.CudaUnavailableError):
            decorated([0])
