"""The memory order of the intermediates a split plan computes.

An intermediate is a C-ordered array whose axes the planner may order freely.  Two rules
choose that order: :func:`laid_out_like` puts the indices it shares with its next partner
innermost, in the partner's order, so that a loop nest reads both alike; and where the
intermediate is made and then consumed by matrix products (BLAS), :func:`for_products`
picks the order that lets both products read and write their matrices in place, since a
transposing copy of a large array costs more than the product itself (numpy permutes a
1M-element float32 array of four axes in about 3 ms; a 32 x 32 x 32768 product takes
about 1 ms).

All orders here are label tuples, outermost first, as the arrays are laid out (inputs are
taken to be C-ordered).
"""

from __future__ import annotations

import functools
from typing import AbstractSet, Callable, Sequence

#: Where loops consume an intermediate, a product writes it in another order only when
#: the scheduler's model finds that order this much cheaper (a batch of products laid
#: out as one: ``bn,anm,bm->ba``'s anm x bm written as one 8192 x 128 by 128 x 256
#: product, float32 7.0 -> 6.3 ms in all, float64 11.6 -> 10.7).
BATCH_MARGIN = 1 / 16

__all__ = ["laid_out_like", "for_products"]

Labels = tuple[str, ...]


def laid_out_like(out: Labels, partners: Sequence[Labels],
                  kept: AbstractSet[str] = frozenset()) -> Labels:
    """An intermediate's index order, from the operands it will next be combined with.

    The indices it shares with its largest partner go innermost, in the partner's order,
    so the consuming step reads both alike: ``ki`` then ``ik`` becomes ``ki`` and ``ki``
    (no transposed access), and in a matrix product the summed indices of both operands
    merge into one axis without a copy.  Without partners the order stays as it is.
    (The caller lists the result as a partner too where the consuming step writes it:
    ``ab,dca->dcb`` then ``dcb,db->dcb`` writes the intermediate as ``dcb``, the layout
    ``dca`` has, where ``db`` alone made it ``cdb``, a copy of ``dca`` first.)

    Where the consuming step is a matrix product (each operand has an index of its own,
    and they share a summed one), the shared indices in ``kept`` (those it keeps: its
    batch indices) go before the summed ones: a batch index innermost would leave no
    matrix with a unit stride, and BLAS would take a copy of the intermediate
    (``abd,cbd->cad`` lays the intermediate out ``cdb``, not ``cbd``).

    >>> laid_out_like(("i", "k"), [("k", "i")])
    ('k', 'i')
    >>> laid_out_like(("c", "a", "d"), [("c", "b", "d")], kept=frozenset("cab"))
    ('a', 'c', 'd')
    """
    if not partners:
        return out
    other = max(partners, key=lambda t: (len(set(t) & set(out)), len(t)))
    shared = [lb for lb in other if lb in out]
    if set(other) - set(out) and set(out) - set(other) and set(shared) - kept:
        shared = [lb for lb in shared if lb in kept] + [lb for lb in shared if lb not in kept]
    return tuple(lb for lb in out if lb not in shared) + tuple(shared)


def for_products(first: Labels, args: Sequence[Labels], partner: Labels | None,
                 kept: AbstractSet[str], final: Labels | None,
                 cost: Callable[[Sequence[Labels], Labels], float | None]) -> Labels:
    """The order of an intermediate made by the product of ``args`` and then combined
    with ``partner`` into a result over the indices in ``kept``, laid out ``final``
    (None: not decided yet).  Where the partner is not made yet (None), ``first``: the
    loops that consume it read it best so.  Where that second step is no matrix product,
    ``first`` too unless the product writes another candidate order (below) cheaper by
    :data:`BATCH_MARGIN`, as fewer, larger matrices.

    The candidates are ``first`` (what :func:`laid_out_like` gave) and the orders in
    which either product reads or writes the intermediate as one matrix (or a stack of
    them): its batch, row and column indices as the operands have them, the batch first
    or last.  ``cost(args, out)`` weighs a product (seconds by the scheduler's model,
    None when it would not run as one); the consuming product is weighed writing the
    order it would read and write in place where ``final`` is None.  The cheapest pair
    wins, ``first`` on a tie.

    >>> from einjit.ir import Index, Kernel, Operand, SUM, product
    >>> from einjit.gemm import gemm_cost
    >>> def cost(args, out):  # float32, every extent 32
    ...     labels = dict.fromkeys(out + sum(args, ()))
    ...     return gemm_cost(Kernel("k", tuple(Operand(f"a{i}", "float32", x)
    ...                                        for i, x in enumerate(args)),
    ...                             Operand("out", "float32", out),
    ...                             tuple(Index(lb, 32) for lb in labels),
    ...                             product(2, args), SUM, "float32"))
    >>> # e,a @ a,b,c,d -> ? then f,b with it, keeping c, d, e (and f)
    >>> for_products(("e", "c", "d", "b"), (("e", "a"), ("a", "b", "c", "d")),
    ...              ("f", "b"), frozenset("cdef"), None, cost)
    ('b', 'c', 'd', 'e')
    """
    if partner is None:
        return first
    here = set(first)

    @functools.cache
    def used(order: Labels) -> float | None:
        if final is not None:
            result = final
        else:  # as the consuming product would write it in place
            both = tuple(lb for lb in order if lb in kept and lb in partner)
            result = (both + tuple(lb for lb in order if lb in kept and lb not in both)
                      + tuple(lb for lb in partner if lb in kept and lb not in here))
        return cost((order, partner), result)

    @functools.cache
    def made(order: Labels) -> float | None:  # the product writing ``order``
        return cost(args, order)

    a, b = args
    batch = tuple(lb for lb in first if lb in a and lb in b)
    m = tuple(lb for lb in a if lb in here and lb not in b)
    n = tuple(lb for lb in b if lb in here and lb not in a)
    candidates = [first]
    for rows, cols in ((m, n), (n, m)):
        candidates += [batch + rows + cols, rows + cols + batch]
    if used(first) is None:
        # the consumer is loops, which read the intermediate once whatever its order:
        # an order the product writes as fewer, larger matrices wins by a clear margin
        own = made(first)
        if own is None:
            return first
        best = min(dict.fromkeys(candidates), key=lambda order: made(order) or own)
        return best if (made(best) or own) < own * (1 - BATCH_MARGIN) else first
    own = tuple(lb for lb in first if lb in kept and lb not in partner)
    summed = tuple(lb for lb in partner if lb in here and lb not in kept)
    rest = tuple(lb for lb in first if lb not in own and lb not in summed)
    candidates += [rest + own + summed, rest + summed + own]
    return min(dict.fromkeys(candidates),  # the first of equals: ``first``
               key=lambda order: (made(order) or 0.0) + (used(order) or 0.0))
