"""Check that two job output folders hold the same results (e.g. before and after a change).

Same files, same manifest apart from timings, library versions and the temporary model folder's
name, the same token ids, labels and pairs everywhere, and scores equal up to float32 rounding
(relative and absolute 1e-5). Derived files (HTML, search index) are compared by name only.

    .venv/bin/python benchmarks/check_job_identity.py OLD_FOLDER NEW_FOLDER

Exit status 0 when identical, 1 otherwise (the differences are printed).
"""

import json
import sys
from pathlib import Path

import numpy as np

VOLATILE = {
    "provenance": ("tl_embspace_version", "transformer_lens_version", "torch_version"),
    "spec": ("tl_version",),
}
TOL = 1e-5


def _manifest(folder: Path) -> dict:
    m = json.loads((folder / "manifest.json").read_text())
    m.pop("timings_s", None)
    for section, keys in VOLATILE.items():
        for key in keys:
            m[section].pop(key, None)
    return m


def _close(a: object, b: object, where: str, problems: list[str]) -> None:
    """JSON values equal, floats up to TOL (relative or absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            problems.append(f"{where}: keys {sorted(a)} != {sorted(b)}")
            return
        for key in a:
            _close(a[key], b[key], f"{where}.{key}", problems)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{where}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]", problems)
    elif isinstance(a, float) and isinstance(b, (float, int)):
        if not np.isclose(a, b, rtol=TOL, atol=TOL):
            problems.append(f"{where}: {a} != {b}")
    elif a != b:
        problems.append(f"{where}: {a!r} != {b!r}")


def compare(old: Path, new: Path) -> list[str]:
    """Every difference between the two folders' results (empty when identical)."""
    problems: list[str] = []
    names = lambda f: sorted(p.name for p in f.iterdir())  # noqa: E731
    if names(old) != names(new):
        problems.append(f"files differ: {names(old)} vs {names(new)}")
    _close(_manifest(old), _manifest(new), "manifest", problems)
    for path in sorted(old.glob("L*.json")) + [old / "vocab.json"]:
        _close(json.loads(path.read_text()), json.loads((new / path.name).read_text()),
               path.name, problems)  # fmt: skip
    for path in sorted(old.glob("L*.npz")):
        with np.load(path) as a, np.load(new / path.name) as b:
            if sorted(a.files) != sorted(b.files):
                problems.append(f"{path.name}: arrays {sorted(a.files)} vs {sorted(b.files)}")
                continue
            for name in a.files:
                x, y = a[name], b[name]
                if x.shape != y.shape or x.dtype != y.dtype:
                    problems.append(
                        f"{path.name}/{name}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}"
                    )
                elif x.dtype.kind == "f":
                    if not np.allclose(x, y, rtol=TOL, atol=TOL):
                        problems.append(f"{path.name}/{name}: max |diff| {np.abs(x - y).max()}")
                elif not np.array_equal(x, y):
                    problems.append(f"{path.name}/{name}: {int((x != y).sum())} entries differ")
    return problems


if __name__ == "__main__":
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("identical" if not found else "\n".join(["DIFFERENT:", *found]))
    sys.exit(1 if found else 0)
