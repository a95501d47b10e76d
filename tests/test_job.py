"""The main job and the CLI, in-process, on a tiny model (the real model's run is a benchmark)."""

import pytest

import tl_embspace as te
from tl_embspace import cli
from tl_embspace.atlas import Atlas
from tl_embspace.job import interpret_model
from tl_embspace.vocab import choose_vocabulary

from . import tinymodels as tm


def test_job_writes_every_parameter_and_matches_the_interpreters(tmp_path):
    model = tm.load("llama-gqa-untied", "bridge")
    out = interpret_model(model, tmp_path / "run", k=5, pair_k=4, svd_components=3, progress=False)
    atlas = Atlas.open(out)
    spec = te.adapt(model).spec
    assert atlas.options["weights"] == "folded"  # pre-norm default
    derived = {"index.html", "html", "index.sqlite"}
    assert sorted(atlas.files) == sorted(p.name for p in out.iterdir() if p.name not in derived)
    assert derived <= {p.name for p in out.iterdir()}
    assert atlas.copying_scores.scores.shape == (spec.n_layers, spec.n_heads)
    layer = atlas.layer(1)
    vectors = layer.vectors
    # Every FF neuron and every sub-head is there.
    assert vectors["ff_value"].top_ids.shape == (spec.d_mlp, 5)
    assert vectors["ff_gate"].top_ids.shape == (spec.d_mlp, 5)
    assert vectors["q"].top_ids.shape == (spec.n_heads * spec.d_head, 5)
    assert vectors["k"].top_ids.shape == (spec.n_kv_heads * spec.d_head, 5)
    assert vectors["svd_ov"].top_ids.shape == (spec.n_heads * 3, 5)
    assert len(layer.pairs) == 2 * spec.n_heads
    # The stored numbers are exactly what the interpreter gives, in the default (hygiene)
    # vocabulary: the normalised space and the hygiene filter.
    raw = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    choice = choose_vocabulary(raw, "hygiene")
    assert atlas.options["vocab"] == choice.record
    space, hygiene = choice.space, choice.token_filter
    ref = te.interpret("ff_value", space, layer=1, k=5, token_filter=hygiene)
    assert (vectors["ff_value"].top_ids == ref.top_ids.numpy()).all()
    assert vectors["ff_value"].labels == ref.labels
    pairs = te.interpret("ov_pairs", space, layer=1, head=2, k=4, token_filter=hygiene)
    stored = layer.pair("L1.H2.ov")
    assert [(x.i, x.j) for x in stored.top] == list(
        zip(pairs.top[1].tolist(), pairs.top[2].tolist(), strict=True)
    )
    html = (out / "index.html").read_text()
    assert "copying score" in html and "https://" not in html  # no CDN


def test_job_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    model = tm.load("gpt2-mha-tied", "bridge")
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        interpret_model(model, out, progress=False)

    def boom(*a, **kw):
        raise RuntimeError("interrupted")

    monkeypatch.setattr("tl_embspace.job.copying_scores", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        interpret_model(model, tmp_path / "other", k=3, pair_k=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial folder left


def test_cli_runs_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        "tl_embspace.zoo.load", lambda name, backend, **kw: tm.load("gpt2-mha-tied", backend)
    )
    code = cli.main(
        [
            "run",
            "--model",
            "tiny",
            "--out",
            str(tmp_path / "o"),
            "--k",
            "3",
            "--pair-k",
            "2",
            "--layers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0 and "index.html" in capsys.readouterr().out
    assert Atlas.open(tmp_path / "o").layers == (1,)
    code = cli.main(["run", "--model", "tiny", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert cli.main(["zoo"]) == 0 and "smollm2-135m-instruct" in capsys.readouterr().out


@pytest.mark.parametrize("layers", [[9], [0, 0], [True]])
def test_job_refuses_bad_layer_selections(tmp_path, layers):
    model = tm.load("gpt2-mha-tied", "bridge")
    with pytest.raises(te.EmbSpaceError):
        interpret_model(model, tmp_path / "out", layers=layers, progress=False)
    assert not (tmp_path / "out").exists()
