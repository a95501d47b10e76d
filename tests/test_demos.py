"""The demo notebooks run top to bottom on the offline weights, and are committed cleared."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .tinymodels import tl_major

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "demos").glob("*.ipynb"))


def test_there_are_demos_and_they_are_committed_without_outputs():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, path.name
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name


@pytest.mark.real
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_demo_runs(path, require_zoo):
    if tl_major() < 4 and path.stem != "01_quickstart":
        # CI time: the capability notebooks run once, in a Jupyter kernel on the TL 4 line;
        # the quick start (the README's first steps) runs on both lines.
        pytest.skip("capability notebooks run on the TransformerLens 4 line")
    require_zoo("smollm2-135m-instruct")
    # The kernel starts in demos/: PYTHONPATH makes it import this checkout's tl_embspace.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, "-m", "tests.run_notebook", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"ran {path}" in done.stdout
