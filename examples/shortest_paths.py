"""All-pairs shortest paths by repeated min-plus squaring (the tropical semiring).

    python examples/shortest_paths.py

``D[i, j] = min_k A[i, k] + B[k, j]`` is a matrix product with ``min`` for the sum and
``+`` for the product.  Squaring the weight matrix ceil(log2(n)) times gives every
shortest path.  numpy users write ``(a[:, :, None] + b[None, :, :]).min(axis=1)``, an
n x n x n intermediate; einjit runs it as one loop nest per squaring.
"""

import math

import numpy as np

import einjit


@einjit.compile("ik,kj->ij", reduce="min")
def minplus(a, b):
    """One min-plus product: the shortest paths using a step of a, then a step of b."""
    return a + b


def shortest_paths(weights: np.ndarray) -> np.ndarray:
    """All-pairs shortest path lengths of a graph (``inf`` where there is no edge)."""
    d = weights.copy()
    np.fill_diagonal(d, np.minimum(np.diagonal(d), 0.0))
    for _ in range(max(1, math.ceil(math.log2(len(d))))):
        d = minplus(d, d)
    return d


def floyd_warshall(weights: np.ndarray) -> np.ndarray:
    """The textbook O(n^3) algorithm, as a reference."""
    d = weights.copy()
    np.fill_diagonal(d, np.minimum(np.diagonal(d), 0.0))
    for k in range(len(d)):
        d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
    return d


def main() -> None:
    rng = np.random.default_rng(0)
    n = 300
    weights = np.where(rng.random((n, n)) < 0.02, rng.uniform(1, 10, (n, n)), np.inf)
    d = shortest_paths(weights)
    reference = floyd_warshall(weights)
    finite = np.isfinite(d)
    agrees = (np.array_equal(finite, np.isfinite(reference))
              and np.allclose(d[finite], reference[finite], rtol=1e-12))
    print(f"{n} nodes: {finite.mean():.0%} of pairs connected; "
          f"agrees with Floyd-Warshall: {agrees}")
    print(f"longest shortest path: {d[np.isfinite(d)].max():.2f}")


if __name__ == "__main__":
    main()
