"""``tl-embspace compare`` on a tiny model registered as a temporary zoo entry."""

import json

import pytest

from tl_embspace import cli

from . import tinymodels as tm

TINY = "tiny-compare-llama"


@pytest.fixture
def tiny(zoo_entry):
    zoo_entry(TINY, lambda backend, processed, device, dtype: tm.load("llama-gqa-untied", backend))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(
        "\n".join(" ".join(f"w{(i * 7 + j) % 80}" for j in range(30)) for i in range(6))
    )
    return path


def _argv(tmp_path, corpus, *extra):
    return [
        "compare", "--model", TINY, "--corpus", str(corpus), "--out", str(tmp_path / "out"),
        "--positions", "40", "--seq-len", "16", "--n", "2", "--k", "4", "--no-progress", *extra,
    ]  # fmt: skip


def test_compare_writes_json_and_tables(tiny, corpus, tmp_path, capsys):
    assert cli.main(_argv(tmp_path, corpus, "--layers", "1", "--variants", "raw")) == 0
    out = tmp_path / "out"
    data = json.loads((out / "agreement.json").read_text())
    assert data["provenance"]["n_positions"] == 40 and data["provenance"]["layers"] == [1]
    kinds = {r["kind"] for r in data["rows"]}
    assert kinds == {"ff_key", "ff_gate", "ff_value", "v", "o"}
    assert {r["reference"] for r in data["rows"]} == {"same", "final"}
    report = (out / "agreement.md").read_text()
    assert "## raw, B from the final layer" in report
    assert f"tl-embspace compare --model {TINY} --backend bridge" in report
    assert "--layers 1 --references same final --variants raw" in report
    assert "| 1 |" in capsys.readouterr().out


def test_compare_vocab_hygiene_is_applied_and_recorded(tiny, corpus, tmp_path):
    argv = _argv(tmp_path, corpus, "--layers", "1", "--kinds", "ff_value", "--vocab", "hygiene")
    assert cli.main(argv) == 0
    data = json.loads((tmp_path / "out" / "agreement.json").read_text())
    prov = data["provenance"]
    assert prov["vocab"]["mode"] == "hygiene" and "standardised" in prov["write_basis"]
    assert prov["vocab_tokens"].startswith("A and B ranked over the")
    assert "vocabulary hygiene" in (tmp_path / "out" / "agreement.md").read_text()


def test_compare_refuses_to_replace_its_files_without_overwrite(tiny, corpus, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "agreement.json").write_text("mine")
    assert cli.main(_argv(tmp_path, corpus)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "agreement.json").read_text() == "mine"


def test_compare_refuses_an_unreadable_corpus(tiny, tmp_path, capsys):
    assert cli.main(_argv(tmp_path, tmp_path / "absent.txt")) == 2
    assert "cannot read the corpus" in capsys.readouterr().err


def test_compare_circuits_add_their_figures_to_the_json_report_and_plot(tiny, corpus, tmp_path):
    pytest.importorskip("matplotlib")
    argv = _argv(tmp_path, corpus, "--layers", "0", "--variants", "raw", "--kinds", "ff_value")
    assert cli.main([*argv, "--circuits", "--threshold", "0.3"]) == 0
    out = tmp_path / "out"
    data = json.loads((out / "agreement.json").read_text())
    assert {r["kind"] for r in data["rows"]} == {"ff_value"}
    circuits = data["circuits"]
    assert circuits["provenance"]["threshold"] == 0.3
    assert circuits["provenance"]["read_basis"] == "W_U" and circuits["provenance"]["layers"] == [0]
    assert {(r["measure"], r["layer"]) for r in circuits["rows"]} <= {("qk", 0), ("ov", 0)}
    assert {s["measure"] for s in circuits["layers"]} == {"qk", "ov"}
    assert "## Circuits: QK vs attention" in (out / "agreement.md").read_text()
    png = (out / "agreement.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "agreement.png")).ndim == 3


def test_compare_circuits_alone_and_without_matplotlib(tiny, corpus, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    argv = _argv(tmp_path, corpus, "--layers", "1", "--circuits", "--no-agreement")
    assert cli.main([*argv, "--circuit-measures", "qk"]) == 0
    out = tmp_path / "out"
    data = json.loads((out / "agreement.json").read_text())
    assert set(data) == {"circuits"} and data["circuits"]["provenance"]["measures"] == ["qk"]
    assert not (out / "agreement.png").exists()
    assert "no plot: matplotlib not installed" in capsys.readouterr().out
    assert cli.main(_argv(tmp_path, corpus, "--no-agreement", "--overwrite")) == 2
