"""``tl-embspace finetune-diff`` and ``translate`` in-process, on tiny models saved to folders.

The models are named by their ``save_pretrained`` folders (the way a user names a fine-tune
written by ``demos/finetune_sst2.py``); the "fine-tune" is the tiny model with one planted FF
value delta, the known answer: it must be the one parameter that moved, read as its token.
"""

import json
from pathlib import Path

import pytest
import torch

from tl_embspace import adapt, cli
from tl_embspace.apps import vocabulary_map

from . import tinymodels as tm
from .test_apps_align import _other_tokenizer

BASE = "llama-mha-untied"
TOKEN, NEURON = 17, 5


def _save(model, folder: Path, tokenizer=None) -> str:
    model.save_pretrained(folder)
    (tokenizer or tm.tokenizer()).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{"base", "tuned", "other_arch", "other_vocab"}``: saved model folders."""
    root = tmp_path_factory.mktemp("ft-cli")
    tuned = tm.hf_model(BASE)
    with torch.no_grad():  # FF value NEURON of layer 1 pushed towards TOKEN's unembedding
        tuned.model.layers[1].mlp.down_proj.weight[:, NEURON] += 3 * tuned.lm_head.weight[TOKEN]
    return {
        "base": tm.hf_dir(BASE),
        "tuned": _save(tuned, root / "tuned"),
        "other_arch": tm.hf_dir("llama-gqa-untied"),
        "other_vocab": _save(tm.hf_model(BASE), root / "other-vocab", _other_tokenizer(60)),
    }


def _error_line(capsys) -> str:
    """The one ``error: ...`` line on stderr (transformers' loading bars may precede it)."""
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_finetune_diff_finds_and_reads_the_planted_delta(folders, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["finetune-diff", folders["base"], folders["tuned"], "--weights", "raw", "--out"]
    assert cli.main([*argv, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 of " in printed and "L1.W_out" in printed
    data = json.loads((out / "finetune_diff.json").read_text())
    assert data["changes"][0]["name"] == "L1.W_out"
    assert all(c["relative"] == 0 for c in data["changes"][1:])
    assert data["provenance"]["n_changed"] == 1
    assert data["provenance"]["tuned_name"] == folders["tuned"]
    (reading,) = data["readings"]["L1.ff_value"]
    assert reading["label"] == f"L1.ff_value[{NEURON}]"
    assert reading["top"][0] == tm.tokenizer().convert_ids_to_tokens(TOKEN)
    assert (out / "finetune_diff.png").read_bytes()[:4] == b"\x89PNG"
    # Existing files are kept unless --overwrite.
    assert cli.main([*argv, str(out)]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert cli.main([*argv, str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("tuned", "message"),
    [
        ("./no-such-folder", "does not exist"),
        ("other_arch", "same architecture"),
    ],
)
def test_finetune_diff_refuses_bad_inputs(folders, tmp_path, capsys, tuned, message):
    tuned = folders.get(tuned, tuned)
    code = cli.main(["finetune-diff", folders["base"], tuned, "--out", str(tmp_path / "o")])
    assert code == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def _head(path: Path, d: int = 32, bias: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(d, 2, generator=gen)
    torch.save({"weight": weight, "bias": torch.randn(2, generator=gen) if bias else None}, path)
    return weight


def test_translate_to_the_same_model_gives_back_the_head(folders, tmp_path, capsys):
    weight = _head(tmp_path / "head.pt")
    out = tmp_path / "tr"
    argv = ["translate", folders["base"], folders["base"], "--head", str(tmp_path / "head.pt")]
    assert cli.main([*argv, "--out", str(out)]) == 0
    carried = torch.load(out / "head.pt", weights_only=True)
    # E pinv(E) is the identity when E [d, vocab] has full row rank (d = 32 < 96 tokens).
    torch.testing.assert_close(carried["weight"], weight, atol=1e-4, rtol=1e-4)
    data = json.loads((out / "translate.json").read_text())
    (reading,) = data["readings"]
    assert reading["score_correlation_shared_tokens"] == pytest.approx(1.0, abs=1e-5)
    assert reading["source_top"] == reading["target_top"]
    assert data["map"]["n_tokens"] == tm.D_VOCAB and data["map"]["basis_source"] == "W_U"
    assert (out / "translate.png").read_bytes()[:4] == b"\x89PNG"
    assert "correlation of vocabulary scores 1.000" in capsys.readouterr().out


def test_translate_between_models_equals_the_library_map(folders, tmp_path):
    weight = _head(tmp_path / "head.pt", bias=False)
    out = tmp_path / "tr"
    argv = ["translate", folders["base"], folders["other_arch"], "--head"]
    assert cli.main([*argv, str(tmp_path / "head.pt"), "--out", str(out), "--basis", "W_E"]) == 0
    source, target = adapt(tm.bridge(BASE)), adapt(tm.bridge("llama-gqa-untied"))
    expected, _ = vocabulary_map(target, source, basis="W_E").carry_head(weight)
    carried = torch.load(out / "head.pt", weights_only=True)
    torch.testing.assert_close(carried["weight"], expected, atol=1e-5, rtol=1e-4)
    assert carried["bias"] is None


def test_translate_across_vocabularies_needs_shared_tokens(folders, tmp_path, capsys):
    _head(tmp_path / "head.pt")
    argv = [
        "translate",
        folders["base"],
        folders["other_vocab"],
        "--head",
        str(tmp_path / "head.pt"),
    ]
    assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "shared_tokens=True" in _error_line(capsys)
    assert cli.main([*argv, "--out", str(tmp_path / "b"), "--shared-tokens"]) == 0
    data = json.loads((tmp_path / "b" / "translate.json").read_text())
    assert data["map"]["n_tokens"] == 60


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a file"),
        ({"weight": torch.zeros(10, 2)}, "reads width 10"),
        ({"w": torch.zeros(32, 2)}, "must hold a dict with 'weight'"),
        ({"weight": torch.zeros(32, 2), "bias": torch.zeros(3)}, "'bias' must be"),
        (b"not a torch file", "not a readable torch file"),
    ],
)
def test_translate_refuses_bad_heads(folders, tmp_path, capsys, content, message):
    head = tmp_path / "head.pt"
    if isinstance(content, bytes):
        head.write_bytes(content)
    elif content is not None:
        torch.save(content, head)
    argv = ["translate", folders["base"], folders["base"], "--head", str(head)]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_align_also_writes_a_png_heatmap(folders, tmp_path):
    out = tmp_path / "al"
    argv = ["align", folders["base"], folders["base"], "--space", "raw", "--shuffle-b", "1"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert (out / "raw.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "raw.svg").exists() and (out / "raw.json").exists()
