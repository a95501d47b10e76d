"""The main job and the CLI, in-process, on a tiny model (the real model's run is a benchmark)."""

import json

import numpy as np
import pytest
import tinymodels as tm

import tl_embspace as te
from tl_embspace import cli
from tl_embspace.job import interpret_model, load_layer


def test_job_writes_every_parameter_and_matches_the_interpreters(tmp_path):
    model = tm.load("llama-gqa-untied", "bridge")
    out = interpret_model(model, tmp_path / "run", k=5, pair_k=4, svd_components=3, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    spec = te.adapt(model).spec
    assert manifest["options"]["weights"] == "folded"  # pre-norm default
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir())
    assert np.array(manifest["copying_scores"]["scores"]).shape == (spec.n_layers, spec.n_heads)
    layer = load_layer(out, 1)
    arrays, meta = layer["arrays"], layer["meta"]
    # Every FF neuron and every sub-head is there.
    assert arrays["ff_value.top_ids"].shape == (spec.d_mlp, 5)
    assert arrays["ff_gate.top_ids"].shape == (spec.d_mlp, 5)
    assert arrays["q.top_ids"].shape == (spec.n_heads * spec.d_head, 5)
    assert arrays["k.top_ids"].shape == (spec.n_kv_heads * spec.d_head, 5)
    assert arrays["svd_ov.top_ids"].shape == (spec.n_heads * 3, 5)
    assert len(meta["pairs"]) == 2 * spec.n_heads
    # The stored numbers are exactly what the interpreter gives.
    space = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    ref = te.interpret("ff_value", space, layer=1, k=5)
    assert (arrays["ff_value.top_ids"] == ref.top_ids.numpy()).all()
    assert meta["vectors"]["ff_value"]["labels"] == list(ref.labels)
    pairs = te.interpret("ov_pairs", space, layer=1, head=2, k=4)
    stored = next(p for p in meta["pairs"] if p["label"] == "L1.H2.ov")
    assert [(x["i"], x["j"]) for x in stored["top"]] == list(zip(pairs.top[1].tolist(), pairs.top[2].tolist()))
    html = (out / "index.html").read_text()
    assert "<script src" not in html and "copying score" in html


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
    monkeypatch.setattr("tl_embspace.zoo.load", lambda name, backend, **kw: tm.load("gpt2-mha-tied", backend))
    code = cli.main(["run", "--model", "tiny", "--out", str(tmp_path / "o"), "--k", "3", "--pair-k", "2",
                     "--layers", "1", "--no-progress"])
    assert code == 0 and "index.html" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["options"]["layers"] == [1]
    code = cli.main(["run", "--model", "tiny", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert cli.main(["zoo"]) == 0 and "smollm2-135m-instruct" in capsys.readouterr().out
