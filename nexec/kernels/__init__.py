"""Numba kernels: functions over arrays that write into given outputs.

Kernels know nothing of layers or graphs. ``cpu/`` and ``cuda/`` hold one module per op
family with the same file names.
"""
