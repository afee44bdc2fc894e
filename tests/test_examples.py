"""The example scripts run and check themselves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(("script", "expect"), [
    ("quickstart.py", ""),
    ("pairwise_distances.py", "max |difference| from the expanded formula"),
    ("shortest_paths.py", "agrees with Floyd-Warshall: True"),
    ("hmm_forward.py", "log P(observations)"),
])
def test_example_runs(script, expect):
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
