"""einjit.einsum against numpy.einsum on a fixed catalogue of equations.

Every entry of ``EQUATIONS`` runs in float64; a representative subset runs in every
supported dtype and memory layout; the keyword arguments (``out``, ``dtype``,
``casting``, ``order``, ``optimize``), the interleaved sublist form, Python scalars and
lists get their own tests.  See ``_reference.py`` for the comparison rule.

Sizes are tiny on purpose: every distinct (equation, shapes, dtypes) compiles a
Numba kernel.
"""
from __future__ import annotations

import string
import zlib

import numpy as np
import pytest

from _reference import (
    ALL_DTYPES,
    LAYOUTS,
    check_einsum,
    check_raises_like_numpy,
    dtype_id,
    make_operands,
    random_array,
    to_interleaved,
    with_layout,
)

# (equation, operand shapes)
EQUATIONS = [
    # ---- explicit output -------------------------------------------------------
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij->ij", [(2, 3)]),
    ("i->i", [(5,)]),
    ("i->", [(5,)]),
    ("ij->", [(3, 4)]),
    ("ij->i", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("i,i->", [(5,), (5,)]),
    ("ij,j->i", [(3, 4), (4,)]),
    ("i,ij->j", [(3,), (3, 4)]),
    ("ijk->ik", [(2, 3, 4)]),
    ("ijk,jl->ilk", [(2, 3, 2), (3, 4)]),
    ("ij,jk->ki", [(3, 2), (2, 4)]),
    ("ij,kj->ik", [(2, 5), (3, 5)]),
    # ---- implicit output (labels seen once, in alphabetical order) --------------
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij", [(2, 3)]),
    ("ji", [(2, 3)]),
    ("i", [(4,)]),
    ("i,i", [(4,), (4,)]),
    ("ij,ij", [(2, 3), (2, 3)]),
    ("ij,jk,kl", [(2, 3), (3, 2), (2, 4)]),
    ("cba", [(2, 3, 4)]),
    ("a,b", [(2,), (3,)]),
    ("b,a", [(2,), (3,)]),
    ("ijk,jil", [(2, 3, 4), (3, 2, 2)]),
    ("kj,ji", [(2, 3), (3, 4)]),
    # ---- ellipsis in operands and output -----------------------------------------
    ("...->...", [(2, 3)]),
    ("...ij->...ji", [(2, 3, 4)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 2)]),
    ("...ij,...jk->...ik", [(3, 4), (2, 4, 2)]),  # different numbers of broadcast dims
    ("...ij,...jk->...ik", [(1, 3, 4), (2, 4, 2)]),  # size-1 broadcast
    ("...ij,...jk->...ik", [(2, 1, 3, 2), (3, 2, 2)]),  # (2,1) x (3,) -> (2,3)
    ("ij...,jk...->ik...", [(2, 3, 4), (3, 2, 4)]),
    ("ij...,jk...->ik...", [(2, 3, 4, 1), (3, 2, 3)]),
    ("i...->...", [(3, 2, 4)]),
    ("...i->...", [(2, 4, 3)]),
    ("i...i->...", [(3, 2, 3)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("...,...", [(2, 1), (1, 3)]),  # implicit with ellipsis
    ("...i,...i", [(2, 3), (3,)]),
    ("i...,i", [(3, 2, 5), (3,)]),
    ("ab...,bc...", [(2, 3), (3, 4, 2)]),  # implicit: '...ac'
    ("...", [(2, 3)]),
    ("...", [()]),
    ("...ab", [(2, 3, 4)]),
    ("ab...", [(2, 3, 4)]),  # implicit output puts the ellipsis first
    ("...,->...", [(2, 3), ()]),
    ("i...->i", [(3,)]),  # ellipsis of zero dims
    ("...ij->...", [(2, 3, 4)]),
    ("a...b,b...c->...ac", [(2, 3, 4), (4, 3, 2)]),
    ("...a,...a->...", [(4, 1, 3), (2, 3)]),
    ("i,...->...i", [(3,), (2, 2)]),
    ("...ij,j->...i", [(2, 2, 3, 4), (4,)]),
    ("ij...,jk->ik...", [(2, 3), (3, 4)]),
    ("...i,...j->...ij", [(3, 2), (1, 3)]),
    ("...i,i...->i...", [(2, 3), (3, 2)]),
    # ---- repeated labels within one operand: diagonals and traces --------------
    ("ii->i", [(4, 4)]),
    ("ii->", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("iij->j", [(3, 3, 4)]),
    ("iij->ij", [(3, 3, 2)]),
    ("iij->ji", [(3, 3, 2)]),
    ("iii->i", [(3, 3, 3)]),
    ("iii->", [(3, 3, 3)]),
    ("iji->j", [(3, 4, 3)]),
    ("iji->ij", [(3, 4, 3)]),
    ("jii->ij", [(2, 3, 3)]),
    ("ijij->ij", [(2, 3, 2, 3)]),
    ("iijj->", [(2, 2, 3, 3)]),
    ("iijj->ij", [(2, 2, 3, 3)]),
    ("ijji->ji", [(2, 3, 3, 2)]),
    ("ijkj->ik", [(2, 3, 2, 3)]),
    ("ii,i->i", [(3, 3), (3,)]),
    ("ii,jj->ij", [(2, 2), (3, 3)]),
    ("ii,ii->", [(3, 3), (3, 3)]),
    ("ijj,jk->ik", [(2, 3, 3), (3, 4)]),
    ("aab,bcc->ac", [(2, 2, 3), (3, 4, 4)]),
    ("iij", [(2, 2, 3)]),  # implicit: 'j'
    ("jii", [(3, 2, 2)]),
    ("iii", [(3, 3, 3)]),
    ("ii->i", [(1, 1)]),
    ("ijkijk->ijk", [(2, 1, 3, 2, 1, 3)]),
    # ---- repeated labels across operands, size 1 against size n (broadcast) ------
    ("i,i->i", [(1,), (4,)]),
    ("i,i->", [(4,), (1,)]),
    ("ij,jk->ik", [(2, 1), (3, 4)]),
    ("ij,jk->ik", [(2, 3), (1, 4)]),
    ("ij,ij->ij", [(1, 3), (2, 1)]),
    ("ij,ij->i", [(2, 1), (2, 3)]),
    ("ij,j->ij", [(2, 3), (1,)]),
    ("ijk,ijk->", [(1, 3, 1), (2, 1, 4)]),
    ("i,i,i->i", [(1,), (3,), (1,)]),
    ("ij,jk,kl->il", [(2, 1), (3, 1), (1, 2)]),
    ("ii,i->i", [(1, 1), (3,)]),
    ("ii,i->i", [(3, 3), (1,)]),
    ("bij,bjk->bik", [(1, 2, 3), (4, 3, 2)]),
    # ---- whitespace ---------------------------------------------------------------
    (" ij , jk -> ik ", [(2, 3), (3, 4)]),
    ("ij,jk ->ik", [(2, 3), (3, 4)]),
    ("i j -> j i", [(2, 3)]),
    (" ii ", [(3, 3)]),
    ("... ij , ... jk -> ... ik", [(2, 2, 3), (3, 2)]),
    ("i, i", [(3,), (3,)]),
    # ---- upper- and lower-case labels ---------------------------------------------
    ("Ab,bC->AC", [(2, 3), (3, 4)]),
    ("aA->Aa", [(2, 3)]),
    ("aA", [(2, 3)]),  # implicit: upper case sorts first -> 'Aa'
    ("aB", [(2, 3)]),  # implicit: 'B' sorts before 'a' -> a transpose
    ("iJ,jK", [(2, 3), (3, 4)]),  # implicit: 'JKij'
    ("Zz,zY->YZ", [(2, 3), (3, 4)]),
    ("iI,Ij->ij", [(2, 3), (3, 2)]),
    ("Aa,aA", [(2, 3), (3, 2)]),
    ("AB,ab->ABab", [(2, 1), (1, 3)]),
    ("Ii->I", [(3, 3)]),
    (string.ascii_lowercase + "->" + string.ascii_lowercase[::-1], [(1,) * 23 + (2, 3, 2)]),
    (
        "abcdefghijklm,ABCDEFGHIJKLM->aAmM",
        [(2,) + (1,) * 11 + (3,), (3,) + (1,) * 11 + (2,)],
    ),
    ("xyzXYZ,XYZ->xyz", [(2, 1, 2, 3, 1, 2), (3, 1, 2)]),
    # ---- 0-d operands -------------------------------------------------------------
    ("->", [()]),
    ("", [()]),
    (",->", [(), ()]),
    (",", [(), ()]),
    ("i,->i", [(3,), ()]),
    (",i->i", [(), (3,)]),
    (",ij->ji", [(), (2, 3)]),
    (",,->", [(), (), ()]),
    ("ij,,jk->ik", [(2, 3), (), (3, 2)]),
    ("i,->", [(4,), ()]),
    # ---- one to many operands --------------------------------------------------------
    ("i,j,k->ijk", [(2,), (3,), (2,)]),
    ("i,i,i->", [(4,), (4,), (4,)]),
    ("ij,ik,il,im->jklm", [(2, 2), (2, 3), (2, 1), (2, 2)]),
    ("a,b,c,d,e,f->abcdef", [(2,), (1,), (2,), (3,), (1,), (2,)]),
    ("i,i,i,i,i,i->", [(3,)] * 6),
    ("i,i,i,i,i,i->i", [(3,)] * 6),
    ("ab,ac,ad,bc,bd,cd->", [(2, 3), (2, 2), (2, 3), (3, 2), (3, 3), (2, 3)]),
    ("abc,bcd,cde,def->af", [(2, 2, 3), (2, 3, 2), (3, 2, 2), (2, 2, 3)]),
    ("ij,jk,kl,lm->im", [(2, 3), (3, 2), (2, 3), (3, 2)]),
    ("ab,bc,cd,de,ef->af", [(2, 3), (3, 2), (2, 3), (3, 2), (2, 2)]),
    ("ab,bc,cd,de,ef,fg->ag", [(2, 2), (2, 3), (3, 2), (2, 2), (2, 3), (3, 2)]),
    ("ea,fb,abcd,gc,hd->efgh", [(2, 2), (2, 3), (2, 3, 2, 2), (3, 2), (2, 2)]),
    ("i,ij,jk,k->", [(3,), (3, 2), (2, 4), (4,)]),
    ("ab,cd,ef,gh->", [(2, 2), (1, 2), (2, 1), (2, 2)]),
    ("abc,cde,efg->abdfg", [(2, 1, 2), (2, 2, 3), (3, 2, 2)]),
    # ---- matrix chains ------------------------------------------------------------------
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ab,bc,cd->ad", [(3, 2), (2, 5), (5, 3)]),
    ("ij,jk,kl,lm,mn->in", [(2, 3), (3, 2), (2, 3), (3, 2), (2, 2)]),
    ("ij,jk,ki->", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk,ki->i", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk,kl->li", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk,kl,li->", [(2, 3), (3, 2), (2, 3), (3, 2)]),
    ("ij,j,jk->ik", [(2, 3), (3,), (3, 2)]),
    # ---- Hadamard-like (element-wise) ------------------------------------------------------
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,ij,ij->ij", [(2, 3), (2, 3), (2, 3)]),
    ("i,i->i", [(5,), (5,)]),
    ("ijk,ijk->ijk", [(2, 3, 2), (2, 3, 2)]),
    ("ij,ji->ij", [(2, 3), (3, 2)]),
    ("ij,ij->ji", [(2, 3), (2, 3)]),
    ("ijk,kji->ijk", [(2, 3, 4), (4, 3, 2)]),
    ("ij,ij->", [(3, 4), (3, 4)]),
    ("i,i,i->i", [(4,), (4,), (4,)]),
    ("ij,i->ij", [(3, 4), (3,)]),
    # ---- outer products ----------------------------------------------------------------------
    ("i,j->ij", [(3,), (4,)]),
    ("i,j->ji", [(3,), (4,)]),
    ("ij,kl->ijkl", [(2, 3), (2, 2)]),
    ("ij,kl->ljki", [(2, 3), (2, 2)]),
    ("i,j,k->kji", [(2,), (3,), (2,)]),
    ("a,bc->abc", [(3,), (2, 2)]),
    ("ab,c->cab", [(2, 3), (2,)]),
    ("i,j", [(2,), (3,)]),
    # ---- transposes ---------------------------------------------------------------------------
    ("ij->ji", [(3, 4)]),
    ("ijk->kij", [(2, 3, 4)]),
    ("ijk->jki", [(2, 3, 4)]),
    ("ijkl->lkji", [(2, 3, 2, 3)]),
    ("abcde->ecadb", [(2, 1, 3, 2, 2)]),
    ("ijk->ikj", [(1, 3, 1)]),
    ("ba->ab", [(4, 2)]),
    # ---- batched matrix multiplication --------------------------------------------------------
    ("bij,bjk->bik", [(3, 2, 3), (3, 3, 2)]),
    ("bij,bjk->bki", [(3, 2, 3), (3, 3, 2)]),
    ("ijb,jkb->ikb", [(2, 3, 3), (3, 2, 3)]),
    ("bij,jk->bik", [(2, 3, 4), (4, 2)]),
    ("ij,bjk->bik", [(2, 3), (2, 3, 4)]),
    ("bhij,bhjk->bhik", [(2, 2, 2, 3), (2, 2, 3, 2)]),
    ("bij,bkj->bik", [(2, 3, 4), (2, 2, 4)]),
    ("bi,bij->bj", [(3, 4), (3, 4, 2)]),
    ("bij,bjk", [(2, 2, 3), (2, 3, 2)]),
    ("bnd,bmd->bnm", [(2, 3, 4), (2, 2, 4)]),
    ("bhnd,bhmd->bhnm", [(2, 2, 3, 2), (2, 2, 2, 2)]),
    ("bhnm,bhmd->bhnd", [(2, 2, 3, 2), (2, 2, 2, 2)]),
    ("bij,bjk,bkl->bil", [(2, 2, 3), (2, 3, 2), (2, 2, 3)]),
    # ---- tensor contractions (TCCG benchmark style) ---------------------------------------------
    ("bda,dc->abc", [(3, 2, 2), (2, 4)]),
    ("dbea,ec->abcd", [(2, 3, 2, 2), (2, 3)]),
    ("deca,be->abcd", [(2, 3, 2, 2), (3, 3)]),
    ("ebad,ce->abcd", [(3, 2, 2, 2), (2, 3)]),
    ("ac,cb->ab", [(3, 4), (4, 2)]),
    ("acd,dbc->ab", [(2, 3, 2), (2, 3, 3)]),
    ("cad,dcb->ab", [(3, 2, 2), (2, 3, 3)]),
    ("acd,db->abc", [(2, 3, 2), (2, 3)]),
    ("ad,bdc->abc", [(2, 3), (2, 3, 2)]),
    ("adc,bd->abc", [(2, 3, 2), (3, 3)]),
    ("adec,ebd->abc", [(2, 2, 3, 2), (3, 2, 2)]),
    ("aebf,dfce->abcd", [(2, 2, 2, 3), (2, 3, 2, 2)]),
    ("aecf,bfde->abcd", [(2, 2, 2, 3), (2, 3, 2, 2)]),
    ("eafd,fbec->abcd", [(2, 2, 3, 2), (3, 2, 2, 2)]),
    ("dega,gfbc->abcdef", [(2, 2, 2, 2), (2, 2, 2, 2)]),
    ("dfgb,geac->abcdef", [(2, 2, 3, 2), (3, 2, 2, 2)]),
    ("efgc,gdab->abcdef", [(2, 2, 2, 2), (2, 2, 2, 2)]),
    ("abcd,ea->ebcd", [(2, 3, 2, 2), (3, 2)]),
    ("abcd,ec->abed", [(2, 3, 2, 2), (3, 2)]),
    ("abc,bda->dc", [(2, 3, 2), (3, 2, 2)]),
    # ---- zero-size dimensions -----------------------------------------------------------------
    ("ij,jk->ik", [(0, 3), (3, 4)]),
    ("ij,jk->ik", [(2, 0), (0, 4)]),  # empty contraction: zeros
    ("ij,jk->ik", [(2, 3), (3, 0)]),
    ("i->", [(0,)]),
    ("ii->i", [(0, 0)]),
    ("ii->", [(0, 0)]),
    ("...ij,...jk->...ik", [(0, 2, 3), (0, 3, 2)]),
    ("ij->ji", [(0, 3)]),
    ("i,j->ij", [(0,), (3,)]),
    ("ij,ij->", [(0, 0), (0, 0)]),
    ("bij,bjk->bik", [(2, 0, 3), (2, 3, 1)]),
    ("ij,jk,kl->il", [(2, 0), (0, 3), (3, 2)]),
    ("...,...->...", [(0, 1), (1, 3)]),
    ("i,i->", [(0,), (1,)]),  # size 1 broadcast against size 0
    ("ijk->", [(2, 0, 3)]),
    ("ijk->ik", [(2, 0, 3)]),
    ("ij,j->i", [(3, 0), (0,)]),
    # ---- size-1 dimensions ----------------------------------------------------------------------
    ("ij,jk->ik", [(1, 1), (1, 1)]),
    ("ijk,kl->ijl", [(1, 3, 1), (1, 2)]),
    ("i->", [(1,)]),
    ("ij->ji", [(1, 5)]),
    ("bij,bjk->bik", [(1, 2, 1), (1, 1, 3)]),
    ("abc,c->ab", [(1, 1, 1), (1,)]),
    ("ij,jk->ik", [(1, 4), (4, 1)]),
    ("ijkl->lk", [(1, 2, 1, 3)]),
]


def _shape_id(shapes):
    return ",".join("x".join(map(str, s)) if s else "()" for s in shapes)


def _case_id(eq, shapes):
    return f"{eq.replace(' ', '_') or '<empty>'}[{_shape_id(shapes)}]"


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _rng(*parts):
    return np.random.default_rng(_seed(*parts))


def _params(cases):
    return [pytest.param(eq, shapes, id=_case_id(eq, shapes)) for eq, shapes in cases]


@pytest.mark.parametrize(("eq", "shapes"), _params(EQUATIONS))
def test_equation_float64(eq, shapes):
    ops = make_operands(shapes, np.float64, _rng(eq, shapes))
    check_einsum(eq, *ops)


# A representative subset run in every supported dtype.
DTYPE_EQUATIONS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij->ji", [(3, 4)]),
    ("i->", [(5,)]),
    ("i,i", [(4,), (4,)]),
    ("ii->i", [(4, 4)]),
    ("iij->j", [(3, 3, 4)]),
    ("iji->j", [(3, 4, 3)]),
    ("...ij,...jk->...ik", [(3, 4), (2, 4, 2)]),
    ("i...->...", [(3, 2, 4)]),
    ("...,...", [(2, 1), (1, 3)]),
    ("i,i->i", [(1,), (4,)]),
    ("ij,jk->ik", [(2, 1), (3, 4)]),
    ("Ab,bC->AC", [(2, 3), (3, 4)]),
    ("->", [()]),
    ("i,->i", [(3,), ()]),
    ("i,j,k->ijk", [(2,), (3,), (2,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ab,bc,cd,de->ae", [(2, 3), (3, 2), (2, 3), (3, 2)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(3, 2, 3), (3, 3, 2)]),
    ("acd,dbc->ab", [(2, 3, 2), (2, 3, 3)]),
    ("aebf,dfce->abcd", [(2, 2, 2, 3), (2, 3, 2, 2)]),
    ("ij,jk->ik", [(2, 0), (0, 4)]),
    ("ijk->", [(2, 0, 3)]),
]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=dtype_id)
@pytest.mark.parametrize(("eq", "shapes"), _params(DTYPE_EQUATIONS))
def test_equation_dtypes(eq, shapes, dtype):
    ops = make_operands(shapes, dtype, _rng(eq, shapes, str(dtype)))
    check_einsum(eq, *ops)


# Integer wrap-around: numpy computes in the operand dtype and wraps; so must einjit.
WRAP_CASES = [
    ("ij,jk->ik", [(3, 7), (7, 3)], np.int8),
    ("ij,jk->ik", [(3, 7), (7, 3)], np.uint8),
    ("i->", [(7,)], np.int16),
    ("ij,jk->ik", [(2, 5), (5, 2)], np.int32),
    ("ij,jk->ik", [(2, 5), (5, 2)], np.uint64),
    ("i,i,i->", [(6,), (6,), (6,)], np.int64),
]


@pytest.mark.parametrize(
    ("eq", "shapes", "dtype"),
    [pytest.param(e, s, d, id=f"{_case_id(e, s)}-{np.dtype(d).name}") for e, s, d in WRAP_CASES],
)
def test_integer_wraparound(eq, shapes, dtype):
    info = np.iinfo(dtype)
    rng = _rng("wrap", eq, shapes, np.dtype(dtype).name)
    ops = [rng.integers(info.max // 2, info.max, size=s, endpoint=True, dtype=dtype) for s in shapes]
    # set-up check: the exact sum really overflows the dtype
    exact = np.einsum(eq, *[o.astype(object) for o in ops])
    assert np.any(np.asarray(exact) > info.max) or np.any(np.asarray(exact) < info.min)
    check_einsum(eq, *ops)


# The same where sums run in register tiles, in parts on threads (partial sums folded)
# and over several steps: integers of 32 bits or fewer are summed in 32 (int16 and int8
# stored narrowed), wider ones in 64.
WRAP_KERNEL_CASES = [
    ("bij,bjk->bik", [(16, 32, 32), (16, 32, 32)], np.int32),
    ("bij,bjk->bik", [(16, 32, 32), (16, 32, 32)], np.uint32),
    ("bij,bjk->bik", [(16, 32, 48), (16, 48, 32)], np.int16),
    ("ij,jk->ik", [(64, 40), (40, 64)], np.int8),
    ("ij->", [(1024, 1536)], np.int32),
    ("ij,ij->j", [(2048, 640), (2048, 640)], np.uint32),
    ("ij,jk,kl->il", [(48, 64), (64, 80), (80, 32)], np.int32),
    ("bij,bjk->bik", [(16, 32, 32), (16, 32, 32)], np.int64),
]


@pytest.mark.parametrize(
    ("eq", "shapes", "dtype"),
    [pytest.param(e, s, d, id=f"{_case_id(e, s)}-{np.dtype(d).name}")
     for e, s, d in WRAP_KERNEL_CASES],
)
def test_integer_wraparound_in_tiles_threads_and_steps(eq, shapes, dtype):
    import einjit
    info = np.iinfo(dtype)
    rng = _rng("wrap-kernels", eq, shapes, np.dtype(dtype).name)
    ops = [rng.integers(info.min, info.max, size=s, endpoint=True, dtype=dtype) for s in shapes]
    got = einjit.einsum(eq, *ops)
    want = np.einsum(eq, *ops)  # numpy wraps in the dtype; the exact value overflows
    assert got.dtype == want.dtype and np.array_equal(got, want)
    exact = np.einsum(eq, *[o.astype(object) for o in ops])
    assert np.any((np.asarray(exact) > info.max) | (np.asarray(exact) < info.min))


MIXED_DTYPES = [
    (np.int8, np.float32),
    (np.uint8, np.int8),
    (np.int32, np.float16),
    (np.bool_, np.int32),
    (np.bool_, np.float64),
    (np.int64, np.uint64),
    (np.uint16, np.int16),
    (np.float32, np.float64),
    (np.float16, np.float32),
    (np.complex64, np.float64),
    (np.float32, np.complex64),
    (np.int16, np.complex128),
    (object, np.int64),
    (np.float16, np.complex64),
]


@pytest.mark.parametrize(
    ("dt1", "dt2"), MIXED_DTYPES, ids=[f"{dtype_id(a)}+{dtype_id(b)}" for a, b in MIXED_DTYPES]
)
@pytest.mark.parametrize(
    ("eq", "shapes"),
    _params([("ij,jk->ik", [(2, 3), (3, 2)]), ("ij,j", [(2, 3), (3,)])]),
)
def test_mixed_dtypes(eq, shapes, dt1, dt2):
    rng = _rng(eq, shapes, dtype_id(dt1), dtype_id(dt2))
    ops = [random_array(shapes[0], dt1, rng), random_array(shapes[1], dt2, rng)]
    check_einsum(eq, *ops)


# ----------------------------------------------------------------------------- layouts

LAYOUT_EQUATIONS = [
    ("ij,jk->ik", [(3, 4), (4, 3)]),
    ("ij->ji", [(3, 4)]),
    ("ijk->ik", [(2, 3, 4)]),
    ("ii->i", [(4, 4)]),
    ("iij->j", [(3, 3, 2)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 2)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 3)]),
    ("acd,dbc->ab", [(2, 3, 2), (2, 3, 3)]),
    ("i->", [(6,)]),
    ("ij,jk->ik", [(2, 0), (0, 3)]),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("eq", "shapes"), _params(LAYOUT_EQUATIONS))
def test_layouts(eq, shapes, layout):
    ops = make_operands(shapes, np.float64, _rng(eq, shapes, layout), layouts=layout)
    check_einsum(eq, *ops)


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, np.float32, object], ids=dtype_id)
@pytest.mark.parametrize("layout", ["F", "strided", "negative", "transposed", "broadcast"])
def test_layouts_other_dtypes(layout, dtype):
    eq, shapes = "ij,jk->ik", [(3, 4), (4, 3)]
    ops = make_operands(shapes, dtype, _rng(eq, layout, dtype_id(dtype)), layouts=layout)
    check_einsum(eq, *ops)


MIXED_LAYOUT_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 3)], ["F", "negative"]),
    ("ij,jk->ik", [(3, 4), (4, 3)], ["strided", "broadcast"]),
    ("ij,jk->ik", [(3, 4), (4, 3)], ["transposed", "readonly"]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], ["negative", "C", "strided"]),
    ("bij,bjk->bik", [(2, 3, 2), (2, 2, 3)], ["transposed", "negative"]),
    ("ii,i->i", [(3, 3), (3,)], ["strided", "broadcast"]),
]


@pytest.mark.parametrize(
    ("eq", "shapes", "layouts"),
    [pytest.param(e, s, l, id=f"{_case_id(e, s)}-{'+'.join(l)}") for e, s, l in MIXED_LAYOUT_CASES],
)
def test_mixed_layouts(eq, shapes, layouts):
    ops = make_operands(shapes, np.float64, _rng(eq, shapes, layouts), layouts=layouts)
    check_einsum(eq, *ops)


def test_layout_helper_produces_the_intended_layouts():
    """Guards the test set-up itself: each layout is what its name says."""
    rng = _rng("layout-helper")
    a = random_array((3, 4), np.float64, rng)
    assert with_layout(a, "F", rng).flags.f_contiguous and not with_layout(a, "F", rng).flags.c_contiguous
    s = with_layout(a, "strided", rng)
    assert not s.flags.c_contiguous and not s.flags.f_contiguous and np.array_equal(s, a)
    n = with_layout(a, "negative", rng)
    assert all(st < 0 for st in n.strides) and np.array_equal(n, a)
    t = with_layout(a, "transposed", rng)
    assert not t.flags.c_contiguous and np.array_equal(t, a)
    b = with_layout(a, "broadcast", rng)
    assert 0 in b.strides and b.shape == a.shape
    r = with_layout(a, "readonly", rng)
    assert not r.flags.writeable and np.array_equal(r, a)


# ------------------------------------------------------------- Python scalars and lists

SCALAR_LIST_CASES = [
    ("i,->i", ([1.5, 2.0, -3.0], 2.0)),
    ("i,->i", (np.arange(3, dtype=np.float32), 2.0)),  # numpy: float64 result
    ("i,->i", (np.arange(3, dtype=np.int8), 3)),  # numpy: int64 result
    ("i,->i", (np.arange(3, dtype=np.int32), 1.5)),
    ("i,->i", (np.arange(3, dtype=np.float64), 1j)),
    ("i,->i", (np.array([True, False, True]), True)),
    ("i,i", ([1, 2, 3], (4, 5, 6))),
    ("ij,jk->ik", ([[1, 2], [3, 4]], [[1.5, 0.5], [-1.0, 2.0]])),
    ("ij->ji", ([[1, 2, 3], [4, 5, 6]],)),
    (",->", (2, 3)),
    (",->", (2.5, -1.0)),
    ("->", (7,)),
    ("i,i->i", ([1 + 2j, 3 - 1j], [2.0, 0.5])),
    ("...,...", (np.arange(6.0).reshape(2, 3), 0.5)),
    ("ii", ([[1, 2], [3, 4]],)),
]


@pytest.mark.parametrize(
    ("eq", "operands"),
    [pytest.param(e, o, id=f"{e}-{k}") for k, (e, o) in enumerate(SCALAR_LIST_CASES)],
)
def test_python_scalars_and_lists(eq, operands):
    check_einsum(eq, *operands)


def test_numpy_scalar_operands():
    check_einsum("i,->i", np.arange(3.0), np.float32(2.0))
    check_einsum(",->", np.int16(3), np.int16(5))


# ------------------------------------------------------------------- interleaved sublists


def _sublist_case(eq, shapes, dtype=np.float64):
    return pytest.param(eq, shapes, dtype, id=f"{_case_id(eq, shapes)}-{dtype_id(dtype)}")


SUBLIST_EQUATIONS = [
    _sublist_case("ij,jk->ik", [(2, 3), (3, 4)]),
    _sublist_case("ij,jk", [(2, 3), (3, 4)]),  # implicit, lower case -> 26..51
    _sublist_case("IJ,JK", [(2, 3), (3, 4)]),  # implicit, upper case -> 0..25
    _sublist_case("bA->Ab", [(2, 3)]),
    _sublist_case("bA", [(2, 3)]),  # implicit: 'A' (0) sorts before 'b' (27)
    _sublist_case("aZ,Zb", [(2, 3), (3, 4)]),  # implicit: 'Z' summed, output 'ab'
    _sublist_case("zA,Ay", [(2, 3), (3, 4)]),  # implicit: output 'yz'
    _sublist_case("Bc,cA", [(2, 3), (3, 4)]),  # implicit: output 'AB'
    _sublist_case("...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),
    _sublist_case("...ij,...jk", [(2, 2, 3), (3, 2)]),
    _sublist_case("i...,i", [(3, 2, 2), (3,)]),
    _sublist_case("ii->i", [(3, 3)]),
    _sublist_case("ii", [(3, 3)]),
    _sublist_case("iij->j", [(2, 2, 3)]),
    _sublist_case("i,->i", [(3,), ()]),
    _sublist_case("->", [()]),
    _sublist_case("ij,jk,kl->il", [(2, 3), (3, 2), (2, 3)]),
    _sublist_case("Ab,bC,CD->AD", [(2, 3), (3, 2), (2, 2)]),
    _sublist_case("ij,jk->ik", [(2, 3), (3, 4)], np.int32),
    _sublist_case("bA", [(2, 3)], np.complex64),
    _sublist_case("aZ,Zb", [(2, 3), (3, 4)], object),
]


@pytest.mark.parametrize(("eq", "shapes", "dtype"), SUBLIST_EQUATIONS)
def test_sublist_form(eq, shapes, dtype):
    ops = make_operands(shapes, dtype, _rng("sublist", eq, shapes, dtype_id(dtype)))
    args = to_interleaved(eq, ops)
    check_einsum(*args)


@pytest.mark.parametrize(
    ("sub_a", "shape_a", "sub_b", "shape_b", "sub_out"),
    [
        pytest.param([0, 1], (2, 3), [1, 2], (3, 4), [0, 2], id="ints-0-25"),
        pytest.param([26, 27], (2, 3), [27, 28], (3, 4), [26, 28], id="ints-26-51"),
        pytest.param([26, 27], (2, 3), [27, 28], (3, 4), [28, 26], id="ints-26-51-transposed-out"),
        pytest.param([51, 0], (2, 3), [0, 25], (3, 4), None, id="implicit-51-then-0"),
        pytest.param([30, 2], (2, 3), [2, 4], (3, 4), None, id="implicit-upper-sorts-first"),
        pytest.param([2, 30], (2, 3), [30, 29], (3, 4), None, id="implicit-C-and-d"),
        pytest.param([Ellipsis, 5], (2, 2, 3), [5, 7], (3, 2), [Ellipsis, 7], id="ellipsis-explicit"),
        pytest.param([Ellipsis, 5], (2, 2, 3), [5, 7], (3, 2), None, id="ellipsis-implicit"),
        pytest.param([5, Ellipsis], (3, 2), [Ellipsis, 5], (2, 3), [Ellipsis], id="ellipsis-both-sides"),
        pytest.param([1, 0], (2, 3), [0, 1], (3, 2), [], id="empty-output-list"),
        pytest.param([3, 3], (3, 3), [3], (3,), [3], id="diagonal"),
        pytest.param([], (), [4, 40], (2, 3), [40, 4], id="0-d-operand"),
    ],
)
def test_sublist_literal(sub_a, shape_a, sub_b, shape_b, sub_out):
    rng = _rng("sublist-literal", repr((sub_a, shape_a, sub_b, shape_b, sub_out)))
    a = random_array(shape_a, np.float64, rng)
    b = random_array(shape_b, np.float64, rng)
    args = (a, sub_a, b, sub_b) + ((sub_out,) if sub_out is not None else ())
    check_einsum(*args)


def test_sublist_tuple_and_numpy_int_labels():
    rng = _rng("sublist-tuple")
    a = random_array((2, 3), np.float64, rng)
    b = random_array((3, 2), np.float64, rng)
    check_einsum(a, (0, 1), b, (1, 2), (0, 2))
    check_einsum(a, [np.int64(0), np.int64(1)], b, [np.int64(1), np.int64(2)])


# --------------------------------------------------------------------------------- out=

OUT_CASES = [
    # (eq, shapes, operand dtype, out dtype, out layout, casting)
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, "C", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, "F", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, "strided", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, "negative", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float32, np.float64, "C", None),  # safe upcast
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int16, np.int64, "C", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int32, np.float64, "strided", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.complex128, "C", None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float32, "C", "same_kind"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int64, np.int8, "C", "unsafe"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.complex128, np.complex64, "F", "same_kind"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.bool_, np.int32, "C", None),  # numpy counts here
    ("ij,jk->ik", [(2, 3), (3, 4)], np.bool_, np.bool_, "C", None),
    ("i,i->", [(5,), (5,)], np.float64, np.float64, "C", None),  # 0-d out
    ("i,i->", [(5,), (5,)], np.int64, np.int64, "C", None),
    ("ii->i", [(3, 3)], np.float64, np.float64, "strided", None),
    ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 3)], np.float64, np.float64, "F", None),
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)], np.float32, np.float32, "negative", None),
    ("ij->ji", [(3, 4)], np.float64, np.float64, "C", None),
    ("ij,jk->ik", [(2, 0), (0, 3)], np.float64, np.float64, "C", None),  # must be zero-filled
]


@pytest.mark.parametrize(
    ("eq", "shapes", "in_dt", "out_dt", "out_layout", "casting"),
    [
        pytest.param(*c, id=f"{_case_id(c[0], c[1])}-{dtype_id(c[2])}->{dtype_id(c[3])}-{c[4]}-{c[5]}")
        for c in OUT_CASES
    ],
)
def test_out(eq, shapes, in_dt, out_dt, out_layout, casting):
    rng = _rng("out", eq, shapes, dtype_id(in_dt), dtype_id(out_dt), out_layout)
    ops = make_operands(shapes, in_dt, rng)
    out_shape = np.einsum(eq, *ops).shape
    # garbage in out beforehand, so "forgot to write" or "accumulated into out" fails
    out = with_layout(np.full(out_shape, 7, dtype=out_dt), out_layout, rng)
    kwargs = {"out": out}
    if casting is not None:
        kwargs["casting"] = casting
    result = check_einsum(eq, *ops, **kwargs)
    assert result is out


def test_out_sublist_form():
    rng = _rng("out-sublist")
    a = random_array((2, 3), np.float64, rng)
    b = random_array((3, 2), np.float64, rng)
    out = np.full((2, 2), 5.0)
    assert check_einsum(a, [0, 1], b, [1, 2], [0, 2], out=out) is out


@pytest.mark.parametrize(
    ("eq", "shapes", "in_dt", "out_dt", "out_shape"),
    [
        pytest.param("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float32, (2, 4), id="unsafe-cast-default-casting"),
        pytest.param("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.int64, (2, 4), id="float-into-int"),
        pytest.param("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, (4, 2), id="wrong-shape"),
        pytest.param("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float64, (2, 4, 1), id="wrong-ndim"),
    ],
)
def test_out_invalid_raises_like_numpy(eq, shapes, in_dt, out_dt, out_shape):
    ops = make_operands(shapes, in_dt, _rng("out-bad", eq, out_shape))
    check_raises_like_numpy(eq, *ops, out=np.zeros(out_shape, dtype=out_dt))


# ---------------------------------------------------------------------- dtype= / casting=

DTYPE_KW_CASES = [
    # (eq, shapes, operand dtype, dtype=, casting)
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float32, np.float64, None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int32, np.float64, None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int8, np.int64, None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.complex128, None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.bool_, np.int16, None),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float32, "same_kind"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int64, np.int8, "same_kind"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.float64, np.float16, "unsafe"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.int64, np.float32, "unsafe"),
    ("ij,jk->ik", [(2, 3), (3, 4)], np.complex128, np.float64, "unsafe"),  # drops imag
    ("i->", [(5,)], np.uint8, np.int8, "unsafe"),
    # (not single-operand pure views like 'ii->i' / 'ij->ji': there numpy returns a
    # view of the input and ignores dtype=)
    ("ii->", [(3, 3)], np.int32, np.float32, "unsafe"),
    ("i,i->", [(4,), (4,)], np.float64, np.float64, "no"),
    ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 3)], np.float32, np.float32, "equiv"),
    ("ij->j", [(3, 4)], np.int16, np.int32, None),
]


@pytest.mark.parametrize(
    ("eq", "shapes", "in_dt", "dtype", "casting"),
    [
        pytest.param(*c, id=f"{_case_id(c[0], c[1])}-{dtype_id(c[2])}-dtype={dtype_id(c[3])}-{c[4]}")
        for c in DTYPE_KW_CASES
    ],
)
def test_dtype_keyword(eq, shapes, in_dt, dtype, casting):
    rng = _rng("dtype-kw", eq, shapes, dtype_id(in_dt), dtype_id(dtype), casting)
    ops = make_operands(shapes, in_dt, rng)
    if np.dtype(in_dt).kind in "fc" and np.dtype(dtype).kind in "iu":
        ops = [o * 5 for o in ops]  # fractional parts that truncate
    kwargs = {"dtype": dtype}
    if casting is not None:
        kwargs["casting"] = casting
    check_einsum(eq, *ops, **kwargs)


def test_dtype_float_to_int_unsafe_truncates_inputs():
    ops = [np.array([[1.7, -2.7], [3.2, 0.9]]), np.array([[2.5, 1.5], [-1.9, 4.99]])]
    r = check_einsum("ij,jk->ik", *ops, dtype=np.int32, casting="unsafe")
    assert np.asarray(r).dtype == np.int32


@pytest.mark.parametrize(
    ("in_dt", "dtype", "casting"),
    [
        pytest.param(np.float64, np.float32, None, id="f8->f4-safe"),
        pytest.param(np.float64, np.int64, None, id="f8->i8-safe"),
        pytest.param(np.complex128, np.float64, "same_kind", id="c16->f8-same_kind"),
        pytest.param(np.int64, np.uint64, "same_kind", id="i8->u8-same_kind"),
        pytest.param(np.float32, np.float64, "no", id="f4->f8-no"),
        pytest.param(np.float32, np.float64, "equiv", id="f4->f8-equiv"),
    ],
)
def test_dtype_keyword_invalid_casting_raises_like_numpy(in_dt, dtype, casting):
    ops = make_operands([(2, 3), (3, 2)], in_dt, _rng("dtype-bad", dtype_id(in_dt), dtype_id(dtype)))
    kwargs = {"dtype": dtype}
    if casting is not None:
        kwargs["casting"] = casting
    check_raises_like_numpy("ij,jk->ik", *ops, **kwargs)


# ------------------------------------------------------------------------------- order=

ORDER_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 2)], "C"),
    ("ij,jk->ik", [(3, 4), (4, 2)], "F"),
    ("ij,jk->ik", [(3, 4), (4, 2)], "A"),
    ("ij,jk->ik", [(3, 4), (4, 2)], "K"),
    ("ij->ji", [(3, 4)], "C"),
    ("ij->ji", [(3, 4)], "F"),
    ("ij->ji", [(3, 4)], "K"),
    ("bij,bjk->bki", [(2, 3, 2), (2, 2, 3)], "C"),
    ("bij,bjk->bki", [(2, 3, 2), (2, 2, 3)], "F"),
    ("ijk,kl->lji", [(2, 3, 2), (2, 3)], "A"),
    ("i,j,k->kij", [(2,), (3,), (2,)], "F"),
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)], "C"),
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)], "F"),
]


@pytest.mark.parametrize(
    ("eq", "shapes", "order"),
    [pytest.param(e, s, o, id=f"{_case_id(e, s)}-order={o}") for e, s, o in ORDER_CASES],
)
@pytest.mark.parametrize("layout", ["C", "F"])
def test_order(eq, shapes, order, layout):
    ops = make_operands(shapes, np.float64, _rng("order", eq, shapes, order, layout), layouts=layout)
    result = check_einsum(eq, *ops, order=order)
    expected = np.einsum(eq, *ops, order=order)
    # numpy honours order='C'/'F' except where it returns a view of the input
    # (single-operand transposes); where numpy's result has the layout, so must einjit's
    if order == "C" and expected.flags.c_contiguous:
        assert result.flags.c_contiguous, f"order='C' result is not C-contiguous: strides {result.strides}"
    if order == "F" and expected.flags.f_contiguous:
        assert result.flags.f_contiguous, f"order='F' result is not F-contiguous: strides {result.strides}"


# ---------------------------------------------------------------------------- optimize=

OPTIMIZE_EQUATIONS = [
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk,kl,lm->im", [(2, 3), (3, 2), (2, 3), (3, 2)]),
    ("ea,fb,abcd,gc,hd->efgh", [(2, 2), (2, 3), (2, 3, 2, 2), (3, 2), (2, 2)]),
    ("abc,bcd,cde->ae", [(2, 2, 3), (2, 3, 2), (3, 2, 2)]),
    ("ij,jk,ki->", [(2, 3), (3, 4), (4, 2)]),
    ("i,ij,jk,k->", [(3,), (3, 2), (2, 4), (4,)]),
    ("...ij,...jk,...kl->...il", [(2, 2, 3), (3, 2), (1, 2, 2)]),
    ("ii,ij,jk->k", [(3, 3), (3, 2), (2, 2)]),
    ("ij,ij,jk->ik", [(2, 3), (2, 3), (3, 2)]),
    ("ij,jk,kl", [(2, 3), (3, 4), (4, 2)]),
]


def _explicit_path(eq, ops, order):
    """A valid explicit contraction path: 'first' contracts the first two operands each
    step; 'last' always the last two."""
    n = len(ops)
    if order == "first":
        return ["einsum_path"] + [(0, 1)] * (n - 1)
    return ["einsum_path"] + [(k - 2, k - 1) for k in range(n, 1, -1)]


@pytest.mark.parametrize(
    "optimize",
    [False, True, "greedy", "optimal", "path-first", "path-last", "path-numpy-optimal"],
    ids=str,
)
@pytest.mark.parametrize(("eq", "shapes"), _params(OPTIMIZE_EQUATIONS))
def test_optimize(eq, shapes, optimize):
    # integers (exact) for a few settings only, to bound the number of kernels
    dtypes = (np.float64, np.int64) if optimize in (True, "path-last") else (np.float64,)
    for dtype in dtypes:
        ops = make_operands(shapes, dtype, _rng("optimize", eq, shapes, dtype_id(dtype)))
        if optimize == "path-first":
            opt = _explicit_path(eq, ops, "first")
        elif optimize == "path-last":
            opt = _explicit_path(eq, ops, "last")
        elif optimize == "path-numpy-optimal":
            opt = np.einsum_path(eq, *ops, optimize="optimal")[0]
        else:
            opt = optimize
        check_einsum(eq, *ops, optimize=opt)


def test_optimize_sublist_form():
    rng = _rng("optimize-sublist")
    ops = make_operands([(2, 3), (3, 4), (4, 2)], np.float64, rng)
    for opt in (False, True, "greedy", "optimal", ["einsum_path", (1, 2), (0, 1)]):
        check_einsum(ops[0], [0, 1], ops[1], [1, 2], ops[2], [2, 3], [0, 3], optimize=opt)


# ------------------------------------------------------------------------- invalid input

ERROR_CASES = [
    ("ij,jk->ik", [(2, 3), (4, 5)]),  # mismatched contraction extents
    ("ij,jk", [(2, 3)]),  # fewer operands than terms
    ("ij", [(2, 3), (3, 2)]),  # more operands than terms
    ("i->j", [(2,)]),  # output label never in an input
    ("i->ii", [(2,)]),  # output label twice
    ("i1->i", [(2, 2)]),  # not a letter
    ("ij->i", [(2, 3, 4)]),  # too many dimensions for the term
    ("ijk->i", [(2, 3)]),  # too few dimensions for the term
    ("ii->i", [(2, 3)]),  # diagonal of a non-square pair
    ("i.j->ij", [(2, 3)]),  # stray '.'
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 3, 2)]),  # ellipsis dims do not broadcast
]


@pytest.mark.parametrize(("eq", "shapes"), _params(ERROR_CASES))
def test_invalid_raises_like_numpy(eq, shapes):
    ops = make_operands(shapes, np.float64, _rng("err", eq, shapes))
    check_raises_like_numpy(eq, *ops)
