"""CPU kernels, compiled by Numba (``nexec.kernels.jit``): one module per op family."""
