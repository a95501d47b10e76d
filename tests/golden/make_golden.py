"""Pack a job folder's output into a golden fixture (one .npz of arrays, one .json of the rest).

The committed ``job1-*.{npz,json}`` were made by the job as it was before the atlas module
(format "tl_embspace.job/1"; the job, adapters, space, interpreters and engine of commit
9a46c90), on the bridge backend of TransformerLens 4.3, with the options below;
``tests/test_atlas_golden.py`` checks that the current job still writes the same results.
Re-running this script with the current job would overwrite that reference: do not, unless
the results are meant to change.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.golden.make_golden
"""

import json
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
CASES = ("llama-gqa-untied", "bert-encoder")
OPTIONS = dict(k=3, pair_k=2, svd_components=2, copying_tokens=64)


def pack(folder: Path, stem: Path) -> None:
    """Write ``stem.npz`` (every layer's arrays, keyed ``"L00/name"``) and ``stem.json``."""
    arrays, layers = {}, {}
    for f in sorted(folder.glob("L*.npz")):
        with np.load(f) as z:
            arrays.update({f"{f.stem}/{n}": z[n] for n in z.files})
    for f in sorted(folder.glob("L*.json")):
        layers[f.stem] = json.loads(f.read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("timings_s")
    rest = {
        "files": sorted(p.name for p in folder.iterdir()),
        "manifest": manifest,
        "layers": layers,
        "vocab": json.loads((folder / "vocab.json").read_text()),
    }
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    stem.with_suffix(".json").write_text(
        json.dumps(rest, ensure_ascii=False, separators=(",", ":"))
    )


if __name__ == "__main__":
    from tests import tinymodels as tm
    from tl_embspace.job import interpret_model

    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = interpret_model(
                tm.load(case, "bridge"), Path(tmp) / "run", progress=False, **OPTIONS
            )
            pack(out, HERE / f"job1-{case}")
