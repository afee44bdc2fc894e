"""Parse numpy.einsum's grammar into a frozen, canonical specification.

Two stages, both pure functions:

* :func:`parse_subscripts` turns the subscripts (a string, or numpy's interleaved sublist
  form) into an :class:`Equation`: one :class:`Term` per operand and the output term, or
  ``None`` for implicit output.  Nothing here looks at array shapes.
* :func:`bind` takes an :class:`Equation` and the operands' shapes, expands every ellipsis
  into concrete broadcast labels, resolves the implicit output, checks every size and
  returns an :class:`EinsumSpec`: each operand's labels, the output labels and the extent
  of every label.

Errors are ``ValueError`` or ``TypeError`` (the type numpy raises for the same input); the
message names the equation and the offending label, operand or dimension.

>>> eq = parse_subscripts("bij,bjk->bik")
>>> spec = bind(eq, [(2, 3, 4), (2, 4, 5)])
>>> spec.text
'bij,bjk->bik'
>>> spec.extents
(('b', 2), ('i', 3), ('j', 4), ('k', 5))
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Term", "Equation", "EinsumSpec", "parse_subscripts", "split_arguments", "bind"]

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Labels given to broadcast (ellipsis) dimensions: never a letter a user can write.
_BROADCAST_BASE = 0x3B1  # 'α'


def broadcast_label(k: int) -> str:
    """The label of the k-th broadcast dimension counted from the left of the output's '...'."""
    return chr(_BROADCAST_BASE + k)


def is_broadcast_label(label: str) -> bool:
    return label not in _LETTERS


@dataclass(frozen=True)
class Term:
    """One operand's (or the output's) subscripts before ellipsis expansion.

    ``labels`` are the letters in order; ``ellipsis`` is the position of ``...`` among
    them (``None`` when the term has none).
    """

    labels: tuple[str, ...]
    ellipsis: int | None = None

    def __str__(self) -> str:
        if self.ellipsis is None:
            return "".join(self.labels)
        return "".join(self.labels[: self.ellipsis]) + "..." + "".join(self.labels[self.ellipsis:])


@dataclass(frozen=True)
class Equation:
    """A parsed equation: input terms and the output term (``None`` means implicit)."""

    inputs: tuple[Term, ...]
    output: Term | None

    @property
    def text(self) -> str:
        lhs = ",".join(str(t) for t in self.inputs)
        return lhs if self.output is None else f"{lhs}->{self.output}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class EinsumSpec:
    """A canonical, shape-bound einsum.

    ``inputs[k]`` holds operand k's label per dimension (repeated labels kept: they mean a
    diagonal); ``output`` the output's labels; ``extents`` the broadcast extent of every
    label in order of first appearance.  Broadcast dimensions carry Greek labels (α, β...).
    """

    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]
    extents: tuple[tuple[str, int], ...]

    @property
    def text(self) -> str:
        return ",".join("".join(t) for t in self.inputs) + "->" + "".join(self.output)

    @property
    def size(self) -> dict[str, int]:
        return dict(self.extents)

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- parsing

def _parse_term(text: str, equation: str, where: str) -> Term:
    labels: list[str] = []
    ellipsis: int | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            i += 1
            continue
        if ch == ".":
            if text[i:i + 3] != "..." or ellipsis is not None:
                raise ValueError(
                    f"einsum {equation!r}: {where} contains a '.' that is not part of an "
                    "ellipsis ('...')")
            ellipsis = len(labels)
            i += 3
            continue
        if ch not in _LETTERS:
            reason = (f"einsum {equation!r}: invalid subscript {ch!r} in {where}; "
                      "subscripts must be letters (a-z, A-Z)")
            if not ch.isascii():  # numpy fails to encode it: keep its exception type
                pos = equation.find(ch)
                raise UnicodeEncodeError("ascii", equation, pos, pos + 1, reason)
            raise ValueError(reason)
        labels.append(ch)
        i += 1
    return Term(tuple(labels), ellipsis)


@functools.lru_cache(maxsize=1024)
def _parse_string(subscripts: str) -> Equation:
    equation = subscripts
    lhs, arrow, rhs = subscripts.partition("->")
    for part, where in ((lhs, "the inputs"), (rhs, "the output")):
        if "->" in part:
            raise ValueError(f"einsum {equation!r}: the subscripts string contains more "
                             "than one '->'")
        for ch in "->":
            if ch in part:
                raise ValueError(
                    f"einsum {equation!r}: {ch!r} in {where} is not part of a proper "
                    "'->' output specification")
    inputs = tuple(_parse_term(t, equation, f"operand {k}")
                   for k, t in enumerate(lhs.split(",")))
    output = _parse_term(rhs, equation, "the output") if arrow else None
    return Equation(inputs, output)


def _sublist_term(sublist: Any, where: str) -> Term:
    try:
        items = list(sublist)
    except TypeError:
        raise TypeError(
            f"einsum: the subscripts for {where} must be a list of integers or Ellipsis, "
            f"got {type(sublist).__name__}") from None
    labels: list[str] = []
    ellipsis: int | None = None
    for item in items:
        if item is Ellipsis:
            if ellipsis is not None:
                raise ValueError(f"einsum: {where} contains more than one Ellipsis")
            ellipsis = len(labels)
            continue
        try:
            if isinstance(item, bool):
                raise TypeError
            s = operator.index(item)
            if not -2**63 <= s < 2**63:  # numpy cannot even convert it
                raise TypeError
        except TypeError:
            raise TypeError(
                f"einsum: each subscript must be either an integer or an ellipsis; "
                f"{where} has {item!r}") from None
        if not 0 <= s < 52:
            raise ValueError(
                f"einsum: subscript {s} in {where} is not within the valid range [0, 52)")
        # numpy's mapping: 0-25 -> 'A'-'Z', 26-51 -> 'a'-'z' (it decides implicit order)
        labels.append(chr(ord("A") + s) if s < 26 else chr(ord("a") + s - 26))
    return Term(tuple(labels), ellipsis)


def split_arguments(args: Sequence[Any]) -> tuple[Equation, list[Any]]:
    """Split einsum's positional arguments into an :class:`Equation` and the operands.

    Accepts both ``("ij,jk->ik", a, b)`` and the interleaved sublist form
    ``(a, [0, 1], b, [1, 2], [0, 2])``.

    >>> eq, ops = split_arguments(("ij,jk", 1, 2))
    >>> eq.text, ops
    ('ij,jk', [1, 2])
    >>> split_arguments((1, [0, 1], 2, [1, 2], [0, 2]))[0].text
    'AB,BC->AC'
    """
    if not args:
        raise ValueError(
            "einsum: must specify the einstein sum subscripts string and at least one "
            "operand, or at least one operand and its corresponding subscripts list")
    if isinstance(args[0], bytes):  # numpy reads bytes subscripts as ASCII text too
        try:
            args = (args[0].decode("ascii"),) + tuple(args[1:])
        except UnicodeDecodeError:
            raise ValueError(f"einsum: the subscripts {args[0]!r} are not ASCII text") from None
    if isinstance(args[0], str):
        equation = _parse_string(args[0])
        operands = list(args[1:])
        if len(operands) > len(equation.inputs):
            raise ValueError(
                f"einsum {args[0]!r}: more operands provided ({len(operands)}) than "
                f"specified in the subscripts string ({len(equation.inputs)})")
        if len(operands) < len(equation.inputs):
            raise ValueError(
                f"einsum {args[0]!r}: fewer operands provided ({len(operands)}) than "
                f"specified in the subscripts string ({len(equation.inputs)})")
        return equation, operands
    if len(args) < 2:
        raise ValueError("einsum: must provide at least an operand and a subscripts list")
    operands = list(args[0:len(args) - len(args) % 2:2])
    inputs = tuple(_sublist_term(s, f"operand {k}") for k, s in enumerate(args[1::2]))
    output = _sublist_term(args[-1], "the output") if len(args) % 2 else None
    return Equation(inputs, output), operands


def as_subscripts(args: Sequence[Any]) -> tuple[Any, ...] | None:
    """The interleaved sublist form ``(a, [0, 1], b, [1, 2], [0, 2])`` spelled with a
    subscripts str, ``("AB,BC->AC", a, b)``, as numpy names the labels; None where
    ``args`` is not a valid sublist form (:func:`split_arguments` then says why).  The
    spelling is kept per sublists, so a repeated call in this form takes the string's
    fast path.

    >>> as_subscripts((1, [0, 1], 2, [1, Ellipsis], [Ellipsis]))
    ('AB,B...->...', 1, 2)
    >>> as_subscripts((1, [0, "i"])) is None
    True
    >>> as_subscripts((1, [0, 1], 2, [1, 2], [0, 2]))
    ('AB,BC->AC', 1, 2)

    ASCII ``bytes`` subscripts, which numpy reads as text, come back as a str too:

    >>> as_subscripts((b"ij->", 1))
    ('ij->', 1)
    """
    if args and type(args[0]) is bytes:
        try:
            return (args[0].decode("ascii"), *args[1:])
        except UnicodeDecodeError:  # the full way reports it
            return None
    odd = len(args) % 2 == 1
    given = tuple(args[1::2]) + ((args[-1],) if odd and len(args) > 1 else ())
    # Only lists of Python ints and Ellipsis: a cache key compares 1.0 and True equal to 1,
    # which numpy refuses as subscripts.
    if len(args) < 2 or not all(type(s) is list and all(type(x) is int or x is Ellipsis
                                                          for x in s) for s in given):
        return None
    try:
        text = _sublist_text(tuple(tuple(s) for s in given), odd)
    except (TypeError, ValueError):  # invalid: the full way reports it
        return None
    return (text, *args[0:len(args) - len(args) % 2:2])


@functools.lru_cache(maxsize=1024)
def _sublist_text(sublists: tuple[tuple[Any, ...], ...], has_output: bool) -> str:
    inputs = sublists[:-1] if has_output else sublists
    terms = tuple(_sublist_term(list(s), f"operand {k}") for k, s in enumerate(inputs))
    output = _sublist_term(list(sublists[-1]), "the output") if has_output else None
    return Equation(terms, output).text


def parse_subscripts(subscripts: str) -> Equation:
    """Parse a subscripts string (no operands needed).

    >>> parse_subscripts("...ij, ...jk").inputs[0]
    Term(labels=('i', 'j'), ellipsis=0)
    """
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a str, got {type(subscripts).__name__}")
    return _parse_string(subscripts)


# --------------------------------------------------------------------------- binding

def _expand(term: Term, ndim: int, n_broadcast: int, equation: str, k: int) -> tuple[str, ...]:
    named = len(term.labels)
    if term.ellipsis is None:
        if ndim > named:
            raise ValueError(
                f"einsum {equation!r}: operand {k} has {ndim} dimensions but only {named} "
                "subscripts, and no '...' ellipsis to broadcast the extra dimensions")
        if ndim < named:
            raise ValueError(
                f"einsum {equation!r}: the subscripts string contains too many subscripts "
                f"({named}) for operand {k}, which has {ndim} dimensions")
        return term.labels
    extra = ndim - named
    if extra < 0:
        raise ValueError(
            f"einsum {equation!r}: the subscripts string contains too many subscripts "
            f"({named}) for operand {k}, which has {ndim} dimensions")
    bcast = tuple(broadcast_label(n_broadcast - extra + j) for j in range(extra))
    return term.labels[:term.ellipsis] + bcast + term.labels[term.ellipsis:]


def bind(equation: Equation, shapes: Sequence[tuple[int, ...]]) -> EinsumSpec:
    """Bind an equation to operand shapes (memoised; see :func:`_bind`).

    >>> bind(parse_subscripts("...i,i"), [(2, 3), (3,)]).text
    'αi,i->α'
    >>> bind(parse_subscripts("ba"), [(2, 3)]).output
    ('a', 'b')
    """
    return _bind(equation, tuple(tuple(s) for s in shapes))


@functools.lru_cache(maxsize=4096)
def _bind(equation: Equation, shapes: tuple[tuple[int, ...], ...]) -> EinsumSpec:
    """Bind an equation to operand shapes: expand ellipses, resolve implicit output, check sizes."""
    text = equation.text
    if len(shapes) != len(equation.inputs):
        raise ValueError(
            f"einsum {text!r}: {len(shapes)} operands given for {len(equation.inputs)} terms")
    n_broadcast = 0
    for k, (term, shape) in enumerate(zip(equation.inputs, shapes)):
        if term.ellipsis is not None:
            n_broadcast = max(n_broadcast, len(shape) - len(term.labels))
    inputs = tuple(_expand(t, len(s), n_broadcast, text, k)
                   for k, (t, s) in enumerate(zip(equation.inputs, shapes)))

    # Extents: equal within one operand (a diagonal), broadcast (1 vs n) across operands.
    extent: dict[str, int] = {}
    for k, (labels, shape) in enumerate(zip(inputs, shapes)):
        own: dict[str, int] = {}
        for label, n in zip(labels, shape):
            if label in own and own[label] != n:
                raise ValueError(
                    f"einsum {text!r}: dimensions in operand {k} for collapsing index "
                    f"{label!r} don't match ({own[label]} != {n})")
            own[label] = n
        for label, n in own.items():
            m = extent.get(label)
            if m is None or m == 1:
                extent[label] = n
            elif n != 1 and n != m:
                what = ("broadcast dimension" if is_broadcast_label(label)
                        else f"index {label!r}")
                raise ValueError(
                    f"einsum {text!r}: operands could not be broadcast together: "
                    f"{what} has size {m} in an earlier operand and {n} in operand {k}")

    all_bcast = tuple(broadcast_label(j) for j in range(n_broadcast))
    if equation.output is None:
        counts: dict[str, int] = {}
        for labels in inputs:
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
        named = sorted(lb for lb, c in counts.items() if c == 1 and not is_broadcast_label(lb))
        output = all_bcast + tuple(named)
    else:
        out = equation.output
        seen: set[str] = set()
        for label in out.labels:
            if label in seen:
                raise ValueError(
                    f"einsum {text!r}: output subscript {label!r} appears more than once")
            seen.add(label)
            if label not in extent:
                raise ValueError(
                    f"einsum {text!r}: output subscript {label!r} does not appear in the "
                    "input subscripts")
        if out.ellipsis is None:
            if any(extent.get(lb) is not None for lb in all_bcast):
                raise ValueError(
                    f"einsum {text!r}: the operands have broadcast ('...') dimensions but "
                    "the output has no '...' ellipsis to hold them")
            output = out.labels
        else:
            output = out.labels[:out.ellipsis] + all_bcast + out.labels[out.ellipsis:]
    order = {}
    for labels in inputs:
        for label in labels:
            order.setdefault(label, extent[label])
    return EinsumSpec(inputs, tuple(output), tuple(order.items()))
