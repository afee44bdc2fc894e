"""The disk cache across processes: hits, stale keys, corruption, permissions, races.

Most tests run fresh ``python`` processes on a private ``EINJIT_CACHE_DIR`` (what a
later process finds is the point), with tiny equations so each compile is ~0.2 s.
"""

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import einjit
from einjit import cache

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Four kernels, none a BLAS product or a view: each is one Numba kernel.
KERNELS = [("i,i,i->", [(5,), (5,), (5,)]), ("ij,ij,ij->i", [(3, 4), (3, 4), (3, 4)]),
           ("ijk->j", [(2, 3, 4)]), ("i,j->ij", [(3,), (4,)])]

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import einjit
    kernels = json.loads(sys.argv[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [einjit.einsum(eq, *[np.arange(np.prod(s), dtype=float).reshape(s) + 1
                                       for s in shapes]).tolist() for eq, shapes in kernels]
    print(json.dumps({"info": einjit.cache_info(), "results": results,
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, RuntimeWarning)]}))
""")


def expected(kernels=KERNELS):
    return [np.einsum(eq, *[np.arange(np.prod(s), dtype=float).reshape(s) + 1 for s in shapes]
                      ).tolist() for eq, shapes in kernels]


def environment(directory):
    env = dict(os.environ, EINJIT_CACHE_DIR=str(directory), PYTHONPATH=str(ROOT))
    env.pop("NUMBA_CACHE_DIR", None)
    return env


def run_kernels(directory, kernels=KERNELS):
    """Run the kernels in a fresh process; its counters, results and einjit warnings."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(kernels)],
                          env=environment(directory), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["results"] == expected(kernels)
    return report


def numba_files(directory, suffix):
    return sorted((pathlib.Path(directory) / "kernels" / "__pycache__").glob(f"k_*{suffix}"))


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache directory holding both kernels, compiled once for the module's tests."""
    directory = tmp_path_factory.mktemp("warm") / "cache"
    report = run_kernels(directory)
    assert report["info"]["compilations"] == len(KERNELS)
    return directory


@pytest.fixture
def cache_copy(warm_cache, tmp_path):
    """A private copy of the warm cache (kernels found by content, so a copy works)."""
    directory = tmp_path / "cache"
    shutil.copytree(warm_cache, directory, symlinks=True)
    return directory


def test_import_einjit_does_not_import_numba():
    code = "import sys, einjit; print('numba' in sys.modules, 'llvmlite' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=environment(ROOT / "unused"),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_kernels_start_numba_without_scipy_linalg_and_numba_blas_still_works(cache_copy):
    # einjit skips Numba's import-time BLAS probe (scipy.linalg, 0.2-0.45 s); a user's
    # own Numba code calling BLAS afterwards must still find it.
    pytest.importorskip("scipy")
    code = textwrap.dedent("""
        import sys, numpy as np, numba, einjit
        a = np.arange(12.0).reshape(3, 4)
        assert np.allclose(einjit.einsum("ij,ij->i", a, a), (a * a).sum(1))
        print("scipy.linalg" in sys.modules)
        dot = numba.njit(lambda x, y: np.dot(x, y))
        assert np.allclose(dot(a, a.T), a @ a.T)
        print("scipy.linalg" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=environment(cache_copy),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_cached_kernels_load_without_numbas_registries_and_compiling_still_works(cache_copy):
    # Loading machine code needs Numba's runtime, not its typing and lowering registries
    # (about a third of a second to import); a compilation afterwards loads them itself.
    code = textwrap.dedent("""
        import json, sys, numpy as np, numba, einjit
        kernels = json.loads(sys.argv[1])
        for eq, shapes in kernels:
            ops = [np.arange(np.prod(s), dtype=float).reshape(s) + 1 for s in shapes]
            assert np.allclose(einjit.einsum(eq, *ops), np.einsum(eq, *ops))
        loaded = einjit.cache_info()["disk_loads"]
        print(loaded, "numba.typed.typeddict" in sys.modules, "numba.np.arraymath" in sys.modules)
        a = np.arange(12.0).reshape(3, 4)
        assert np.allclose(einjit.einsum("ij,kj->ik", a, a[:2] * 3), a @ (a[:2] * 3).T)
        def count(x):  # a typed dict: one of the registries the loads left out
            seen = dict()
            for v in x.ravel():
                seen[int(v) % 5] = 1
            return len(seen)
        assert numba.njit(count)(a) == 5
        print(einjit.cache_info()["compilations"])
    """)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(KERNELS)],
                         env=environment(cache_copy), capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == [str(len(KERNELS)), "False", "False", "1"]


def test_compiling_a_logsumexp_kernel_warns_nothing(tmp_path):
    # Numba's pedantic SSA check warned 15 times about the inlined exp's variables
    code = textwrap.dedent("""
        import warnings, numpy as np, einjit
        @einjit.compile("ik,kj->ij", reduce="logsumexp")
        def lm(a, b):
            return a + b
        x = np.linspace(-3.0, 3.0, 600).reshape(20, 30)
        want = np.log(np.exp(x[:, :, None] + x.T[None]).sum(1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert np.allclose(lm(x, x.T), want)
        print(einjit.cache_info()["compilations"], len(caught))
    """)
    script = tmp_path / "lse.py"  # a file: einjit reads the body's source
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], env=environment(tmp_path / "cache"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    compilations, warned = map(int, out.stdout.split())
    assert compilations >= 1 and warned == 0, out.stderr


def test_new_process_loads_every_kernel_an_earlier_one_compiled(tmp_path):
    directory = tmp_path / "new" / "cache"
    first = run_kernels(directory)
    second = run_kernels(directory)
    assert (first["info"]["compilations"], first["info"]["disk_loads"]) == (4, 0)
    assert (second["info"]["compilations"], second["info"]["disk_loads"]) == (0, 4)
    assert first["warnings"] == second["warnings"] == []
    for path in (directory, directory / "kernels"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert len(list((directory / "kernels").glob("k_*.py"))) == 4
    for path in numba_files(directory, ".nb?"):  # Numba's files: no group/other write
        assert not path.stat().st_mode & 0o022


def kernel_stems(directory):
    """The module name (``k_<hash>``) of each of KERNELS, in order."""
    by_equation = {k.equation: k.path.stem for k in cache.kernel_files(directory)}
    return [by_equation[eq] for eq, _ in KERNELS]


def test_corrupted_cache_files_warn_once_each_and_recompile(cache_copy):
    stems = kernel_stems(cache_copy)
    pycache = cache_copy / "kernels" / "__pycache__"
    index, = pycache.glob(f"{stems[0]}.*.nbi")
    data, = pycache.glob(f"{stems[1]}.*.nbc")
    module = cache_copy / "kernels" / f"{stems[2]}.py"
    empty, = pycache.glob(f"{stems[3]}.*.nbc")
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 3])  # truncated
    garbled = bytearray(data.read_bytes())
    for i in range(0, len(garbled), 3):
        garbled[i] ^= 0x5A
    data.write_bytes(bytes(garbled))
    module.write_text(module.read_text()[:60])  # truncated
    empty.write_bytes(b"")
    report = run_kernels(cache_copy)
    assert (report["info"]["compilations"], report["info"]["disk_loads"]) == (4, 0)
    for victim in (index, data, module, empty):  # one warning per damaged file
        assert sum(victim.name in w for w in report["warnings"]) == 1, report["warnings"]
    assert len(report["warnings"]) == 4
    again = run_kernels(cache_copy)  # the recompiled kernels were written back, intact
    assert again["warnings"] == []
    assert (again["info"]["compilations"], again["info"]["disk_loads"]) == (0, 4)


@pytest.mark.parametrize("target", ["cache directory", "kernels directory"])
def test_cache_directory_writable_by_others_is_refused(cache_copy, target):
    victim = cache_copy if target == "cache directory" else cache_copy / "kernels"
    victim.chmod(0o777)
    report = run_kernels(cache_copy)
    assert len(report["warnings"]) == 1, report["warnings"]
    message = report["warnings"][0]
    assert "refusing" in message and str(victim) in message and "0777" in message
    assert (report["info"]["compilations"], report["info"]["disk_loads"]) == (4, 0)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o777  # refused, not silently "fixed"


def test_cache_files_writable_by_others_are_not_loaded(cache_copy):
    stems = kernel_stems(cache_copy)
    module = cache_copy / "kernels" / f"{stems[0]}.py"
    index, = (cache_copy / "kernels" / "__pycache__").glob(f"{stems[1]}.*.nbi")
    data, = (cache_copy / "kernels" / "__pycache__").glob(f"{stems[2]}.*.nbc")
    victims = {module: "0666", index: "0666", data: "0666"}
    for victim in victims:
        victim.chmod(0o666)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # only root can give a file away
        foreign = cache_copy / "kernels" / f"{stems[3]}.py"
        os.chown(foreign, 65534, -1)
        victims[foreign] = "owned by another user"
    report = run_kernels(cache_copy)
    refused = len(victims)
    assert (report["info"]["compilations"], report["info"]["disk_loads"]) == (refused, 4 - refused)
    for victim, why in victims.items():
        assert sum(str(victim) in w and "refusing" in w and why in w
                   for w in report["warnings"]) == 1, report["warnings"]
    assert len(report["warnings"]) == refused
    assert all(stat.S_IMODE(v.stat().st_mode) == 0o666 for v in (module, index, data))


def test_unusable_cache_directory_warns_once_and_still_works(tmp_path):
    (tmp_path / "a-file").write_text("")  # a directory cannot be made under a file
    report = run_kernels(tmp_path / "a-file" / "cache")
    assert len(report["warnings"]) == 1 and "not usable" in report["warnings"][0]
    assert report["info"]["compilations"] == 4


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores permissions")
def test_unwritable_cache_directory_warns_once_and_still_works(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        report = run_kernels(locked / "cache")
    finally:
        locked.chmod(0o700)
    assert len(report["warnings"]) == 1 and "not usable" in report["warnings"][0]
    assert report["info"]["compilations"] == 4


def test_two_warmups_at_once_then_a_third_process_compiles_nothing(tmp_path):
    directory = tmp_path / "cache"
    kernels = KERNELS[:3]
    listing = tmp_path / "kernels.json"
    listing.write_text(json.dumps({"kernel": [{"equation": eq, "shapes": shapes}
                                              for eq, shapes in kernels]}))
    command = [sys.executable, "-m", "einjit", "warmup", str(listing)]
    procs = [subprocess.Popen(command, env=environment(directory), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
        assert "0 failed" in out and "Warning" not in err, out + err
    report = run_kernels(directory, kernels)
    assert report["warnings"] == []
    assert (report["info"]["compilations"], report["info"]["disk_loads"]) == (0, len(kernels))
    assert not list((directory / "kernels").glob(".k_*"))  # no temporary files left


def test_key_covers_versions_cpu_and_target():
    import llvmlite.binding as llvm
    import numba

    salt = cache._salt()
    for part in (f"einjit-{einjit.__version__}", f"numba-{numba.__version__}",
                 f"cpu-{numba.config.CPU_NAME or llvm.get_host_cpu_name()}"):
        assert part in salt
    assert llvm.get_host_cpu_features().flatten() in salt or numba.config.CPU_FEATURES
    assert cache._source_key("x = 1") == cache._source_key("x = 1")
    assert cache._source_key("x = 1") != cache._source_key("x = 1", target="cuda")
    assert cache._source_key("x = 1") != cache._source_key("x = 2")


def test_compile_kernel_counts_a_process_local_repeat_as_nothing():
    import numba

    source = ("from numba import njit\n\n\n@njit(cache=True)\n"
              "def k0(x):\n    return x * 3 + 0.25\n")
    sig = (numba.float64,)
    before = einjit.cache_info()
    fn = cache.compile_kernel(source, "k0", sig)
    mid = einjit.cache_info()
    assert fn(2.0) == 6.25
    assert (mid["compilations"] + mid["disk_loads"]) - (before["compilations"]
                                                        + before["disk_loads"]) == 1
    assert cache.compile_kernel(source, "k0", sig) is fn
    after = einjit.cache_info()
    assert (after["compilations"], after["disk_loads"]) == (mid["compilations"],
                                                           mid["disk_loads"])


def test_kernel_files_lists_and_remove_kernels_deletes(cache_copy):
    listed = cache.kernel_files(cache_copy)
    assert sorted(k.equation for k in listed) == sorted(eq for eq, _ in KERNELS)
    for k in listed:
        assert k.size == sum(p.stat().st_size for p in k.files)
        assert {p.suffix for p in k.files} == {".py", ".nbi", ".nbc"}
    stray = cache_copy / "kernels" / "__pycache__" / "k_0123456789abcdef01234567.k0-7.py311.nbi"
    stray.write_bytes(b"left from a deleted module")
    assert cache.remove_kernels(older_than_days=1, directory=cache_copy)[0] == 0
    old = time.time() - 3 * 86400
    for p in listed[0].files:
        os.utime(p, (old, old))
    assert cache.remove_kernels(older_than_days=2, directory=cache_copy)[0] == 1
    assert [k.path for k in cache.kernel_files(cache_copy)] == [k.path for k in listed[1:]]
    assert stray.exists()  # not old enough
    count, size = cache.remove_kernels(directory=cache_copy)
    assert count == 3 and size >= sum(k.size for k in listed[1:])
    assert cache.kernel_files(cache_copy) == []
    assert not stray.exists()
    assert sorted(p.name for p in (cache_copy / "kernels").iterdir()) == ["__pycache__"]
