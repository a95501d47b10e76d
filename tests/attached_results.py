"""Comparison and alignment results as the commands write them, for the atlas's sections.

``tl-embspace compare`` and ``tl-embspace align`` run in-process on the tiny Llama (registered
as a temporary zoo entry, removed afterwards); ``hostile`` then replaces the strings a user or
a model name could bring (model names, the corpus, a filter's excluded tokens) so the tests can
check that the sections escape them.
"""

import json
from pathlib import Path

from tl_embspace import cli, zoo

from . import tinymodels as tm

TINY = "tiny-sections-llama"


def write_results(folder: Path) -> tuple[Path, Path]:
    """``(compare_dir, align_dir)``: the files the two commands wrote into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text(
        "\n".join(" ".join(f"w{(i * 7 + j) % 80}" for j in range(30)) for i in range(6)),
        encoding="utf-8",
    )
    entry = zoo.ZooEntry(
        name=TINY,
        hf_id=f"tl-embspace-tests/{TINY}",
        build=lambda backend, processed, device, dtype: tm.load("llama-gqa-untied", backend),
        load_hf=lambda: (None, None),
        packages=(),
    )
    zoo.ZOO.add(TINY, entry)
    try:
        compare_dir, align_dir = folder / "compare", folder / "align"
        argv = ["compare", "--model", TINY, "--corpus", str(corpus), "--out", str(compare_dir)]
        argv += ["--positions", "24", "--seq-len", "12", "--n", "2", "--k", "4", "--no-progress"]
        argv += ["--variants", "raw", "--references", "same", "--kinds", "ff_value", "o"]
        assert cli.main(argv) == 0
        argv = ["align", TINY, TINY, "--shuffle-b", "3", "--out", str(align_dir)]
        assert cli.main([*argv, "--aggregate", "rms"]) == 0
    finally:
        zoo.ZOO.remove(TINY)
    return compare_dir, align_dir


def make_hostile(compare_dir: Path, align_dir: Path, atlas_dir: Path, hostile: str) -> None:
    """Put ``hostile`` where file strings reach the sections (model names, corpus, filter)."""
    path = compare_dir / "agreement.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"]["corpus"] = hostile
    path.write_text(json.dumps(data), encoding="utf-8")
    path = align_dir / "embedding.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"]["model_b"] = hostile
    path.write_text(json.dumps(data), encoding="utf-8")
    path = atlas_dir / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["options"]["vocab"]["filter"]["exclude"] = [hostile, "&amp;"]
    path.write_text(json.dumps(data), encoding="utf-8")
