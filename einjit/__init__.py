"""einjit: Einstein summation compiled to fused Numba kernels.

>>> import numpy as np, einjit
>>> einjit.einsum("i,i->", np.arange(3.0), np.arange(3.0))
np.float64(5.0)
"""

from .api import CompiledEinsum, compile, einsum
from .cache import cache_info
from .engine import clear_cache
from .explain import Explanation, explain

__version__ = "0.1.0"

__all__ = ["einsum", "compile", "CompiledEinsum", "explain", "Explanation", "cache_info",
           "clear_cache", "__version__"]
