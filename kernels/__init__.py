"""Numba kernels: pure functions over arrays (sketch updates, divergence measures)."""
