"""The ``einjit`` command: warmup (files, inline, jobs), cache info/clear/path, explain."""

import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from einjit import cache
from einjit.cli import Progress, main
from einjit.warmup import (
    CACHED,
    COMPILED,
    FAILED,
    KernelFileError,
    KernelSpec,
    WarmResult,
    read_kernel_file,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent

GOOD_TOML = """\
[[kernel]]
equation = "i,i,i->"
shapes = [[6], [6], [6]]
dtypes = ["float32", "float64"]

[[kernel]]
equation = "ij->ji"          # a view: nothing to compile
shapes = [[2, 3]]
"""


def einjit_command(args, cache_dir, timeout=120):
    env = dict(os.environ, EINJIT_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "einjit", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.mark.parametrize("command", [[], ["warmup"], ["cache"], ["cache", "info"],
                                     ["cache", "clear"], ["cache", "path"], ["explain"]])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: einjit") and "examples:" in out


def test_python_dash_m_einjit_runs(tmp_path):
    proc = einjit_command(["cache", "path"], tmp_path / "somewhere")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "somewhere")
    assert not (tmp_path / "somewhere").exists()  # asking creates nothing


def test_warmup_file_then_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    listing = tmp_path / "kernels.toml"
    listing.write_text(GOOD_TOML)
    directory = tmp_path / "cache"
    first = einjit_command(["warmup", str(listing)], directory)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert sum(line.startswith("compiled:") for line in lines) == 2
    assert any(line.startswith("nothing to compile:") and "(a view)" in line for line in lines)
    assert lines[-1].startswith("2 compiled, 0 already cached, 1 with nothing to compile, "
                                "0 failed in ")
    second = einjit_command(["warmup", str(listing)], directory)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines()[-1].startswith("0 compiled, 2 already cached")

    monkeypatch.setenv("EINJIT_CACHE_DIR", str(directory))  # the rest reads files only
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr().out.splitlines()
    assert info[0] == f"directory: {directory}"
    assert info[1].startswith("kernels: 2 (") and info[1].endswith(" on disk)")
    assert info[-1].split()[0] == "2" and info[-1].endswith("i,i,i->")
    assert main(["cache", "clear", "--older-than", "1"]) == 0
    assert "removed 0 kernel(s) older than 1 days" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 2 kernel(s) (")
    assert cache.kernel_files(directory) == []
    assert main(["cache", "info"]) == 0
    assert "kernels: 0" in capsys.readouterr().out


def test_warmup_inline_and_json_in_process(tmp_path, capsys):
    listing = tmp_path / "k.json"
    listing.write_text(json.dumps([{"equation": "i,->i", "shapes": [[5], []],
                                    "dtype": "int32"}]))
    code = main(["warmup", str(listing), "--equation", "ij,ij,ij->i", "--shapes",
                 "2x9,2x9,2x9", "--dtype", "float32,float64", "-d", "int64"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 5 and all(line.startswith(("compiled:", "already cached:"))
                                 for line in out[:4])
    assert [line.split()[-3] for line in out[:4]] == ["int32", "float32", "float64", "int64"]


def test_warmup_reports_failures_with_their_reason_and_exit_status_1(capsys):
    code = main(["warmup", "--equation", "ij,jk->ik", "--shapes", "2x3,4x5"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failed:" in out and "'j'" in out and "0 compiled, 0 already cached, 1 failed" in out
    code = main(["warmup", "--equation", "i->", "--shapes", "3", "--target", "cuda"])
    out = capsys.readouterr().out
    # Without a GPU the CUDA target fails with its reason; with one it compiles.
    assert (code == 1 and "CUDA GPU" in out) or (code == 0 and "1 compiled" in out)


def test_malformed_file_names_file_entry_and_field_and_compiles_nothing(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("EINJIT_CACHE_DIR", str(tmp_path / "cache"))
    good = tmp_path / "good.toml"
    good.write_text(GOOD_TOML)
    bad = tmp_path / "kernels.toml"
    bad.write_text(GOOD_TOML + '[[kernel]]\nequation = "ij->i"\nshapes = "abc"\n'
                   '[[kernel]]\nequation = "ij,jk->ik"\nshapes = [[2, 3]]\n'
                   'dtypes = ["float32", "flaot32"]\ntarget = "tpu"\n')
    assert main(["warmup", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"einjit warmup: {bad}: kernel[2].shapes: expected a list of integer lists, got 'abc'",
        f"einjit warmup: {bad}: kernel[3].shapes: the equation has 2 operand(s), got 1 shape(s)",
        f"einjit warmup: {bad}: kernel[3].dtypes[1]: 'flaot32' is not a numpy dtype",
        f"einjit warmup: {bad}: kernel[3].target: expected one of 'cpu', 'cuda', got 'tpu'",
    ]
    assert not (tmp_path / "cache").exists()  # validated before anything compiled
    (tmp_path / "broken.json").write_text('{"kernel": [')
    assert main(["warmup", str(tmp_path / "broken.json")]) == 2
    assert f"{tmp_path / 'broken.json'}: not valid JSON" in capsys.readouterr().err


def test_example_kernel_file_is_valid(tmp_path):
    specs = read_kernel_file(ROOT / "examples" / "kernels.toml")
    assert len(specs) == 5 and all(isinstance(s, KernelSpec) for s in specs)
    odd = tmp_path / "odd.toml"
    odd.write_text('[[kernel]]\nequation = "i->"\nshapes = [[2]]\noptimize = "x"\n')
    with pytest.raises(KernelFileError, match=r"odd.toml: kernel\[0\]\.optimize: expected"):
        read_kernel_file(odd)


def test_warmup_jobs_compiles_in_worker_processes(tmp_path):
    listing = tmp_path / "kernels.json"
    listing.write_text(json.dumps({"kernel": [
        {"equation": "ij,ij,ij->j", "shapes": [[3, 5]] * 3},
        {"equation": "ijk->j", "shapes": [[2, 5, 3]]}]}))
    proc = einjit_command(["warmup", str(listing), "--jobs", "2"], tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("2 compiled, 0 already cached, 0 failed")
    assert len(cache.kernel_files(tmp_path / "cache")) == 2


def test_progress_is_one_updating_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out, err = io.StringIO(), Terminal()
    progress = Progress(2, out=out, err=err)
    spec = KernelSpec("i,i->", ((3,), (3,)))
    progress.update(WarmResult(spec, COMPILED, seconds=0.5))
    progress.update(WarmResult(spec, FAILED, "boom"))
    progress.close()
    assert "\n" not in err.getvalue()
    assert "[############............] 1/2 compiled: i,i-> 3,3 float64" in err.getvalue()
    assert err.getvalue().endswith("\r\033[K")
    assert out.getvalue().startswith("failed:") and "(boom)" in out.getvalue()  # failures stay

    plain = io.StringIO()
    progress = Progress(1, out=plain, err=io.StringIO())
    progress.update(WarmResult(spec, CACHED, seconds=0.01))
    assert plain.getvalue() == "already cached:     i,i-> 3,3 float64  [0.01 s]\n"


def test_explain_prints_plan_loops_and_source(capsys):
    assert main(["explain", "ij,jk->ik", "2x3", "3x4", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "plan for ij,jk->ik" in out and "result dtype: float32" in out
    assert "generated source:" in out
    assert main(["explain", "i,->i", "5", "scalar", "--optimize", "false"]) == 0
    assert "i,->i" in capsys.readouterr().out
    assert main(["explain", "i,->i", "5", ""]) == 0
    capsys.readouterr()
    assert main(["explain", "ij,jk->ik", "2x3", "4x4"]) == 2
    assert "einjit explain: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "ij->", "2xq"])
    assert exit_.value.code == 2
