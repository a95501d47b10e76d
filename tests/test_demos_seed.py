"""Smoke test of the two-seed demos (train, align, translate) on a tiny configuration (seconds).

The real runs (SmolLM2 tokenizer, WikiText-2, SST-2; minutes) are in the README. Here the same
scripts run end to end on the tests' 96-token word-level tokenizer, a few lines of made-up text
and a few made-up labelled sentences, with known answers where there are any: a model aligned
with itself is matched layer for layer and head for head in every space, and a classifier
carried from a model to itself through the vocabulary is the identity map, so it keeps its
accuracy exactly.
"""

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch

from . import tinymodels as tm

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def demo(name: str):
    """Import ``demos/<name>.py`` as a module (the demos folder is not a package)."""
    sys.path.insert(0, str(DEMOS))
    try:
        spec = importlib.util.spec_from_file_location(f"_demo_{name}", DEMOS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DEMOS))
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    (root / "wikitext-2").mkdir()
    for split in ("test.txt", "valid.txt"):
        lines = [" ".join(rng.choices(words, k=30)) for _ in range(30)]
        (root / "wikitext-2" / split).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "sst2").mkdir()
    for split, n in (("train.tsv", 80), ("test.tsv", 30)):
        rows = []
        for _ in range(n):
            label = rng.randint(0, 1)
            # Label-dependent words, so that the classifier has something to find.
            sentence = " ".join(rng.choices(words[:20] if label else words[20:], k=6))
            rows.append(f"{sentence}\t{label}")
        (root / "sst2" / split).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def models(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    tiny = ["--n-layers", "2", "--d-model", "16", "--d-mlp", "32", "--n-heads", "2"]
    code = demo("train_seed_models").main(
        ["--data", str(data), "--tokenizer", tm._tokenizer_dir(), "--out", str(out),
         "--name", "tiny", "--seeds", "0", "1", "--seq-len", "8", "--batch", "4",
         "--steps", "3", "--max-val-tokens", "64", *tiny]
    )  # fmt: skip
    assert code == 0
    return out


def test_training_saves_two_reloadable_models_with_their_metrics(models):
    for seed in (0, 1):
        folder = models / f"tiny-seed{seed}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["model"]["seed"] == seed
        assert metrics["model"]["val_loss"] > 0 and metrics["unigram_val_loss"] > 0
        load = demo("seed_models").load_seed_model
        model = load(folder)
        assert model.cfg.n_layers == 2 and model.cfg.d_model == 16
        # The TransformerLens model computes what the saved Hugging Face model computes.
        from transformers import LlamaForCausalLM

        tokens = torch.tensor([[5, 9, 12, 30, 7, 7, 41, 2]])
        with torch.no_grad():
            expected = LlamaForCausalLM.from_pretrained(folder).eval()(tokens).logits
            torch.testing.assert_close(model(tokens), expected, atol=1e-4, rtol=1e-4)
            if tm.has_hooked():
                torch.testing.assert_close(
                    load(folder, "hooked")(tokens), expected, atol=1e-4, rtol=1e-4
                )
    a = (models / "tiny-seed0" / "model.safetensors").read_bytes()
    assert a != (models / "tiny-seed1" / "model.safetensors").read_bytes()  # the seed differs


def test_a_model_aligned_with_itself_is_matched_in_every_space(models, data, tmp_path):
    a = str(models / "tiny-seed0")
    code = demo("align_seed_models").main(
        ["--models", a, a, "--data", str(data), "--ref-seqs", "2", "--ref-len", "8",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    out = json.loads((tmp_path / "align_seed_models.json").read_text())
    assert set(out["results"]) == {"embedding", "embedding_seen", "embedding_deflated", "raw"}
    for result in out["results"].values():
        assert result["layer_match"] == [0, 1]
        assert result["heads_agree_with_activations"] == 1.0
    assert (tmp_path / "align_seed_models.png").read_bytes()[:4] == b"\x89PNG"
    # Two different seeds: it runs and scores (no known answer for tiny, barely trained models).
    b = str(models / "tiny-seed1")
    code = demo("align_seed_models").main(
        ["--models", a, b, "--data", str(data), "--ref-seqs", "2", "--ref-len", "8",
         "--out", str(tmp_path / "ab")]
    )  # fmt: skip
    assert code == 0


def test_a_classifier_carried_to_its_own_model_keeps_its_accuracy(models, data, tmp_path):
    a = str(models / "tiny-seed0")
    code = demo("translate_seed_models").main(
        ["--models", a, a, "--data", str(data), "--pool", "80", "--n-train", "50",
         "--n-pairs", "30", "--seeds", "2", "--layers", "0", "2", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    acc = json.loads((tmp_path / "translate_seed_models.json").read_text())["accuracy"]
    assert set(acc) == {"0", "2"}
    for layer in acc.values():
        own = layer["A_on_A"]["runs"]
        assert layer["identity"]["runs"] == own
        assert layer["vocabulary"]["runs"] == pytest.approx(own, abs=1 / 30 + 1e-9)
        assert all(0.0 <= x <= 1.0 for m in layer.values() for x in m["runs"])


def test_the_full_softmax_trains_unseen_tokens_down(data, tmp_path):
    # The tiny text uses 40 of the tokenizer's 96 tokens. Normalising over those only
    # (``--softmax seen``) leaves the other 56 at their initial embeddings, so over the whole
    # vocabulary the model is worse than one trained with the full softmax (the default).
    tiny = ["--n-layers", "1", "--d-model", "16", "--d-mlp", "32", "--n-heads", "2",
            "--seq-len", "8", "--batch", "4", "--steps", "40", "--max-val-tokens", "64",
            "--data", str(data), "--tokenizer", tm._tokenizer_dir(), "--seeds", "0"]  # fmt: skip
    train = demo("train_seed_models").main
    loss = {}
    for softmax in ("full", "seen"):
        assert train([*tiny, "--softmax", softmax, "--out", str(tmp_path / softmax)]) == 0
        metrics = json.loads((tmp_path / softmax / "wt2-llama4-seed0" / "metrics.json").read_text())
        assert metrics["training_vocab"] == 40
        loss[softmax] = metrics["model"]["val_loss"]
    assert loss["full"] < loss["seen"] - 0.1


def test_embedding_drift_is_measured_against_the_initial_draw(data, tmp_path):
    # With no training step the embedding is its initial draw: every row's cosine with the
    # redrawn initial embedding is 1, after training and when re-evaluated from the saved model.
    args = ["--n-layers", "1", "--d-model", "16", "--d-mlp", "32", "--n-heads", "2",
            "--seq-len", "8", "--batch", "4", "--max-val-tokens", "64", "--data", str(data),
            "--tokenizer", tm._tokenizer_dir(), "--seeds", "3", "--out", str(tmp_path)]  # fmt: skip
    train = demo("train_seed_models").main
    for extra in (["--steps", "0"], ["--evaluate-only"]):
        assert train([*args, *extra]) == 0
        metrics = json.loads((tmp_path / "wt2-llama4-seed3" / "metrics.json").read_text())
        assert metrics["model"]["init_cosine_seen"] == pytest.approx(1.0, abs=1e-6)
        assert metrics["model"]["init_cosine_unseen"] == pytest.approx(1.0, abs=1e-6)
    assert train([*args, "--steps", "5"]) == 0
    metrics = json.loads((tmp_path / "wt2-llama4-seed3" / "metrics.json").read_text())
    assert metrics["model"]["init_cosine_seen"] < 0.999


def sv_max(w: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(w)[0])


def test_deflating_the_basis_removes_its_top_directions_over_tokens():
    from types import SimpleNamespace

    torch.manual_seed(0)
    w = torch.randn(6, 50) * torch.tensor([5.0, 3.0, 1.0, 1.0, 1.0, 1.0])[:, None]
    basis, share, top = demo("seed_models").deflated_basis(SimpleNamespace(W_U=w), 2)
    assert (top.T @ basis).abs().max() < 1e-4 * sv_max(w)
    sv = torch.linalg.svdvals(w - w.mean(1, keepdim=True))
    assert share == pytest.approx((sv[:2] ** 2 / (sv**2).sum()).tolist())
    deflated = torch.linalg.svdvals(basis - basis.mean(1, keepdim=True))
    torch.testing.assert_close(deflated[:4], sv[2:])  # the rest of the spectrum is untouched
    assert deflated[4:].abs().max() < 1e-4 * sv[0]
