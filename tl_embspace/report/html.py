"""A first human-readable page for a job folder: one self-contained HTML file.

Pure function of the files the job wrote (no model code): inline CSS, no CDN, every token
HTML-escaped (display strings already have whitespace made visible), stable ordering.
"""

import html
import json
from pathlib import Path

import numpy as np

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}
th{background:#f4f4f4}.tok{font-family:monospace;background:#eef;border-radius:3px;padding:0 2px;margin:1px;display:inline-block}
.neg{background:#fee}details{margin:.3em 0}code{background:#f4f4f4}
"""


def _tok(s: str, neg: bool = False) -> str:
    return f'<span class="tok{" neg" if neg else ""}">{html.escape(s)}</span>'


def _vector_rows(arrays, meta, vocab, name: str, limit: int, k: int = 10) -> str:
    labels = meta["vectors"][name]["labels"]
    top, bottom = arrays[f"{name}.top_ids"], arrays[f"{name}.bottom_ids"]
    scores = arrays[f"{name}.top_scores"][:, 0]
    # Show the rows whose best score is highest: the most clearly interpretable ones first.
    order = np.argsort(-scores, kind="stable")[:limit]
    rows = "".join(
        f"<tr><td>{html.escape(labels[i])}</td><td>{scores[i]:.3g}</td>"
        f"<td>{''.join(_tok(vocab[t]) for t in top[i][:k])}</td>"
        f"<td>{''.join(_tok(vocab[t], True) for t in bottom[i][:k])}</td></tr>"
        for i in order
    )
    return f"<table><tr><th>vector</th><th>best score</th><th>top tokens</th><th>bottom tokens</th></tr>{rows}</table>"


def _pair_table(p: dict, limit: int = 12) -> str:
    rows = "".join(
        f"<tr><td>{_tok(x['token_i'])}</td><td>{_tok(x['token_j'])}</td><td>{x['score']:.3g}</td></tr>"
        for x in p["top"][:limit]
    )
    return (f"<details><summary>{html.escape(p['label'])}</summary><p>{html.escape(p['note'])}</p>"
            f"<table><tr><th>token i</th><th>token j</th><th>score</th></tr>{rows}</table></details>")


def render_job(folder: "str | Path", rows_per_table: int = 15) -> str:
    """Render the job folder's results as one HTML page (returned as a string)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    vocab = json.loads((folder / "vocab.json").read_text())
    prov, opts = manifest["provenance"], manifest["options"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(prov['model_name'])} in embedding space</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(prov['model_name'])} in embedding space</h1>")
    parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in prov.items()) + "</table>")
    parts.append(
        "<p>Scores: a write-side vector's score for token t is the logit it adds to t "
        f"(basis {html.escape(prov['write_basis'])}); a read-side vector's score is its dot product with "
        f"token t's embedding (basis {html.escape(prov['read_basis'])}). Rows are sorted by their best score.</p>"
    )
    cs = manifest["copying_scores"]
    ranked = sorted(((s, l, h) for l, row in zip(cs["layers"], cs["scores"]) for h, s in enumerate(row)), reverse=True)
    parts.append(f"<h2>OV heads ranked by copying score</h2><p>{html.escape(cs['definition'])} ({cs['n_tokens']} tokens sampled).</p>")
    parts.append("<table><tr><th>head</th><th>copying score</th></tr>" + "".join(
        f"<tr><td>L{l}.H{h}</td><td>{s:.3f}</td></tr>" for s, l, h in ranked[:20]) + "</table>")
    for layer in opts["layers"]:
        with np.load(folder / f"L{layer:02d}.npz") as z:
            arrays = {n: z[n] for n in z.files}
        meta = json.loads((folder / f"L{layer:02d}.json").read_text())
        parts.append(f"<h2>Layer {layer}</h2>")
        for name in meta["vectors"]:
            parts.append(f"<details><summary>{html.escape(name)} ({len(meta['vectors'][name]['labels'])} vectors, "
                         f"{meta['vectors'][name]['side']} side)</summary>"
                         + _vector_rows(arrays, meta, vocab, name, rows_per_table) + "</details>")
        parts.append("<h3>Token pairs</h3>" + "".join(_pair_table(p) for p in meta["pairs"]))
    parts.append("</body></html>")
    return "\n".join(parts)
