"""Code generators: each renders einjit's IR for one target and decides nothing.

* :mod:`einjit.codegen.numba_cpu`: loop nests as ``numba.njit`` modules (the CPU target).
* :mod:`einjit.codegen.numpy_ufunc`: kernels as numpy ufunc calls (object arrays, long
  double, and a readable reference).
"""
