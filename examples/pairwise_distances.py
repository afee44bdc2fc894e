"""Pairwise squared Euclidean distances, fused: no N x M x D intermediate.

    python examples/pairwise_distances.py

numpy users write ``((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)``, which builds an
N x M x D array first.  With einjit the difference, the square and the sum over ``d``
are one loop nest.
"""

import numpy as np

import einjit


@einjit.compile("id,jd->ij")
def sqdist(x, y):
    """Squared distance between every row of x and every row of y."""
    return (x - y) ** 2


def main() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2000, 32)), rng.standard_normal((1500, 32))
    d = sqdist(x, y)
    # the same distances through the expanded formula (a matrix product): a check
    check = (x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T
    print(f"distances {d.shape}, dtype {d.dtype}; max |difference| from the expanded "
          f"formula: {np.max(np.abs(d - check)):.2e}")
    nearest = d.argmin(axis=1)
    print(f"nearest row of y to the first five rows of x: {nearest[:5].tolist()}")
    print(sqdist.explain(x, y).plan)


if __name__ == "__main__":
    main()
