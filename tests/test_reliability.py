"""Reliability: no silent wrong answer, no lost data.

* ``test_catalogue``: every bad or odd input of ``tests/catalogue.py`` ends in a correct answer
  or an ``EmbSpaceError`` naming the problem (the README's "Guarantees" table is rendered from
  the same list, and ``test_readme_guarantees_table_is_current`` keeps it so).
* Regression tests for defects that once gave a wrong answer without an error.
* Durability: a run killed with SIGINT, SIGTERM or SIGKILL leaves the previous atlas (or
  nothing) and never a partial folder presented as complete; the next run cleans up.
* Determinism: the same inputs give byte-identical atlas files.

Every test here also runs under ``conftest.no_model_mutation``.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import tl_embspace as te
from tl_embspace import engine
from tl_embspace.atlas import writer as atlas_writer
from tl_embspace.job import interpret_model

from . import catalogue
from . import tinymodels as tm

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(k=3, pair_k=2, svd_components=2, copying_tokens=16)


# -- the catalogue ---------------------------------------------------------------------------


@pytest.fixture
def cli_model(zoo_entry):
    """The catalogue's command-line model (a tiny Llama); the list records each load."""
    builds = []

    def build(backend, processed, device, dtype):
        builds.append(backend)
        return tm.load(catalogue.CASE, backend, processed)

    zoo_entry(catalogue.CLI_MODEL, build)
    return builds


def _params(entry: catalogue.Entry):
    marks = [pytest.mark.mutates_model] if entry.given.startswith("weights edited") else []
    return pytest.param(entry, id=entry.id, marks=marks)


@pytest.fixture(scope="module")
def typed_outcomes(tmp_path_factory):
    """The ``typed`` entries' outcomes in a plain interpreter (see ``catalogue.Entry.typed``)."""
    code = (
        "import json, sys; from tests import catalogue; "
        "print(json.dumps(catalogue.run_typed_entries(sys.argv[1])))"
    )
    tmp = str(tmp_path_factory.mktemp("typed"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-c", code, tmp],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", [_params(e) for e in catalogue.CATALOGUE])
def test_catalogue(entry, tmp_path, cli_model, capsys, request):
    """Each input ends as its entry says: a checked answer, or the named error."""
    ctx = catalogue.Ctx(tmp_path)
    if entry.typed:
        assert entry.raises is not None and issubclass(entry.raises, te.EmbSpaceError)
        name, message = request.getfixturevalue("typed_outcomes")[entry.id]
        assert name == entry.raises.__name__ and entry.names in message, (name, message)
        return
    if entry.area == "cli":
        assert entry.call(ctx) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1 and entry.names in lines[0], err
        assert "Traceback" not in err
        if not entry.loads:
            assert cli_model == []  # refused before loading the model
        assert not (tmp_path / "out").exists()
        return
    if entry.raises is None:
        entry.call(ctx)
        return
    assert issubclass(entry.raises, te.EmbSpaceError)
    with pytest.raises(entry.raises) as info:
        entry.call(ctx)
    assert entry.names in str(info.value)


def test_catalogue_ids_are_unique():
    ids = [e.id for e in catalogue.CATALOGUE]
    assert len(ids) == len(set(ids))


def test_readme_guarantees_table_is_current():
    """The README's table is ``scripts/guarantees_table.py``'s rendering of the catalogue."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import guarantees_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert guarantees_table.region(readme) == guarantees_table.render(), (
        "README's guarantees table is stale: run python scripts/guarantees_table.py"
    )


def test_the_model_guard_sees_mutations_flags_and_leaked_hooks():
    """The no-mutation fixture's check can fail: each kind of change is reported."""
    import functools

    from tl_embspace import tokens

    from .model_guard import Snapshot

    model = tm.bridge(catalogue.CASE)
    snap = Snapshot.of(model)
    assert snap.differences(model) == []
    handle = model.blocks[0].register_forward_hook(functools.partial(tokens.visible))
    assert snap.differences(model) == ["1 hook(s) left attached"]
    handle.remove()
    model.train()
    assert snap.differences(model) == ["a module's training flag changed"]
    model.eval()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1
    assert [d.split(" ")[0] for d in snap.differences(model)] == ["parameter"]


# -- regression tests of once-silent defects --------------------------------------------------


def test_folded_view_shares_no_tensor_with_the_raw_view():
    """Writing into a folded RMS view's W_O (unchanged by folding) leaves the raw view alone."""
    view = te.adapt(tm.bridge(catalogue.CASE))
    folded = view.folded()
    raw_before = view.layer(0).W_O.clone()
    folded.layer(0).W_O.mul_(0)
    folded.globals.W_E.mul_(0)
    assert torch.equal(view.layer(0).W_O, raw_before)
    assert bool(view.W_E.abs().max() > 0)


@pytest.mark.mutates_model
def test_refresh_sees_edits_made_through_data():
    """``p.data`` edits bypass PyTorch's version counter: ``refresh()`` picks them up."""
    model = tm.bridge(catalogue.CASE)
    space = te.EmbeddingSpace(model)
    before = te.interpret("ff_value", space, layer=0, neurons=[0], k=3).top_scores
    unembedding = space.write.matrix.clone()
    for p in model.blocks[0].mlp.parameters():
        p.data.mul_(2)
    next(model.unembed.parameters()).data.mul_(3)
    space.view.refresh()
    after = te.interpret("ff_value", space, layer=0, neurons=[0], k=3).top_scores
    torch.testing.assert_close(after, 6 * before)  # W_out doubled, W_U tripled
    torch.testing.assert_close(space.write.matrix, 3 * unembedding)


@pytest.mark.mutates_model
def test_an_edited_unembedding_rebuilds_the_named_bases():
    model = tm.bridge(catalogue.CASE)
    space = te.EmbeddingSpace(model)
    old = space.write.matrix.clone()
    with torch.no_grad():
        next(model.unembed.parameters()).mul_(3)
    torch.testing.assert_close(space.write.matrix, 3 * old)


@pytest.mark.parametrize(
    ("legacy", "new", "expected"),
    [
        ("highest", "none", 2.0**-24),
        ("high", "tf32", 2.0**-11),
        ("medium", "bf16", 2.0**-8),
        (None, "tf32", 2.0**-11),  # legacy getter raises once both APIs were used
        (None, "something-new", 2.0**-8),  # an unknown setting counts as bfloat16
    ],
)
def test_unit_roundoff_reads_both_precision_apis(monkeypatch, legacy, new, expected):
    def legacy_getter():
        if legacy is None:
            raise RuntimeError("mix of the legacy and new APIs")
        return legacy

    monkeypatch.setattr(torch, "get_float32_matmul_precision", legacy_getter)
    monkeypatch.setattr(engine, "_precision_settings", _with_new_setting(legacy_getter, new))
    assert engine._unit_roundoff(torch.device("cpu")) == expected


def _with_new_setting(legacy_getter, new):
    def settings(device):
        out = []
        try:
            out.append(legacy_getter())
        except RuntimeError:
            pass
        return [*out, new]

    return settings


def test_pair_search_under_the_tf32_switch_is_exact():
    """With ``torch.backends.cuda.matmul.fp32_precision = "tf32"`` pair search still works.

    Run in a fresh interpreter: once both precision APIs are used, PyTorch's legacy getter
    raises for the rest of the process.
    """
    code = textwrap.dedent(
        """
        import torch
        from tl_embspace import engine
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        try:
            torch.get_float32_matmul_precision()
            raise SystemExit("the legacy getter did not raise: the case is not exercised")
        except RuntimeError:
            pass
        g = torch.Generator().manual_seed(0)
        left, right = torch.randn(300, 6, generator=g), torch.randn(280, 6, generator=g)
        got = engine.topk_pairs(left, right, 7)
        dense = (left.double() @ right.double().T).flatten()
        want = torch.topk(dense, 7).indices
        assert got.rows.tolist() == (want // 280).tolist(), "rows"
        assert got.cols.tolist() == (want % 280).tolist(), "cols"
        print("ok", engine._unit_roundoff(torch.device("cpu")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


@pytest.mark.real
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pinv_basis_of_half_precision_real_weights_is_a_right_inverse(require_zoo, dtype):
    """SmolLM2 (49,152 tokens) cast to half precision: ``W_U pinv(W_U) = I``, not zeros.

    With the cut-off at the stored dtype's own precision (``49152 * eps(bfloat16) = 384``
    times ``σ_max``) every direction was dropped and the basis was all zeros.
    """
    from tl_embspace import zoo

    require_zoo("smollm2-135m-instruct")
    model = zoo.load("smollm2-135m-instruct", "bridge", device="cpu").to(dtype)
    space = te.EmbeddingSpace(model, read="pinv")
    W_U = te.adapt(model).W_U.double()
    identity = W_U @ space.read.matrix.double().T
    assert float((identity - torch.eye(W_U.shape[0], dtype=torch.float64)).abs().max()) < 1e-3


def test_job_refuses_a_nonlinear_basis_before_writing(tmp_path):
    with pytest.raises(te.BasisError, match="needs a linear basis"):
        interpret_model(tm.bridge(catalogue.CASE), tmp_path / "o", write="readout", **FAST)
    assert list(tmp_path.iterdir()) == []


# -- durability ------------------------------------------------------------------------------

_JOB = textwrap.dedent(
    """
    import os, signal, sys, time
    # A background job of a non-interactive shell starts with SIGINT ignored, and Python then
    # keeps it ignored: restore the usual Ctrl-C behaviour, which is what is under test.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {root!r})
    from tests import tinymodels as tm
    import tl_embspace as te
    from tl_embspace import job

    real = job.copying_scores
    def slow(*args, **kwargs):
        # The last layer's copying score is the job's last step before the swap: by then the
        # whole atlas is computed.
        if kwargs.get("layers") == [last]:
            open({ready!r}, "w").close()
            time.sleep(120)
        return real(*args, **kwargs)
    job.copying_scores = slow
    model = tm.bridge({case!r})
    last = te.adapt(model).spec.n_layers - 1
    if {cli!r}:
        from tl_embspace import cli, zoo
        zoo.ZOO.add("tiny-durability", zoo.ZooEntry(
            name="tiny-durability", hf_id="t/tiny-durability",
            build=lambda *a: model, load_hf=lambda: (None, None), packages=()))
        sys.exit(cli.main(["run", "--model", "tiny-durability", "--out", {out!r},
                           "--overwrite", "--no-progress", "--k", "2", "--pair-k", "2",
                           "--svd-components", "2", "--copying-tokens", "8"]))
    job.interpret_model(model, {out!r}, overwrite=True, progress=False, k=2, pair_k=2,
                       svd_components=2, copying_tokens=8)
    """
)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def previous_atlas(tmp_path_factory):
    """A complete atlas of the tiny model, and its file hashes."""
    out = tmp_path_factory.mktemp("durable") / "atlas"
    interpret_model(
        tm.bridge(catalogue.CASE),
        out,
        progress=False,
        k=2,
        pair_k=2,
        svd_components=2,
        copying_tokens=8,
    )
    return out, _snapshot(out)


def _kill_mid_job(tmp_path, out: Path, sig: int, cli: bool) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / "ready"
    script = _JOB.format(
        root=str(ROOT), ready=str(ready), case=catalogue.CASE, out=str(out), cli=cli
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the job never reached its last stage"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)  # waits, and closes the pipes
    return proc, err


@pytest.mark.parametrize(
    ("sig", "cli"),
    [
        (signal.SIGINT, False),
        (signal.SIGINT, True),
        (signal.SIGTERM, True),
        (signal.SIGKILL, False),
    ],
    ids=["SIGINT-api", "SIGINT-cli", "SIGTERM-cli", "SIGKILL-api"],
)
def test_a_killed_run_leaves_the_previous_atlas(previous_atlas, tmp_path, sig, cli):
    """Killed once the atlas is computed (before the swap): the previous atlas is intact.

    SIGINT and SIGTERM remove the partial folder at once (the CLI exits 130 with one line);
    SIGKILL cannot be caught: its hidden partial folder stays until the next run to the same
    target removes it, and that run's atlas equals an uninterrupted one.
    """
    source, before = previous_atlas
    out = tmp_path / "atlas"
    shutil.copytree(source, out)
    proc, err = _kill_mid_job(tmp_path, out, sig, cli)
    assert _snapshot(out) == before
    te.Atlas.open(out)  # still a complete, readable atlas
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("atlas", "ready"))
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert len(leftovers) == 1 and leftovers[0].startswith(".atlas.partial-"), leftovers
        # The next run to the same target cleans up and writes what an uninterrupted run does.
        interpret_model(
            tm.bridge(catalogue.CASE),
            out,
            overwrite=True,
            progress=False,
            k=2,
            pair_k=2,
            svd_components=2,
            copying_tokens=8,
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas", "ready"]
        assert _same_results(out, source)
    else:
        assert leftovers == []
        if cli:
            assert proc.returncode == 130
            assert err.strip().splitlines()[-1].startswith("error: interrupted")


def _same_results(a: Path, b: Path) -> bool:
    """Same files with the same bytes, except the manifest's and report's timings."""
    sa, sb = _snapshot(a), _snapshot(b)
    stable = [n for n in sa if n.endswith((".npz", ".json")) and n != "manifest.json"]
    return sa.keys() == sb.keys() and all(sa[n] == sb[n] for n in stable)


def test_a_writer_killed_mid_swap_gets_its_atlas_back(previous_atlas, tmp_path):
    """Killed between moving the old atlas aside and moving the new one in: put back."""
    source, before = previous_atlas
    dead = _dead_pid()
    shutil.copytree(source, tmp_path / f".atlas.old-{dead}-abcd1234")
    shutil.copytree(source, tmp_path / f".atlas.partial-{dead}-xyz")
    atlas_writer.recover_interrupted(tmp_path / "atlas")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas"]
    assert _snapshot(tmp_path / "atlas") == before


def test_a_live_writers_folders_are_left_alone(tmp_path):
    live = tmp_path / f".atlas.partial-{os.getpid()}-abc"
    live.mkdir()
    atlas_writer.recover_interrupted(tmp_path / "atlas")
    assert live.is_dir()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- determinism -----------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_atlas_files(tmp_path):
    """Two runs on the same weights write the same bytes (timings aside: they are measured)."""
    model = tm.bridge(catalogue.CASE)
    a = interpret_model(model, tmp_path / "a", progress=False, **FAST)
    b = interpret_model(model, tmp_path / "b", progress=False, **FAST)
    assert _same_results(a, b)
    assert _manifest_without_timings(a) == _manifest_without_timings(b)
    res = te.interpret("ov_pairs", model, layer=1, head=1, k=5)
    assert res.to_json() == te.interpret("ov_pairs", model, layer=1, head=1, k=5).to_json()


def _manifest_without_timings(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("timings_s")
    return manifest
