"""The first-page sections beyond the overview: vocabulary hygiene, comparison, alignment.

Each is one function ``(atlas, attached) -> HTML | None`` registered with
:func:`~tl_embspace.report.site.section`; None (no such results) leaves it out. Every string
read from a file is escaped and every number formatted, never inserted raw.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..atlas import Atlas
from .attached import Attached
from .site import esc, section

# --- inline SVG ------------------------------------------------------------------------------


def line_chart(
    title: str,
    xs: Sequence[int | float],
    series: Sequence[tuple[str, Sequence[float], str]],
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    width: int = 250,
    height: int = 140,
) -> str:
    """Inline SVG: one polyline per ``(name, ys, colour)``, optionally a shaded ``(low, high)``."""
    left, right, top, bottom = 34, 8, 18, 30
    values = [y for _, ys, _ in series for y in ys] + (
        [*band[0], *band[1]] if band is not None else []
    )
    values = [v for v in values if math.isfinite(v)] or [0.0]
    lo, hi = min(0.0, *values), max(values)
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = min(xs), max(xs)
    span = x1 - x0 if x1 > x0 else 1.0

    def px(x: int | float) -> float:
        return left + (width - left - right) * (x - x0) / span

    def py(y: int | float) -> float:
        return top + (height - top - bottom) * (hi - y) / (hi - lo)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{esc(title)}</title>'
        f'<text x="{left}" y="11">{esc(title)}</text>',
        f'<line x1="{left}" x2="{width - right}" y1="{py(lo):.1f}" y2="{py(lo):.1f}" '
        'stroke="#889"/>',
        f'<text x="2" y="{py(hi) + 4:.1f}">{hi:.2g}</text>'
        f'<text x="2" y="{py(lo):.1f}">{lo:.2g}</text>',
        f'<text x="{left}" y="{height - 16}">{x0:g}</text>'
        f'<text x="{width - right - 14}" y="{height - 16}">{x1:g}</text>',
    ]
    if band is not None:
        upper = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, band[1], strict=True))
        lower = " ".join(
            f"{px(x):.1f},{py(y):.1f}" for x, y in reversed(list(zip(xs, band[0], strict=True)))
        )
        parts.append(f'<polygon points="{upper} {lower}" fill="#4f6fd8" fill-opacity="0.18"/>')
    for n, (name, ys, colour) in enumerate(series):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}"/>')
        for x, y in zip(xs, ys, strict=True):
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="{colour}">'
                f"<title>{esc(name)}, layer {x:g}: {y:.3f}</title></circle>"
            )
        parts.append(
            f'<text x="{left + 90 * n}" y="{height - 3}" fill="{colour}">{esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def similarity_heatmap(sim: np.ndarray, match: Sequence[Any], title: str) -> str:
    """Inline SVG: rows A's layers, columns B's, darker = more similar; matches outlined red."""
    n_a, n_b = sim.shape
    cell = max(8, min(24, 300 // max(n_a, n_b, 1)))  # about 300 px whatever the depth
    lo, hi = float(sim.min()), float(sim.max())
    span = hi - lo if hi > lo else 1.0
    left, top = 30, 18
    w, h = left + n_b * cell + 4, top + n_a * cell + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"'
        f' role="img"><title>{esc(title)}</title><text x="2" y="11">A \u2193 B \u2192</text>'
    ]
    for i in range(n_a):
        parts.append(f'<text x="2" y="{top + i * cell + cell - 1}">{i}</text>')
        for j in range(n_b):
            v = float(sim[i, j])
            shade = int(round(245 - 200 * (v - lo) / span))
            stroke = ' stroke="red" stroke-width="1.5"' if match[i] == j else ""
            parts.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" '
                f'height="{cell}" fill="rgb({shade},{shade},{shade})"{stroke}>'
                f"<title>A L{i}, B L{j}: {v:.3g}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _facts(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs if v is not None
    )
    return f"<table>{rows}</table>"


def _described(value: Any) -> Any:
    """A record (e.g. the corpus: kind, path, positions, ...) as ``key value, ...`` text."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return value


def _num(x: Any, fmt: str = ".3f") -> str:
    return format(float(x), fmt) if isinstance(x, (int, float)) else esc(x)


# --- sections --------------------------------------------------------------------------------


@section("hygiene", "Vocabulary hygiene")
def _hygiene(atlas: Atlas, attached: Attached) -> str | None:
    """Which tokens the rankings leave out and how scores are normalised (the job's record)."""
    choice = atlas.options.get("vocab")  # absent before vocabulary hygiene existed
    if not choice or (choice.get("mode") == "raw" and not choice.get("filter")):
        return None
    chosen = choice.get("filter") or {}
    d_vocab = atlas.spec.get("d_vocab")
    kept = chosen.get("allowed")
    share = (
        f"{kept:,} of {d_vocab:,} ({100 * kept / d_vocab:.1f}%)"
        if isinstance(kept, int) and isinstance(d_vocab, int) and d_vocab
        else kept
    )
    facts = [
        ("mode", choice.get("mode")),
        ("tokens ranked", share),
        ("left out", chosen.get("label") or None),
        ("normalisation", choice.get("normalisation") or "none (raw scores)"),
        ("mask digest", chosen.get("digest") or None),
    ]
    conditions = [
        (name, value)
        for name, value in chosen.items()
        if name not in ("label", "allowed", "digest") and value not in (None, False, [], "")
    ]
    extra = ""
    if conditions:
        cells = "".join(
            f"<tr><th>{esc(k)}</th><td>"
            + (
                " ".join(f"<span class='tok'>{esc(t)}</span>" for t in v)
                if isinstance(v, list)
                else esc(v)
            )
            + "</td></tr>"
            for k, v in conditions
        )
        extra = f"<h3>Further conditions of the filter</h3><table>{cells}</table>"
    return (
        "<p class='note'>Every top and bottom list of this atlas ranks only the tokens the "
        "filter keeps; copying scores use every token and raw OV scores. "
        "<code>tl-embspace run --vocab raw</code> writes the paper's view (every token, raw "
        f"scores).</p>{_facts(facts)}{extra}"
    )


@section("comparison", "Parameters vs activations")
def _comparison(atlas: Atlas, attached: Attached) -> str | None:
    """The agreement protocol's per-layer figures (``tl-embspace compare``)."""
    data = attached.agreement
    if data is None:
        return None
    prov, rows = data["provenance"], data["rows"]
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    panels = list(dict.fromkeys((r["variant"], r["reference"]) for r in rows))
    facts = [
        ("model", prov.get("model")),
        ("corpus", _described(prov.get("corpus"))),
        ("positions", prov.get("n_positions")),
        ("neurons / sub-heads per position (n)", prov.get("n")),
        ("tokens per set (k)", prov.get("k")),
        ("weights projected", prov.get("weights_projected")),
        ("bases", f"read {prov.get('read_basis')}, write {prov.get('write_basis')}"),
        ("lens", prov.get("lens")),
        ("seed", prov.get("seed")),
        ("interval", prov.get("ci")),
    ]
    mismatch = ""
    if prov.get("model") not in (None, atlas.provenance.get("model_name")):
        mismatch = (
            f"<p class='note'><b>Note:</b> these figures are of {esc(prov.get('model'))}, "
            f"this atlas of {esc(atlas.provenance.get('model_name'))}.</p>"
        )
    held = set(atlas.layers)
    parts = [
        "<p class='note'>Dar et al. (2023) §5: at each position, do the top tokens of the most "
        "active parameters overlap the logit lens (aligned) more than those of a random other "
        "position (baseline)? Cells: aligned / baseline (difference [95% CI]). Band: baseline "
        f"plus the interval.</p>{mismatch}{_facts(facts)}"
    ]
    for variant, reference in panels:
        mine = [r for r in rows if (r["variant"], r["reference"]) == (variant, reference)]
        layers = sorted({r["layer"] for r in mine})
        by = {(r["layer"], r["kind"]): r for r in mine}
        parts.append(f"<h3>{esc(variant)}, logit lens of the {esc(reference)} layer</h3>")
        charts = []
        for kind in kinds:
            found = [by.get((layer, kind)) for layer in layers]
            series = [r for r in found if r is not None]
            if len(series) != len(layers):
                continue
            base = [float(r["baseline"]) for r in series]
            charts.append(
                line_chart(
                    kind,
                    layers,
                    [
                        ("aligned", [float(r["aligned"]) for r in series], "#1d4ed8"),
                        ("baseline", base, "#888"),
                    ],
                    band=(
                        [b + float(r["ci_low"]) for b, r in zip(base, series, strict=True)],
                        [b + float(r["ci_high"]) for b, r in zip(base, series, strict=True)],
                    ),
                )
            )
        parts.append("<div class='plots'>" + "".join(f"<div>{c}</div>" for c in charts) + "</div>")
        head = "<tr><th>layer</th>" + "".join(f"<th>{esc(k)}</th>" for k in kinds) + "</tr>"
        body = []
        for layer in layers:
            name = f"<a href='#layer={layer}'>{layer}</a>" if layer in held else f"{layer}"
            cells = []
            for kind in kinds:
                r = by.get((layer, kind))
                cells.append(
                    "<td>-</td>"
                    if r is None
                    else f"<td class='num'>{_num(r['aligned'])} / {_num(r['baseline'])} "
                    f"({_num(r['difference'], '+.3f')} [{_num(r['ci_low'], '+.3f')}, "
                    f"{_num(r['ci_high'], '+.3f')}])</td>"
                )
            body.append(f"<tr><td>{name}</td>{''.join(cells)}</tr>")
        parts.append(f"<table>{head}{''.join(body)}</table>")
    return "".join(parts)


@section("alignment", "Alignment with another model")
def _alignment(atlas: Atlas, attached: Attached) -> str | None:
    """Layer similarity and matches of ``tl-embspace align`` (embedding and raw spaces)."""
    if not attached.alignments:
        return None
    parts = [
        "<p class='note'>Layers of model A (rows) against layers of model B (columns): darker "
        "is more similar; red outlines are the matches. Raw space (correlations of raw "
        "coordinates) is the baseline embedding space is compared with.</p><div class='plots'>"
    ]
    for space, data in attached.alignments.items():
        prov = data.get("provenance") or {}
        sim = np.asarray(data["similarity"]["combined"], dtype=np.float64)
        match = list(data["layer_match"])
        score = data.get("score") or {}
        combined = (score.get("layers") or {}).get("combined") or {}
        facts = [
            ("models", f"A {prov.get('model_a')}, B {prov.get('model_b')}"),
            ("groups", ", ".join(map(str, data.get("groups") or [])) or None),
            ("aggregate", data.get("aggregate")),
            ("compared over", f"{prov.get('n_items')} {prov.get('items')}"),
            ("B shuffled with seed", data.get("shuffle_b_seed")),
            ("layers matched as expected", combined.get("fraction_matched")),
            ("mean rank of the expected layer", combined.get("mean_rank")),
            ("heads matched as expected", score.get("heads")),
            ("neurons matched as expected", score.get("neurons")),
        ]
        matches = " ".join(f"{i}\u2192{'-' if j is None else j}" for i, j in enumerate(match))
        parts.append(
            f"<div><h3>{esc(space)} space</h3>"
            f"{similarity_heatmap(sim, match, f'{space} space layer similarity')}"
            f"{_facts(facts)}<p class='note'>matches (A\u2192B): {esc(matches)}</p></div>"
        )
    parts.append("</div>")
    return "".join(parts)


__all__ = ["line_chart", "similarity_heatmap"]
