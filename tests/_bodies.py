"""Bodies and reductions shared by the CPU tests (test_body.py) and the CUDA simulator's
(cuda_sim/sim_kernels.py): each function is the loop body of an ``einjit.compile``."""

import math

import numpy as np

REDUCTIONS = ["sum", "prod", "max", "min", "any", "all", "logsumexp"]


def sqdiff(x, y):
    return (x - y) ** 2


def absdiff(x, y):
    return abs(x - y)


def gauss(x, y):
    return np.exp(-x * y)


def norm(x, y):
    return math.sqrt(x * x + y * y)


def greater(x, y):
    return x > y


def larger(x, y):
    return x if x > y else y  # noqa: FURB136 - the body under test is 'a if c else b'


def plus(x, y):
    return x + y


def clipped(x, y):
    return min(max(x - y, -0.5), 0.5) + math.log1p(abs(x)) - np.tanh(y) / 2
