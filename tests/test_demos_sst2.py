"""Smoke tests: the SST-2 demo scripts run end to end on tiny models and a tiny data set.

The real runs (SmolLM2, MiniLM, SST-2) take minutes and live in the README; these run the same
code paths on the tiny seeded models of ``tinymodels`` (a word-level vocabulary ``w0``..) with a
made-up ``sst2/`` folder, in-process, and check what the scripts promise: the saved fine-tune
computes the trained logits, only the trained blocks moved, the lexicon scores are shares, the
translation report has every method over every seed.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from . import tinymodels as tm

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def _demo(name: str):
    if str(DEMOS) not in sys.path:
        sys.path.insert(0, str(DEMOS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``sst2/{train,test}.tsv`` whose label is carried by the words w1 (1) and w2 (0)."""
    root = tmp_path_factory.mktemp("data")
    (root / "sst2").mkdir()
    for split, n in (("train", 48), ("test", 20)):
        lines = ["sentence\tlabel"]
        for i in range(n):
            label = i % 2
            lines.append(f"w{5 + i % 7} w{1 if label else 2} w{9 + i % 5} w4\t{label}")
        (root / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def tuned(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "tuned"
    argv = ["--base", tm.hf_dir("llama-mha-untied"), "--data", str(data), "--out", str(out)]
    argv += ["--n-train", "40", "--batch-size", "8", "--epochs", "2", "--train-blocks", "1"]
    assert _demo("finetune_sst2").main(argv) == 0
    return out


def test_finetune_demo_saves_a_model_that_computes_the_trained_logits(tuned, capsys):
    result = json.loads((tuned / "result.json").read_text())
    assert 0 <= result["test_accuracy"] <= 1 and result["majority_baseline"] == 0.5
    assert result["logit_check_max_abs_diff"] < 1e-3  # checked by the script; recorded
    assert result["trained_blocks"] == [1] and result["n_test"] == 20
    head = torch.load(tuned / "head.pt", weights_only=True)
    assert head["weight"].shape == (32, 2) and head["bias"].shape == (2,)
    features = torch.load(tuned / "base_features.pt", weights_only=True)
    assert features["test_pooled"].shape == (20, 32)


def test_finetune_demo_moves_only_the_trained_block(tuned):
    from tl_embspace import adapt
    from tl_embspace.apps import parameter_changes
    from tl_embspace.cli.finetune_diff import load_model

    base = adapt(load_model(tm.hf_dir("llama-mha-untied"), "bridge"))
    changes = parameter_changes(adapt(load_model(str(tuned), "bridge")), base)
    moved = {c.name for c in changes if c.relative > 0}
    assert moved and all(name.startswith("L1.") for name in moved)
    assert "L1.ln1_w" in moved  # the block's own norm is trained; the final norm is frozen


def test_read_demo_scores_the_deltas_against_a_lexicon(tuned, tmp_path, capsys):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("w1\t2.0\t0.5\t[2]\nw2\t-2.0\t0.5\t[-2]\nw3\t1.0\t0.5\t[1]\n:)\t2\t1\t[2]\n")
    out = tmp_path / "read.json"
    argv = ["--base", tm.hf_dir("llama-mha-untied"), "--tuned", str(tuned), "--out", str(out)]
    assert _demo("read_sst2_finetune").main([*argv, "--lexicon", str(lexicon), "--k", "5"]) == 0
    result = json.loads(out.read_text())
    assert result["lexicon_words"] == 3  # the emoticon is left out
    assert result["vocabulary_prior"] == pytest.approx(3 / tm.D_VOCAB)
    assert result["by_group"] and all(0 <= r["delta"] <= 1 for r in result["rows"])
    assert {"base_same", "base_random", "gaussian"} <= set(result["by_group"]["ff_value"])
    assert len(result["head"]["top"]) == 5
    assert "head (positive - negative)" in capsys.readouterr().out


def test_translate_demo_reports_every_method_over_seeds(data, tmp_path):
    argv = ["--model-a", tm.hf_dir("llama-mha-untied"), "--model-b", tm.hf_dir("bert-encoder")]
    argv += ["--data", str(data), "--out", str(tmp_path), "--features", str(tmp_path / "none")]
    argv += ["--n-train", "40", "--n-head", "20", "--n-pairs", "12", "--seeds", "2"]
    assert _demo("translate_sst2").main(argv) == 0
    report = json.loads((tmp_path / "translate_sst2.json").read_text())
    assert len(report["results"]) == 2  # both directions
    for r in report["results"].values():
        assert r["n_tokens"] == tm.D_VOCAB and r["chance"] == 0.5
        assert len(r["accuracy"]) == 6
        for a in r["accuracy"].values():
            assert len(a["per_seed"]) == 2 and all(0 <= x <= 1 for x in a["per_seed"])
