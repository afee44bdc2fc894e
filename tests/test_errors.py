"""Malformed calls: einjit.einsum must reject exactly what numpy.einsum rejects.

Every row of ``ERROR_TABLE`` is one malformed call, written as

    (id, builder, exception type, message fragment)

* ``builder()`` returns ``(args, kwargs)`` for one call, with fresh arrays each time.
* The exception type is the *exact* type numpy raises for that call (recorded by
  running numpy on every row; ``test_numpy_rejects`` re-checks it on every run).
  einjit has to raise an instance of that type (a subclass is fine).
* The fragment names the offending thing, per einjit's message convention:
  the bad character or label quoted (``"'q'"``), the operand as ``"operand 1"``
  (0-based, as numpy), the conflicting sizes as numbers (a tuple of fragments means
  every one of them must appear), or the keyword name for a bad keyword value.
  It is matched with ``re.escape`` and ``re.search``; ``""`` means only the type is
  checked (rows where no single spelling of the culprit is obviously required).
"""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def _f(*shape, dtype=np.float64):
    """A fresh array of ones."""
    return np.ones(shape, dtype=dtype)


def _obj(*values):
    return np.array(list(values), dtype=object)


def _call(*args, **kwargs):
    return args, kwargs


def _read_only(*shape):
    a = np.zeros(shape)
    a.setflags(write=False)
    return a


ERROR_TABLE = [
    # ---- bad characters in the subscripts string -------------------------------------
    ("bad_char_percent", lambda: _call("i%,i->", _f(2, 2), _f(2)), ValueError, "'%'"),
    ("bad_char_digit", lambda: _call("i1,i->", _f(2, 2), _f(2)), ValueError, "'1'"),
    ("bad_char_digit_in_output", lambda: _call("ij->i3", _f(2, 2)), ValueError, "'3'"),
    # numpy encodes the subscripts as ASCII first, so the type is UnicodeEncodeError
    # (a ValueError subclass); its text spells the character as '\xe4', so type only.
    ("bad_char_non_ascii", lambda: _call("i\u00e4", _f(2, 2)), UnicodeEncodeError, ""),
    ("lone_dot", lambda: _call("i.j", _f(2, 2)), ValueError, "'.'"),
    ("two_dots", lambda: _call("i..", _f(2, 2)), ValueError, "'.'"),
    ("two_dots_leading", lambda: _call("..i", _f(2)), ValueError, "'.'"),
    ("four_dots", lambda: _call("....i", _f(2, 2)), ValueError, "'.'"),
    ("dot_in_output", lambda: _call("ij->i.", _f(2, 2)), ValueError, "'.'"),
    # numpy only skips spaces *between* tokens: a space inside '...' or '->' is an error
    ("ellipsis_split_by_space", lambda: _call(". ..i", _f(2)), ValueError, "'.'"),
    # a tab is not skipped like a space; its quoted spelling may vary, so type only
    ("tab_in_subscripts", lambda: _call("i\tj", _f(2, 2)), ValueError, ""),
    ("two_ellipses_in_one_operand",
     lambda: _call("...i,...i...", _f(2), _f(2)), ValueError, "operand 1"),
    # ---- '->' twice, '-' without '>', '>' alone ---------------------------------------
    ("arrow_twice", lambda: _call("i->i->i", _f(2)), ValueError, "'->'"),
    ("arrow_twice_different_labels", lambda: _call("ij->i->j", _f(2, 2)), ValueError, "'->'"),
    ("dash_without_gt", lambda: _call("i-i", _f(2)), ValueError, "'-'"),
    ("dash_at_end", lambda: _call("i-", _f(2)), ValueError, "'-'"),
    ("arrow_split_by_space", lambda: _call("i- >i", _f(2)), ValueError, "'-'"),
    ("dash_in_output", lambda: _call("ij->i-j", _f(2, 2)), ValueError, "'-'"),
    ("gt_alone", lambda: _call("i>i", _f(2)), ValueError, "'>'"),
    ("gt_in_output", lambda: _call("i->i>", _f(2)), ValueError, "'>'"),
    # ---- output labels -----------------------------------------------------------------
    ("output_label_not_in_inputs", lambda: _call("ij->iq", _f(2, 2)), ValueError, "'q'"),
    ("output_uppercase_label_not_in_inputs",
     lambda: _call("ij->iJ", _f(2, 2)), ValueError, "'J'"),
    ("repeated_output_label", lambda: _call("ij->ii", _f(2, 2)), ValueError, "'i'"),
    ("repeated_output_label_two_operands",
     lambda: _call("ij,jk->kik", _f(2, 2), _f(2, 2)), ValueError, "'k'"),
    # ---- operand count -----------------------------------------------------------------
    ("too_many_operands", lambda: _call("i", _f(2), _f(2)), ValueError, "operand"),
    ("too_many_operands_explicit",
     lambda: _call("i,j->ij", _f(2), _f(2), _f(2)), ValueError, "operand"),
    ("too_few_operands", lambda: _call("i,j->ij", _f(2)), ValueError, "operand"),
    ("too_few_operands_implicit", lambda: _call("ij,jk", _f(2, 2)), ValueError, "operand"),
    ("no_operands", lambda: _call("i"), ValueError, "operand"),
    ("no_operands_empty_subscripts", lambda: _call(""), ValueError, "operand"),
    ("no_arguments_at_all", lambda: _call(), ValueError, "operand"),
    # ---- one label, different sizes (none of them 1) -----------------------------------
    ("label_size_mismatch",
     lambda: _call("ij,jk->ik", _f(2, 5), _f(7, 3)), ValueError, ("5", "7")),
    ("label_size_mismatch_third_operand",
     lambda: _call("ij,jk,kl->il", _f(2, 3), _f(3, 5), _f(7, 6)), ValueError, ("5", "7")),
    ("label_size_mismatch_zero",
     lambda: _call("ij,jk->ik", _f(2, 0), _f(7, 3)), ValueError, ("0", "7")),
    ("label_size_mismatch_sublist",
     lambda: _call(_f(2, 5), [0, 1], _f(7, 3), [1, 2], [0, 2]), ValueError, ("5", "7")),
    ("repeated_label_size_mismatch", lambda: _call("ii->i", _f(5, 7)), ValueError, ("5", "7")),
    ("repeated_label_size_mismatch_three",
     lambda: _call("iii", _f(5, 5, 7)), ValueError, ("5", "7")),
    ("repeated_label_size_mismatch_second_operand",
     lambda: _call("j,ii->i", _f(3), _f(5, 7)), ValueError, ("5", "7")),
    # ---- operand rank vs. subscripts ---------------------------------------------------
    ("more_dims_than_subscripts",
     lambda: _call("i,ij->j", _f(3), _f(3, 4, 5)), ValueError, "operand 1"),
    ("more_dims_than_empty_subscripts", lambda: _call("", _f(2)), ValueError, "operand 0"),
    ("fewer_dims_than_subscripts",
     lambda: _call("i,ijk->", _f(3), _f(3, 4)), ValueError, "operand 1"),
    ("scalar_with_subscripts", lambda: _call("i", np.float64(1.0)), ValueError, "operand 0"),
    ("fewer_dims_than_subscripts_with_ellipsis",
     lambda: _call("...ij", _f(3)), ValueError, "operand 0"),
    ("sublist_more_dims_than_subscripts", lambda: _call(_f(2, 3), [0]), ValueError, "operand 0"),
    ("sublist_fewer_dims_than_subscripts",
     lambda: _call(_f(2), [0, 1]), ValueError, "operand 0"),
    # ---- ellipsis broadcasting ---------------------------------------------------------
    ("ellipsis_broadcast_mismatch",
     lambda: _call("...i,...i->...i", _f(5, 3), _f(7, 3)), ValueError, ("5", "7")),
    ("ellipsis_broadcast_mismatch_only_ellipsis",
     lambda: _call("...,...->...", _f(5), _f(7)), ValueError, ("5", "7")),
    ("ellipsis_dims_but_output_without_ellipsis",
     lambda: _call("...i->i", _f(2, 3)), ValueError, "..."),
    ("ellipsis_dims_but_output_without_ellipsis_two_operands",
     lambda: _call("...i,...i->i", _f(2, 3), _f(2, 3)), ValueError, "..."),
    # ---- bad sublists ------------------------------------------------------------------
    ("sublist_float", lambda: _call(_f(2), [0.5]), TypeError, "0.5"),
    ("sublist_string", lambda: _call(_f(2), ["i"]), TypeError, "'i'"),
    ("sublist_ellipsis_as_string", lambda: _call(_f(2), ["...", 0]), TypeError, "'...'"),
    ("sublist_int_52", lambda: _call(_f(2), [52]), ValueError, "52"),
    ("sublist_int_minus_1", lambda: _call(_f(2), [-1]), ValueError, "-1"),
    ("sublist_output_int_52", lambda: _call(_f(2), [0], [52]), ValueError, "52"),
    ("sublist_huge_int", lambda: _call(_f(2), [2 ** 70]), TypeError, str(2 ** 70)),
    ("sublist_nested_list", lambda: _call(_f(2), [[0]]), TypeError, "[0]"),
    ("sublist_nested_tuple", lambda: _call(_f(2), [(0,)]), TypeError, "(0,)"),
    ("sublist_output_float", lambda: _call(_f(2), [0], [0.0]), TypeError, "0.0"),
    ("sublist_bool", lambda: _call(_f(2), [True]), TypeError, "True"),
    ("sublist_numpy_bool", lambda: _call(_f(2), [np.True_]), TypeError, "True"),
    ("sublist_is_none", lambda: _call(_f(2), None), TypeError, "None"),
    ("sublist_two_ellipses",
     lambda: _call(_f(2), [0], _f(2, 3), [Ellipsis, 0, Ellipsis]), ValueError, "operand 1"),
    # The culprit can be spelt either as the integer or as numpy's letter for it, so
    # these rows check the type only.
    ("sublist_output_not_a_list", lambda: _call(_f(2), [0], 0), TypeError, ""),
    ("sublist_missing_for_second_operand", lambda: _call(_f(2), [0], _f(2)), TypeError, ""),
    ("sublist_output_label_not_in_inputs", lambda: _call(_f(2), [0], [1]), ValueError, ""),
    ("sublist_repeated_output_label", lambda: _call(_f(2, 2), [0, 1], [0, 0]), ValueError, ""),
    # ---- subscripts neither a str nor an array -----------------------------------------
    ("subscripts_none", lambda: _call(None, _f(2)), TypeError, "subscript"),
    ("subscripts_list_of_str", lambda: _call(["i"], _f(2)), TypeError, "subscript"),
    ("subscripts_dict", lambda: _call({"i": 1}, _f(2)), TypeError, "subscript"),
    # ---- bad out= ----------------------------------------------------------------------
    ("out_wrong_shape", lambda: _call("ij->i", _f(2, 3), out=np.empty(4)), ValueError, "out"),
    ("out_wrong_ndim_0d", lambda: _call("ij->i", _f(2, 3), out=np.empty(())), ValueError, "out"),
    ("out_wrong_ndim_2d",
     lambda: _call("ij->i", _f(2, 3), out=np.empty((2, 1))), ValueError, "out"),
    ("out_wrong_dtype_safe",
     lambda: _call("ij->i", _f(2, 3), out=np.empty(2, dtype=np.int64)), TypeError, "out"),
    ("out_complex_into_float",
     lambda: _call("i->", _f(3) + 0j, out=np.empty(())), TypeError, "out"),
    ("out_is_list", lambda: _call("ij->i", _f(2, 3), out=[0.0, 0.0]), TypeError, "out"),
    ("out_is_numpy_scalar",
     lambda: _call("ij->", _f(2, 3), out=np.float64(0.0)), TypeError, "out"),
    ("out_read_only", lambda: _call("ij->i", _f(2, 3), out=_read_only(2)), ValueError, "out"),
    ("out_read_only_broadcast",
     lambda: _call("ij->i", _f(2, 3), out=np.broadcast_to(np.zeros(2), (2,))), ValueError, "out"),
    # ---- bad dtype= --------------------------------------------------------------------
    ("dtype_unsafe_float_to_int", lambda: _call("i->", _f(3), dtype=np.int64), TypeError, "dtype"),
    ("dtype_unsafe_complex_to_float",
     lambda: _call("i->", _f(3) + 0j, dtype=np.float64), TypeError, "dtype"),
    ("dtype_nonsense_string", lambda: _call("i->", _f(3), dtype="notatype"), TypeError, "dtype"),
    ("dtype_nonsense_list", lambda: _call("i->", _f(3), dtype=[1, 2]), TypeError, "dtype"),
    # ---- bad casting= ------------------------------------------------------------------
    ("casting_nonsense", lambda: _call("i->", _f(3), casting="bogus"), ValueError, "casting"),
    ("casting_int", lambda: _call("i->", _f(3), casting=5), TypeError, "casting"),
    ("casting_none", lambda: _call("i->", _f(3), casting=None), TypeError, "casting"),
    # ---- bad order= --------------------------------------------------------------------
    ("order_nonsense", lambda: _call("i->", _f(3), order="Z"), ValueError, "order"),
    ("order_two_letters", lambda: _call("i->", _f(3), order="Kx"), ValueError, "order"),
    ("order_int", lambda: _call("i->", _f(3), order=5), TypeError, "order"),
    # ---- bad optimize= -----------------------------------------------------------------
    # (numpy accepts any string when there are only two operands, hence three here)
    ("optimize_nonsense_string",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2), optimize="bogus"),
     KeyError, "optimize"),
    ("optimize_path_index_out_of_range",
     lambda: _call("ij,jk->ik", _f(2, 2), _f(2, 2), optimize=["einsum_path", (0, 5)]),
     IndexError, "optimize"),
    ("optimize_path_index_out_of_range_three_operands",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2),
                   optimize=["einsum_path", (0, 7), (0, 1)]),
     IndexError, "optimize"),
    ("optimize_path_negative_index",
     lambda: _call("ij,jk->ik", _f(2, 2), _f(2, 2), optimize=["einsum_path", (0, -5)]),
     IndexError, "optimize"),
    ("optimize_path_too_many_indices",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2),
                   optimize=["einsum_path", (0, 1, 2, 3)]),
     IndexError, "optimize"),
    ("optimize_path_incomplete",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2),
                   optimize=["einsum_path", (0, 1)]),
     RuntimeError, "optimize"),
    ("optimize_path_only_prefix",
     lambda: _call("ij,jk->ik", _f(2, 2), _f(2, 2), optimize=["einsum_path"]),
     RuntimeError, "optimize"),
    ("optimize_path_without_prefix",
     lambda: _call("ij,jk->ik", _f(2, 2), _f(2, 2), optimize=[(0, 1)]), TypeError, "optimize"),
    ("optimize_dict",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2), optimize={}),
     TypeError, "optimize"),
    ("optimize_int",
     lambda: _call("ij,jk,kl->il", _f(2, 2), _f(2, 2), _f(2, 2), optimize=5),
     TypeError, "optimize"),
    # ---- unknown keyword arguments -----------------------------------------------------
    ("unknown_keyword", lambda: _call("i", _f(2), foo=1), TypeError, "'foo'"),
    ("unknown_keyword_misspelt", lambda: _call("i", _f(2), optimise=True), TypeError, "'optimise'"),
    ("unknown_keyword_wrong_case", lambda: _call("i", _f(2), Out=None), TypeError, "'Out'"),
    # ---- object arrays whose elements do not combine -----------------------------------
    ("object_none_times_int",
     lambda: _call("i,i->", _obj(None), _obj(1)), TypeError, "'NoneType'"),
    ("object_none_times_int_optimized",
     lambda: _call("ij,jk->ik", np.array([[None]], dtype=object),
                   np.array([[1]], dtype=object), optimize=True),
     TypeError, "'NoneType'"),
    ("object_str_plus_int", lambda: _call("i->", _obj("a", 1)), TypeError, "str"),
    ("object_str_times_float",
     lambda: _call("i,i->i", _obj("a"), _obj(1.5)), TypeError, "'float'"),
    # ---- operand dtypes einsum cannot work with ----------------------------------------
    ("string_operand", lambda: _call("i,i->", _f(1), np.array(["a"])), TypeError, "operand 1"),
    # numpy's promotion fails first, with its DTypePromotionError (a TypeError)
    ("datetime_with_float",
     lambda: _call("ij,jk->ik", _f(2, 2, dtype="M8[s]"), _f(2, 2)),
     np.exceptions.DTypePromotionError, "operand 0"),
    ("timedelta_with_float",
     lambda: _call("i,i->", _f(2), _f(2, dtype="m8[s]")),
     np.exceptions.DTypePromotionError, "operand 1"),
    ("timedelta_alone", lambda: _call("i->", _f(2, dtype="m8[s]")), TypeError, "operand 0"),
]

_IDS = [row[0] for row in ERROR_TABLE]
assert len(_IDS) == len(set(_IDS)), "duplicate row ids"

_PARAMS = [pytest.param(builder, exc_type, fragment, id=row_id)
           for row_id, builder, exc_type, fragment in ERROR_TABLE]


def _fragments(fragment):
    return fragment if isinstance(fragment, tuple) else (fragment,)


@pytest.fixture(scope="module")
def einjit():
    import einjit as module  # a broken package must fail these tests, not skip them
    return module


def test_table_size():
    assert len(ERROR_TABLE) >= 45


@pytest.mark.parametrize("builder, exc_type, fragment", _PARAMS)
def test_numpy_rejects(builder, exc_type, fragment):
    """The table records exactly the type numpy raises: guards the table itself."""
    args, kwargs = builder()
    with pytest.raises(exc_type) as excinfo:
        np.einsum(*args, **kwargs)
    assert type(excinfo.value) is exc_type, (
        f"numpy raised {type(excinfo.value).__name__}: {excinfo.value}")


@pytest.mark.parametrize("builder, exc_type, fragment", _PARAMS)
def test_einjit_rejects(einjit, builder, exc_type, fragment):
    args, kwargs = builder()
    with pytest.raises(exc_type) as excinfo:
        einjit.einsum(*args, **kwargs)
    for part in _fragments(fragment):
        excinfo.match(re.escape(part))


# ---- bad input never crashes, corrupts, or poisons later calls ---------------------------

@pytest.mark.parametrize("builder, exc_type, fragment", _PARAMS)
def test_failed_call_leaves_arrays_untouched(einjit, builder, exc_type, fragment):
    """A rejected call writes neither into its operands nor into ``out=``."""
    args, kwargs = builder()
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    try:
        einjit.einsum(*args, **kwargs)
    except Exception:
        pass
    else:  # not rejected at all: test_einjit_rejects reports that row
        pytest.skip("einjit did not reject this call")
    for a, b in zip(arrays, before):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype == object:
            assert all(x is y or x == y for x, y in zip(a.ravel(), b.ravel()))
        else:
            np.testing.assert_array_equal(a, b)


def test_whole_table_in_a_fresh_process_does_not_crash():
    """Running every malformed call in one interpreter ends normally: no segfault, no
    abort, no hang, nothing but ordinary ``Exception``s escaping, and the interpreter
    still computes correctly afterwards.  (Rows that einjit wrongly accepts are listed
    in the output but reported by ``test_einjit_rejects``.)"""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    script = textwrap.dedent(
        """
        import sys
        sys.path[:0] = [{root!r}, {here!r}]
        import numpy as np
        import einjit
        from test_errors import ERROR_TABLE
        for row_id, builder, exc_type, fragment in ERROR_TABLE:
            args, kwargs = builder()
            try:
                einjit.einsum(*args, **kwargs)
            except Exception:
                pass
            else:
                print("NO-ERROR", row_id)
        # the interpreter is still healthy afterwards
        a = np.arange(6.0).reshape(2, 3)
        b = np.arange(12.0).reshape(3, 4)
        assert np.allclose(einjit.einsum("ij,jk->ik", a, b), a @ b)
        print("DONE")
        """
    ).format(root=root, here=here)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=900, cwd=root, env=dict(os.environ))
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "DONE" in proc.stdout, (proc.stdout[-3000:], proc.stderr[-3000:])


def test_valid_calls_still_work_after_errors(einjit):
    """Errors must not leave half-built state (caches, plans) that breaks later calls."""
    for row_id, builder, exc_type, fragment in ERROR_TABLE:
        args, kwargs = builder()
        try:
            einjit.einsum(*args, **kwargs)
        except Exception:
            pass
    rng = np.random.default_rng(0)
    a, b, c = rng.random((2, 5)), rng.random((5, 3)), rng.random((3, 2))
    d = rng.random((4, 4))
    for args in [("ij,jk->ik", a, b), ("ij,jk,kl->il", a, b, c), ("ii->i", d),
                 ("...i,...i->...", a, a)]:
        np.testing.assert_allclose(einjit.einsum(*args), np.einsum(*args))
    out = np.empty((2, 3))
    res = einjit.einsum("ij,jk->ik", a, b, out=out)
    assert res is out
    np.testing.assert_allclose(out, a @ b)


@pytest.mark.parametrize("make_out", [
    pytest.param(lambda: _read_only(2), id="setflags"),
    pytest.param(lambda: np.broadcast_to(np.zeros(2), (2,)), id="broadcast_to"),
    pytest.param(lambda: np.frombuffer(bytes(16), dtype=np.float64), id="frombuffer"),
])
@pytest.mark.parametrize("optimize", [False, True])
def test_read_only_out_raises_value_error(einjit, make_out, optimize):
    a = np.arange(6.0).reshape(2, 3)
    out = make_out()
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        np.einsum("ij->i", a, out=out, optimize=optimize)
    out = make_out()
    with pytest.raises(ValueError):
        einjit.einsum("ij->i", a, out=out, optimize=optimize)
    assert np.all(out == 0)


def test_read_only_out_sublist_form(einjit):
    a = np.arange(6.0).reshape(2, 3)
    with pytest.raises(ValueError):
        np.einsum(a, [0, 1], [0], out=_read_only(2))
    with pytest.raises(ValueError):
        einjit.einsum(a, [0, 1], [0], out=_read_only(2))


def test_read_only_operands_are_fine(einjit):
    """Read-only *inputs* are not an error (only a read-only ``out=`` is)."""
    a = _f(2, 3)
    a.setflags(write=False)
    np.testing.assert_allclose(einjit.einsum("ij->i", a), np.einsum("ij->i", a))


def test_ragged_operand_raises_value_error(einjit):
    ragged = [1.0, [2.0, 3.0]]
    with pytest.raises(ValueError):
        np.einsum("i", ragged)
    with pytest.raises(ValueError):
        einjit.einsum("i", ragged)


def test_same_bad_call_twice_raises_twice(einjit):
    """An error is not cached into a success (or into a different error)."""
    for _ in range(2):
        with pytest.raises(ValueError) as excinfo:
            einjit.einsum("ij,jk->ik", _f(2, 5), _f(7, 3))
        excinfo.match("5")
        excinfo.match("7")
    # and the same equation with good sizes works after the failures
    np.testing.assert_allclose(einjit.einsum("ij,jk->ik", _f(2, 5), _f(5, 3)),
                               np.full((2, 3), 5.0))
