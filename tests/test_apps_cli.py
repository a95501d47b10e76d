"""``tl-embspace align`` in-process, on a tiny model registered in the zoo."""

import json

import pytest

from tl_embspace import cli

from . import tinymodels as tm

TINY = "tiny-align-llama"


@pytest.fixture
def tiny(zoo_entry):
    zoo_entry(TINY, lambda backend, processed, device, dtype: tm.load("llama-gqa-untied", backend))


def test_align_with_a_shuffled_copy_writes_both_spaces(tiny, tmp_path, capsys):
    out = tmp_path / "align"
    code = cli.main(["align", TINY, TINY, "--shuffle-b", "3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "embedding: layers matched 1.000, mean rank 1.00; heads 1.000; neurons 1.000" in printed
    assert "raw: layers matched 1.000" in printed
    data = json.loads((out / "embedding.json").read_text())
    assert data["space"] == "embedding" and data["shuffle_b_seed"] == 3
    assert data["score"]["heads"] == 1.0
    assert data["provenance"]["weights_a"].startswith("folded")  # auto: pre-norm model folded
    assert (out / "raw.svg").read_text().startswith("<svg")


def test_align_never_replaces_files_without_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "align"
    out.mkdir()
    (out / "raw.json").write_text("mine")
    code = cli.main(["align", TINY, TINY, "--space", "raw", "--out", str(out)])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "raw.json").read_text() == "mine"
    code = cli.main(["align", TINY, TINY, "--space", "raw", "--out", str(out), "--overwrite"])
    assert code == 0
    assert json.loads((out / "raw.json").read_text())["space"] == "raw"


def test_align_rejects_unknown_groups(capsys):
    assert cli.main(["align", "a", "b", "--groups", "ff_keys"]) == 2
    assert "invalid choice" in capsys.readouterr().err
