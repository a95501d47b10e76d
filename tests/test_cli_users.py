"""``show``, ``search`` and ``atlas`` in-process (``main(argv)``), on a tiny model's atlas.

Each answer is checked against the atlas (or the interpreters) it comes from; each wrong input
against one ``error:`` line on stderr and exit status 2.
"""

import argparse
import json

import numpy as np
import pytest

import tl_embspace as te
from tl_embspace import cli
from tl_embspace.atlas import Atlas, SearchIndex
from tl_embspace.job import interpret_model
from tl_embspace.report import site

from . import tinymodels as tm

TINY = "tiny-users-llama"  # 2 layers
OPTIONS = dict(k=4, pair_k=3, svd_components=2, copying_tokens=16)


@pytest.fixture(scope="module")
def model():
    return tm.load("llama-gqa-untied", "bridge")


@pytest.fixture(scope="module")
def atlas_dir(model, tmp_path_factory):
    # Raw vocabulary: `show --model` computes single calls, which are raw (as in Python).
    folder = tmp_path_factory.mktemp("cli") / "run"
    return interpret_model(model, folder, progress=False, vocab="raw", **OPTIONS)


@pytest.fixture
def tiny(zoo_entry, model):
    """The same tiny model as a zoo entry, for ``show --model``; counts its loads."""
    builds = []

    def build(backend, processed, device, dtype):
        builds.append(backend)
        return model

    zoo_entry(TINY, build)
    return builds


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code, err, *needles):
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# --- every option is documented ------------------------------------------------------------


def test_every_subcommand_and_option_has_help(capsys):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"run", "show", "search", "atlas", "zoo"} <= set(commands.choices)
    for name, sub in commands.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        code, out, _ = _main(capsys, name, "--help")
        assert code == 0 and out.startswith("usage: tl-embspace " + name)


# --- search --------------------------------------------------------------------------------


def test_search_prints_the_index_hits(atlas_dir, capsys):
    with SearchIndex.open(atlas_dir) as index:
        expected = index.promoting("w5", limit=5, side="write")
    code, out, _ = _main(capsys, "search", atlas_dir, "w5", "--side", "write", "--limit", 5)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["vector", "side", "token", "rank", "score"]
    assert [line.split()[0] for line in lines[1:]] == [h.label for h in expected]
    code, out, _ = _main(capsys, "search", atlas_dir, "w5", "--side", "write", "--json")
    assert [tuple(h.values()) for h in json.loads(out)][:5] == [tuple(h) for h in expected]


def test_search_suppress_kind_layers_pairs_and_copying(atlas_dir, capsys):
    atlas = Atlas.open(atlas_dir)
    code, out, _ = _main(
        capsys,
        "search",
        atlas_dir,
        "w9",
        "--suppress",
        "--kind",
        "ff_value",
        "--layers",
        1,
        "--json",
        "--limit",
        1000,
    )
    hits = json.loads(out)
    table = atlas.layer(1).vectors["ff_value"]
    rows, ranks = np.nonzero(table.bottom_ids == atlas.vocab.index("w9"))
    assert code == 0 and sorted((h["row"], h["rank"]) for h in hits) == sorted(
        zip(rows.tolist(), ranks.tolist(), strict=True)
    )
    code, out, _ = _main(capsys, "search", atlas_dir, "--copying", "--json", "--limit", 3)
    best = json.loads(out)[0]
    cs = atlas.copying_scores
    assert best["copying_score"] == pytest.approx(float(cs.scores.max()))
    code, out, _ = _main(capsys, "search", atlas_dir, "w1", "--contains", "--pairs", "--json")
    assert code == 0 and all("w1" in p["token_i"] + p["token_j"] for p in json.loads(out))


def test_search_timing_goes_to_stderr(atlas_dir, capsys):
    code, out, err = _main(capsys, "search", atlas_dir, "w5", "--timing")
    assert code == 0 and err.startswith("query: ") and err.strip().endswith(" ms")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["w-not-a-token"], ["no token 'w-not-a-token'", "--contains"]),
        ([], ["give either a TOKEN or --copying"]),
        (["w5", "--copying"], ["give either a TOKEN or --copying"]),
    ],
    ids=["unknown-token", "nothing-asked", "both-asked"],
)
def test_search_wrong_input_is_one_line(atlas_dir, capsys, argv, needles):
    _one_error_line(*_main(capsys, "search", atlas_dir, *argv)[::2], *needles)


def test_search_missing_folder_is_one_line(tmp_path, capsys):
    code, _, err = _main(capsys, "search", tmp_path / "nope", "w5")
    _one_error_line(code, err, "is not a folder, so it is not an atlas")


# --- show ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["L1.ff_value[7]", "L0.ff_key[3]", "L1.H2.q[1]", "L0.KV1.v[2]", "L1.H3.ov.output[1]"]
)
def test_show_from_the_atlas_is_the_stored_row(atlas_dir, capsys, label):
    code, out, _ = _main(capsys, "show", label, "--atlas", atlas_dir, "--json")
    assert code == 0
    shown = json.loads(out)
    layer = int(label[1])
    table = next(
        t for t in Atlas.open(atlas_dir).layer(layer).vectors.values() if label in t.labels
    )
    r = table.labels.index(label)
    assert [t["id"] for t in shown["top"]] == table.top_ids[r].tolist()
    assert [t["id"] for t in shown["bottom"]] == table.bottom_ids[r].tolist()
    assert shown["side"] == table.side and shown["label"] == label
    code, out, _ = _main(capsys, "show", label, "--atlas", atlas_dir, "--k", 2)
    lines = out.splitlines()
    assert lines[0].startswith(label) and len([x for x in lines if x[:5].strip().isdigit()]) == 2


@pytest.mark.parametrize(
    "label", ["L1.ff_value[7]", "L0.KV1.k[2]", "L1.H3.ov.output[1]", "L1.H2.ov"]
)
def test_show_from_the_model_equals_the_atlas(atlas_dir, tiny, capsys, label):
    args = ["show", label, "--json", "--k"]
    _, from_atlas, _ = _main(capsys, *args, 3, "--atlas", atlas_dir)
    code, from_model, _ = _main(capsys, *args, 3, "--model", TINY)
    assert code == 0 and tiny == ["bridge"]
    a, m = json.loads(from_atlas), json.loads(from_model)
    key = ("i", "j") if a["kind"] == "pairs" else ("id",)
    for which in ("top", "bottom"):
        assert [tuple(x[k] for k in key) for x in a[which]] == [
            tuple(x[k] for k in key) for x in m[which]
        ]
        np.testing.assert_allclose(
            [x["score"] for x in a[which]], [x["score"] for x in m[which]], rtol=1e-5, atol=1e-6
        )


def test_show_pairs_table(atlas_dir, capsys):
    code, out, _ = _main(capsys, "show", "L0.H1.qk", "--atlas", atlas_dir)
    pairs = Atlas.open(atlas_dir).layer(0).pair("L0.H1.qk")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("L0.H1.qk  (qk_pairs")
    body = [line.split() for line in lines if line.startswith(("top", "bottom"))]
    assert [(r[2], r[3]) for r in body[:3]] == [(p.token_i, p.token_j) for p in pairs.top]


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["L9.ff_value[1]", "--atlas"], ["holds layers [0, 1], not 9"]),
        (["L1.ff_value[999]", "--atlas"], ["has no vector L1.ff_value[999]"]),
        (["L1.H9.ov", "--atlas"], ["no pair table 'L1.H9.ov'"]),
        (["ff_value 3", "--atlas"], ["is not a parameter label", "L3.ff_value[17]"]),
    ],
    ids=["layer-out-of-range", "row-out-of-range", "head-out-of-range", "not-a-label"],
)
def test_show_wrong_input_is_one_line(atlas_dir, capsys, argv, needles):
    code, _, err = _main(capsys, "show", *argv, atlas_dir)
    _one_error_line(code, err, *needles)


def test_show_wrong_model_input_is_one_line(tiny, tmp_path, capsys):
    code, _, err = _main(capsys, "show", "L7.ff_value[1]", "--model", TINY)
    _one_error_line(code, err, "layer")
    code, _, err = _main(capsys, "show", "L1.ff_value[1]", "--model", "tl-embspace-tests/nope")
    _one_error_line(code, err, "tl-embspace-tests/nope")
    code, _, err = _main(capsys, "show", "L1.ff_value[1]", "--atlas", tmp_path / "missing")
    _one_error_line(code, err, "is not a folder")


def test_show_needs_exactly_one_source(capsys):
    code, _, err = _main(capsys, "show", "L1.ff_value[1]")
    assert code == 2 and "one of the arguments --atlas --model is required" in err


# --- atlas ---------------------------------------------------------------------------------


def test_atlas_rerenders_only_the_html(atlas_dir, capsys, monkeypatch):
    data = {
        p.name: p.read_bytes() for p in atlas_dir.iterdir() if p.is_file() and p.suffix != ".html"
    }

    @site.section("extra", "An extra section")
    def extra(atlas, attached):
        return "<p>EXTRA-SECTION &lt;ok&gt;</p>"

    try:
        code, out, _ = _main(capsys, "atlas", atlas_dir)
    finally:
        site.SECTIONS[:] = [s for s in site.SECTIONS if s.id != "extra"]
    assert code == 0 and out.strip() == f"wrote {atlas_dir / 'index.html'}"
    page = (atlas_dir / "index.html").read_text(encoding="utf-8")
    assert "EXTRA-SECTION" in page and "href='#sec-extra'" in page
    after = {
        p.name: p.read_bytes() for p in atlas_dir.iterdir() if p.is_file() and p.suffix != ".html"
    }
    assert after == data  # data files and the index untouched
    assert not [p for p in atlas_dir.iterdir() if p.name.startswith(".")]
    code, out, _ = _main(capsys, "atlas", atlas_dir, "--index")
    assert code == 0 and "index.sqlite" in out
    with te.SearchIndex.open(atlas_dir) as index:
        assert index.counts()["params"] > 0


def test_atlas_refuses_a_folder_that_is_not_an_atlas(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    code, _, err = _main(capsys, "atlas", tmp_path)
    _one_error_line(code, err, "no manifest.json")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_run_no_index_then_atlas_index(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--model", TINY, "--out", out, "--no-progress", "--no-index", "--layers", 1]
    code, _, _ = _main(capsys, *argv, "--k", 2, "--pair-k", 2, "--svd-components", 1)
    assert code == 0 and (out / "index.html").is_file() and not (out / "index.sqlite").exists()
    code, _, _ = _main(capsys, "atlas", out, "--index")
    assert code == 0
    with SearchIndex.open(out, build=False) as index:
        assert index.counts()["hits"] == 2 * 2 * index.counts()["params"]


def test_run_threads_applies_to_the_job_and_is_restored(tiny, tmp_path, capsys, monkeypatch):
    import torch

    import tl_embspace.job as job

    seen = []
    real = job.interpret_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "interpret_model", spy)
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    argv = ["run", "--model", TINY, "--out", tmp_path / "out", "--no-progress", "--layers", 1]
    code, _, _ = _main(capsys, *argv, "--k", 2, "--pair-k", 2, "--threads", wanted)
    assert code == 0 and seen == [wanted]
    assert torch.get_num_threads() == before
    code, _, err = _main(capsys, *argv, "--threads", 0)
    assert code == 2 and "--threads" in err
