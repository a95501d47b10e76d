"""A first human-readable page for an atlas: one self-contained HTML file.

Pure function of the atlas, read through ``tl_embspace.atlas.Atlas`` (no model code): inline
CSS, no CDN, every token HTML-escaped (display strings already have whitespace made visible),
stable ordering.
"""

import html
import os

import numpy as np

from ..atlas import Atlas, PairTable, VectorTable

CSS = (
    "\nbody{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px}\n"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}\n"
    "th{background:#f4f4f4}"
    ".tok{font-family:monospace;background:#eef;border-radius:3px;padding:0 2px;margin:1px;"
    "display:inline-block}\n"
    ".neg{background:#fee}details{margin:.3em 0}code{background:#f4f4f4}\n"
)


def _tok(s: str, neg: bool = False) -> str:
    return f'<span class="tok{" neg" if neg else ""}">{html.escape(s)}</span>'


def _vector_rows(table: VectorTable, vocab: tuple[str, ...], limit: int, k: int = 10) -> str:
    top, bottom = table.top_ids, table.bottom_ids
    scores = table.top_scores[:, 0]
    # Show the rows whose best score is highest: the most clearly interpretable ones first.
    order = np.argsort(-scores, kind="stable")[:limit]
    rows = "".join(
        f"<tr><td>{html.escape(table.labels[i])}</td><td>{scores[i]:.3g}</td>"
        f"<td>{''.join(_tok(vocab[t]) for t in top[i][:k])}</td>"
        f"<td>{''.join(_tok(vocab[t], True) for t in bottom[i][:k])}</td></tr>"
        for i in order
    )
    head = "<tr><th>vector</th><th>best score</th><th>top tokens</th><th>bottom tokens</th></tr>"
    return f"<table>{head}{rows}</table>"


def _pair_table(p: PairTable, limit: int = 12) -> str:
    rows = "".join(
        f"<tr><td>{_tok(x.token_i)}</td><td>{_tok(x.token_j)}</td><td>{x.score:.3g}</td></tr>"
        for x in p.top[:limit]
    )
    return (
        f"<details><summary>{html.escape(p.label)}</summary><p>{html.escape(p.note)}</p>"
        f"<table><tr><th>token i</th><th>token j</th><th>score</th></tr>{rows}</table></details>"
    )


def render_job(atlas: "Atlas | str | os.PathLike[str]", rows_per_table: int = 15) -> str:
    """Render an atlas (or the atlas folder at that path) as one HTML page, returned as a string."""
    if not isinstance(atlas, Atlas):
        atlas = Atlas.open(atlas)
    vocab = atlas.vocab
    prov = atlas.provenance
    title = f"{html.escape(prov['model_name'])} in embedding space"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    parts.append(f"<h1>{title}</h1>")
    parts.append(
        "<table>"
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in prov.items()
        )
        + "</table>"
    )
    parts.append(
        "<p>Scores: a write-side vector's score for token t is the logit it adds to t "
        f"(basis {html.escape(prov['write_basis'])}); a read-side vector's score is its dot "
        f"product with token t's embedding (basis {html.escape(prov['read_basis'])}). "
        "Rows are sorted by their best score.</p>"
    )
    choice = atlas.options.get("vocab")  # absent from atlases written before hygiene
    if choice:
        token_filter = choice.get("filter")
        described = (
            "every token"
            if not token_filter
            else token_filter.get("label") or f"TokenFilter {token_filter}"
        )
        parts.append(
            f"<p>Vocabulary: <b>{html.escape(choice['mode'])}</b> ({html.escape(described)}; "
            f"normalisation: {html.escape(str(choice.get('normalisation') or 'none'))}). "
            "<code>--vocab raw</code> gives every token and raw scores.</p>"
        )
    cs = atlas.copying_scores
    ranked = sorted(
        (
            (float(s), layer, h)
            for layer, row in zip(cs.layers, cs.scores, strict=True)
            for h, s in enumerate(row)
        ),
        reverse=True,
    )
    parts.append(
        "<h2>OV heads ranked by copying score</h2>"
        f"<p>{html.escape(cs.definition)} ({cs.n_tokens} tokens sampled).</p>"
    )
    parts.append(
        "<table><tr><th>head</th><th>copying score</th></tr>"
        + "".join(f"<tr><td>L{ly}.H{h}</td><td>{s:.3f}</td></tr>" for s, ly, h in ranked[:20])
        + "</table>"
    )
    for layer in atlas.layers:
        record = atlas.layer(layer)
        parts.append(f"<h2>Layer {layer}</h2>")
        for name, table in record.vectors.items():
            parts.append(
                f"<details><summary>{html.escape(name)} ({len(table)} vectors, "
                f"{table.side} side)</summary>"
                + _vector_rows(table, vocab, rows_per_table)
                + "</details>"
            )
        parts.append("<h3>Token pairs</h3>" + "".join(_pair_table(p) for p in record.pairs))
    parts.append("</body></html>")
    return "\n".join(parts)
