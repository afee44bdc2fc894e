"""The forward algorithm of a hidden Markov model, in log space.

    python examples/hmm_forward.py

Each step is ``alpha'[j] = logsumexp_i(alpha[i] + logA[i, j]) + logB[j, o_t]``: a
log-space matrix-vector product.  ``reduce="logsumexp"`` keeps it finite where
exponentiating would underflow (long sequences) or overflow, without building the
n x n matrix ``alpha[:, None] + logA`` and without a separate max pass.
"""

import numpy as np

import einjit


@einjit.compile("i,ij->j", reduce="logsumexp")
def log_step(alpha, log_a):
    """log sum_i exp(alpha[i] + log_a[i, j]), computed stably."""
    return alpha + log_a


def forward(log_pi: np.ndarray, log_a: np.ndarray, log_b: np.ndarray,
            observations: np.ndarray) -> float:
    """log P(observations) under the model (initial, transition, emission log-probs)."""
    alpha = log_pi + log_b[:, observations[0]]
    for o in observations[1:]:
        alpha = log_step(alpha, log_a) + log_b[:, o]
    return float(np.logaddexp.reduce(alpha))


def forward_scaled(pi: np.ndarray, a: np.ndarray, b: np.ndarray,
                   observations: np.ndarray) -> float:
    """The same in probability space with per-step scaling (a reference)."""
    alpha = pi * b[:, observations[0]]
    total = np.log(alpha.sum())
    alpha /= alpha.sum()
    for o in observations[1:]:
        alpha = (alpha @ a) * b[:, o]
        total += np.log(alpha.sum())
        alpha /= alpha.sum()
    return float(total)


def main() -> None:
    rng = np.random.default_rng(0)
    states, symbols, length = 64, 16, 2000
    a = rng.dirichlet(np.ones(states), size=states)
    b = rng.dirichlet(np.ones(symbols), size=states)
    pi = rng.dirichlet(np.ones(states))
    observations = rng.integers(0, symbols, length)
    log_likelihood = forward(np.log(pi), np.log(a), np.log(b), observations)
    reference = forward_scaled(pi, a, b, observations)
    print(f"log P(observations) over {length} steps: {log_likelihood:.6f} "
          f"(scaled reference {reference:.6f}; probability itself underflows to "
          f"{np.exp(log_likelihood)})")


if __name__ == "__main__":
    main()
