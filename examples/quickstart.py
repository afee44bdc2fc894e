"""einjit in one minute: run ``python examples/quickstart.py``."""

import time

import numpy as np

import einjit

rng = np.random.default_rng(0)
a = rng.random((8, 32, 16))
b = rng.random((8, 16, 4))

# One-shot, numpy.einsum's signature.  The first call compiles (or loads from the disk
# cache); later calls with the same shapes, dtypes and layouts reuse the kernel.
start = time.perf_counter()
c = einjit.einsum("bij,bjk->bik", a, b)
first = time.perf_counter() - start
start = time.perf_counter()
c = einjit.einsum("bij,bjk->bik", a, b)
second = time.perf_counter() - start
assert np.allclose(c, np.einsum("bij,bjk->bik", a, b))
print(f"einsum bij,bjk->bik: first call {first * 1e3:.1f} ms, second {second * 1e6:.0f} us")


# The decorator: a body-less function becomes a compiled einsum that keeps its kernels.
@einjit.compile("bij,bjk->bik")
def bmm(a, b):
    """Batched matrix product."""


assert np.allclose(bmm(a, b), c)
print(bmm)

# Matrix chains are split into pairwise kernels along a contraction path.
x, y, z = rng.random((64, 32)), rng.random((32, 48)), rng.random((48, 16))
chain = einjit.einsum("ij,jk,kl->il", x, y, z)
assert np.allclose(chain, x @ y @ z)

# What einjit does: the plan, each kernel's loop nest and the generated Numba source.
print(einjit.explain("bij,bjk->bik", a, b))
print(einjit.cache_info())
