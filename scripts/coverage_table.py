"""Write the architecture coverage table (docs/coverage.md and the README region).

Runs the coverage harness's checks (``tests/archzoo``) on every architecture of the installed
TransformerLens's adapter factory and renders architecture x {adapts, hook-verified attention,
hook-verified Q/K, hook-verified MLP, embedding (W_E, W_pos), logit lens, folded = TL processed,
HookedTransformer on 3.9}.

Usage (``scripts/coverage_table.sh`` does all three steps for both TransformerLens lines)::

    python scripts/coverage_table.py --json out4.json       # run the checks on this venv
    python scripts/coverage_table.py --write out4.json [out3.json]   # render + snapshot
    python scripts/coverage_table.py                          # both, this venv only
"""

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "coverage.md"
README = ROOT / "README.md"
SNAPSHOT = ROOT / "tests" / "coverage_expected.json"
START, END = "<!-- coverage-table:start -->", "<!-- coverage-table:end -->"
COLUMNS = {
    "adapts": "adapts",
    "attention": "hook-verified attention",
    "qk": "hook-verified Q/K",
    "mlp": "hook-verified MLP",
    "embedding": "embedding (W_E, W_pos)",
    "logit_lens": "logit lens",
    "folded_eq_tl": "folded = TL processed",
}
HOOKED = "HookedTransformer (TL 3.9)"


def run(out: Path) -> None:
    """Run every check on this venv's TransformerLens and write the JSON results."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    sys.path.insert(0, str(ROOT))  # a script in scripts/: make the repository's tests importable
    import warnings

    warnings.filterwarnings("ignore")
    from tests.archzoo import coverage

    out.write_text(json.dumps(coverage.run_all(), indent=1, sort_keys=True))


def _cell(check: dict | None, limit: int | None, name: str = "") -> str:
    if check is None:
        return ""
    kind, reason = check["kind"], " ".join(check.get("reason", "").split())
    # The row already names the architecture (the tests check that the message does).
    reason = reason.replace(f"architecture={name!r} is not supported: ", "")
    # Refusals end with the list of supported architectures: the table already is that list.
    reason = reason.split(" Supported architectures:")[0]
    if limit is not None and len(reason) > limit:
        # Cut at a word boundary: a half word reads as a typo (and codespell says so).
        reason = reason[: limit - 1].rsplit(" ", 1)[0] + " …"
    reason = reason.replace("|", "\\|")
    if kind == "pass":
        return "✓" + (f" ({reason})" if reason else "")
    if kind == "fail":
        return f"✗ {reason}"
    return f"{kind}: {reason}"


def _summary(run4: dict, run3: dict | None) -> str:
    lines = []
    for label, data in (("", run4), ("", run3)):
        if data is None:
            continue
        rows = data["architectures"]
        text = {n: r for n, r in rows.items() if r["scope"] is None}
        counts = Counter(r["level"] for r in text.values())
        parts = ", ".join(
            f"{counts[lv]} {lv}"
            for lv in ("verified", "partial", "refused", "unrunnable", "FAIL")
            if counts[lv]
        )
        line = (
            f"- **TransformerLens {data['transformer_lens']}** (bridge): {len(text)} text "
            f"architectures: {parts}; {len(rows) - len(text)} out of scope."
        )
        hooked = Counter(
            r["checks"]["hooked_tl3"]["kind"] for r in text.values() if "hooked_tl3" in r["checks"]
        )
        if hooked:
            line += (
                f" HookedTransformer from the same weights: {hooked['pass']} ✓, "
                f"{hooked['fail']} ✗, {hooked['refused']} refused, {hooked['n/a']} n/a."
            )
        lines.append(line + label)
    return "\n".join(lines)


def render(run4: dict, run3: dict | None, limit: int | None) -> str:
    """The summary and the table (reasons cut to ``limit`` characters)."""
    rows4 = run4["architectures"]
    rows3 = run3["architectures"] if run3 else {}
    names = sorted(set(rows4) | set(rows3))
    text = [n for n in names if (rows4.get(n) or rows3.get(n))["scope"] is None]
    header = ["architecture", "outcome"] + list(COLUMNS.values()) + [HOOKED]
    if limit is None:
        header.append("tiny model")
    out = [
        _summary(run4, run3),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name in text:
        r4, r3 = rows4.get(name), rows3.get(name)
        main = r4 if r4 is not None and r4["scope"] is None else r3
        outcome = main["level"] if r4 is not None else f"{r3['level']} (TL 3.9 only)"
        if r4 is not None and r3 is not None and r3.get("level") not in (None, r4["level"]):
            outcome += f" (TL 3.9 bridge: {r3['level']})"
        cells = [_cell(main["checks"].get(c), limit, name) for c in COLUMNS]
        if main["checks"]["adapts"]["kind"] != "pass":
            cells[1:] = ["—"] * (len(cells) - 1)  # nothing to check once adapt() refused
        hooked = r3["checks"].get("hooked_tl3") if r3 and r3["scope"] is None else None
        cells.append(_cell(hooked, limit, name) if hooked else ("not run" if not run3 else "—"))
        if limit is None:
            cells.append(main.get("tiny", ""))
        out.append(f"| `{name}` | {outcome} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def render_out_of_scope(run4: dict, run3: dict | None) -> str:
    """The architectures of the factory that are not text decoders/encoders, with the reason."""
    rows = {**(run3["architectures"] if run3 else {}), **run4["architectures"]}
    lines = ["| architecture | why not checked |", "|---|---|"]
    for name in sorted(rows):
        if rows[name]["scope"] is not None:
            why = rows[name]["scope"]
            lines.append(f"| `{name}` | not a text decoder/encoder: out of scope ({why}) |")
    return "\n".join(lines)


LEGEND = """\
✓ = the view's weights reproduce the model's own forward pass (float32, max deviation <= 1e-4
of the scale); ✗ = they do not, or a bare error was raised (a defect); refused = `adapt()` (or the
step) raised `UnsupportedModelError` with the reason shown; n/a = the check does not apply (the
reason is shown); — = not checked because `adapt()` refused or failed. Outcome: *verified* =
attention, MLP and logit lens all ✓ and nothing ✗; *partial* = nothing ✗ but some check refused
or n/a; *refused* = `adapt()` refused by name; *unrunnable* = TransformerLens cannot build or run
the tiny model; *FAIL* = some check ✗."""


SCOPE_NOTE = """\
What a ✓ does not cover: the attention check rebuilds the output from the *recorded* pattern, so
it verifies the input, `W_V`, `b_V`, `W_O`, `b_O` and the GQA mapping, not the scores; the Q/K
check compares `x W_Q + b_Q` and `x W_K + b_K` with the hooked projections, before any q/k norm,
rotary, ALiBi, soft-cap or sliding window (those must be declared in the spec, not verified
here). Sparse MoE layers are rebuilt through a softmax top-k router. Tiny models are random: the
checks test conventions and arithmetic, not what trained weights mean."""


def write(run4: dict, run3: dict | None) -> None:
    """docs/coverage.md, the README region and the test snapshot."""
    DOC.parent.mkdir(exist_ok=True)
    how = "Generated by `bash scripts/coverage_table.sh` (tests/archzoo); do not edit by hand."
    DOC.write_text(
        "# Architecture coverage\n\n"
        f"{how}\n\n"
        "Every architecture in TransformerLens's adapter factory, as a tiny random model "
        "(tests/archzoo/models.py) wrapped as a `TransformerBridge`; checks in "
        "tests/archzoo/checks.py.\n\n"
        f"{LEGEND}\n\n{SCOPE_NOTE}\n\n{render(run4, run3, None)}\n\n"
        "## Out of scope\n\n"
        f"{render_out_of_scope(run4, run3)}\n"
    )
    region = (
        f"{START}\n<!-- {how} -->\n\n{LEGEND}\n\n{render(run4, run3, 70)}\n\n"
        "Full reasons and the architectures out of scope: [docs/coverage.md](docs/coverage.md).\n"
        f"{END}"
    )
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    README.write_text(pattern.sub(lambda _: region, readme, count=1))
    snapshot = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    for data in (run4, run3):
        if data is None:
            continue
        major = data["transformer_lens"].split(".")[0]
        snapshot[major] = {
            name: {"level": r["level"], "checks": {k: c["kind"] for k, c in r["checks"].items()}}
            for name, r in sorted(data["architectures"].items())
            if r["scope"] is None
        }
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="run the checks here, write their JSON")
    parser.add_argument("--write", type=Path, nargs="+", help="render from JSON (4.x first)")
    args = parser.parse_args(argv)
    if args.json:
        run(args.json)
        return 0
    if args.write:
        runs = [json.loads(p.read_text()) for p in args.write]
    else:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "run.json"
            run(path)
            runs = [json.loads(path.read_text())]
    runs.sort(key=lambda r: r["transformer_lens"], reverse=True)
    write(runs[0], runs[1] if len(runs) > 1 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
