"""Check that two job output folders hold the same results (e.g. before and after a change).

Same files, same manifest apart from timings, library versions and the temporary model folder's
name, the same token ids, labels and pairs everywhere, and scores equal up to float32 rounding
(relative and absolute 1e-5). Derived files (HTML, search index) are compared by name only.

One difference is allowed and counted, not failed: two pairs of a ranked pair list whose scores
are equal within that tolerance may trade places (or one at the list's end may be replaced by
another of equal score). The float32 score of one entry depends on the shape of the product it
was computed in, by an ulp or so, so exact searches that score blocks of different shapes
order such near-ties differently; both orders are exact at float32 precision.

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
    elif isinstance(a, list) and isinstance(b, list) and _is_ranking(a) and _is_ranking(b):
        _close_ranking(a, b, where, problems)
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


SWAPS: list[str] = []  # near-tie swaps found by _close_ranking (allowed; reported)


def _is_ranking(items: list) -> bool:
    return bool(items) and all(isinstance(x, dict) and {"i", "j", "score"} <= set(x) for x in items)


def _close_ranking(a: list, b: list, where: str, problems: list[str]) -> None:
    """Pair lists equal up to near-tie swaps.

    Scores must agree by position; a pair found at different places must have a score within
    TOL of its own in the other list, or of that list's last score (it fell off the end).
    """
    if len(a) != len(b):
        problems.append(f"{where}: length {len(a)} != {len(b)}")
        return
    score_of = [{(x["i"], x["j"]): x["score"] for x in items} for items in (a, b)]
    swapped = 0
    for n, (x, y) in enumerate(zip(a, b, strict=True)):
        if not np.isclose(x["score"], y["score"], rtol=TOL, atol=TOL):
            problems.append(f"{where}[{n}].score: {x['score']} != {y['score']}")
        if (x["i"], x["j"]) == (y["i"], y["j"]):
            _close(x, y, f"{where}[{n}]", problems)
            continue
        swapped += 1
        for entry, other, last in ((x, score_of[1], b[-1]), (y, score_of[0], a[-1])):
            twin = other.get((entry["i"], entry["j"]), last["score"])
            if not np.isclose(entry["score"], twin, rtol=TOL, atol=TOL):
                problems.append(f"{where}[{n}]: ({entry['i']}, {entry['j']}) is not a near-tie")
    if swapped:
        SWAPS.append(f"{where}: {swapped} entries trade places with near-ties")


def compare(old: Path, new: Path) -> list[str]:
    """Every difference between the two folders' results (empty when identical).

    The near-tie swaps it allows are listed in ``SWAPS`` (this comparison's only).
    """
    SWAPS.clear()
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
    if not found and SWAPS:
        print(f"(up to {len(SWAPS)} near-tie swaps within float32 rounding:)", *SWAPS, sep="\n  ")
    sys.exit(1 if found else 0)
