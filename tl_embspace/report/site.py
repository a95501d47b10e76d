"""The HTML atlas: a folder of static files that works from ``file://`` (no server, no CDN).

Pure function of an atlas, read through ``tl_embspace.atlas.Atlas`` (no model code)::

    index.html        provenance header, navigation (layer, head, parameter kind), search box,
                      and the whole-model sections (``SECTIONS``)
    html/style.css    the stylesheet          html/app.js     the viewer (plain JavaScript)
    html/vocab.js     display string of every token id
    html/LNN.js       one layer's data, loaded when that layer is opened
    html/search.js    every vector's top tokens, loaded on the first search

Data files are scripts (``tlAtlas.layer({...})``), not JSON, because browsers refuse ``fetch``
of local files but load local scripts. The first page stays small whatever the model size.

Sections: a whole-model section is one function ``(atlas, attached) -> HTML string | None``
registered with :func:`section` (None leaves it out, e.g. when there are no such results);
``attached`` (:class:`~tl_embspace.report.attached.Attached`) holds results kept outside the
atlas (comparison, alignment). The renderers take the list of sections to draw (default
:data:`SECTIONS`: the overview and copying heads here, hygiene, comparison and alignment in
``report.sections``)::

    @section("my_results", "My results")
    def _mine(atlas, attached):
        return None if no_results else "<table>...</table>"   # escape every string you insert
"""

import html
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import Atlas, replace_derived, schema
from .attached import Attached

#: Tokens per vector shown in the browser (the atlas and the search index keep all ``k``).
HTML_K = 10
#: Tokens per vector in the browser's search data (one search scans them all).
SEARCH_K = 5


@dataclass(frozen=True)
class Section:
    """One whole-model section of the first page.

    Attributes:
        id: Anchor id (``#sec-<id>``) and registry key.
        title: Heading, and the navigation entry.
        render: ``(atlas, attached) -> HTML | None``; None omits the section. Must escape what
            it inserts.
    """

    id: str
    title: str
    render: "Renderer"


Renderer = Callable[[Atlas, Attached], "str | None"]

#: The sections of the first page, in order. Add one with :func:`section`.
SECTIONS: list[Section] = []


def section(id: str, title: str) -> Callable[[Renderer], Renderer]:
    """Decorator: register ``render`` as a section of the first page (replacing one of that id)."""

    def register(render: Renderer) -> Renderer:
        SECTIONS[:] = [s for s in SECTIONS if s.id != id]
        SECTIONS.append(Section(id, title, render))
        return render

    return register


def esc(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return html.escape(str(value), quote=True)


def token_span(text: str, neg: bool = False) -> str:
    """One token as an escaped, whitespace-preserving span (display strings show spaces as ␣)."""
    return f'<span class="tok{" neg" if neg else ""}">{esc(text)}</span>'


def _script_data(call: str, data: Any) -> str:
    # ensure_ascii: the file is plain ASCII whatever the tokens; "<" escaped so no token can
    # close a script element even if this text is ever inlined.
    payload = json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")
    return f"tlAtlas.{call}({payload});\n"


def _rounded(a: np.ndarray) -> list[Any]:
    # Three significant digits are what the page shows; fewer digits, smaller files.
    return np.vectorize(lambda x: float(f"{x:.3g}"), otypes=[float])(a).tolist()


# --- whole-model sections --------------------------------------------------------------------


@section("overview", "Overview")
def _overview(atlas: Atlas, attached: Attached) -> str:
    spec, options = atlas.spec, atlas.options
    facts = {
        "layers": f"{len(atlas.layers)} of {spec.get('n_layers')} "
        f"({', '.join(map(str, atlas.layers))})",
        "heads": f"{spec.get('n_heads')} per layer ({spec.get('n_kv_heads')} key/value)",
        "d_model / d_mlp / d_vocab": f"{spec.get('d_model')} / {spec.get('d_mlp')} / "
        f"{spec.get('d_vocab')}",
        "tokens kept per vector": f"{options.get('k')} top and bottom ({HTML_K} shown here)",
        "token pairs kept per head": options.get("pair_k"),
        "SVD directions per circuit": options.get("svd_components"),
        "token filter": options.get("token_filter") or "none",
    }
    choice = options.get("vocab")  # absent from atlases written before vocabulary hygiene
    if choice:
        chosen = choice.get("filter")
        described = "every token" if not chosen else chosen.get("label") or f"{chosen}"
        facts["vocabulary"] = (
            f"{choice['mode']} ({described}; normalisation: "
            f"{choice.get('normalisation') or 'none'}); --vocab raw gives every token, raw scores"
        )
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts.items())
    return (
        f"<table>{rows}</table><p class='note'>Scores: a write-side vector's score for token t "
        f"is the logit it adds to t (basis <code>{esc(atlas.provenance.get('write_basis'))}"
        "</code>); a read-side vector's score is its dot product with t's embedding (basis "
        f"<code>{esc(atlas.provenance.get('read_basis'))}</code>). Open a layer on the left; "
        "search a token (e.g. <code>␣Paris</code> or just <code>Paris</code>) or a parameter "
        "label (e.g. <code>L3.ff_value[17]</code>).</p>"
    )


@section("copying", "Copying heads")
def _copying(atlas: Atlas, attached: Attached) -> str | None:
    cs = atlas.copying_scores
    if cs.scores.size == 0:
        return None
    ranked = sorted(
        (
            (float(s), layer, h)
            for layer, row in zip(cs.layers, cs.scores, strict=True)
            for h, s in enumerate(row)
        ),
        reverse=True,
    )
    rows = "".join(
        f"<tr><td><a href='#layer={ly}&amp;head={h}&amp;kind=ov_pairs'>L{ly}.H{h}</a></td>"
        f"<td class='num'>{s:.3f}</td></tr>"
        for s, ly, h in ranked[:15]
    )
    return (
        f"<p class='note'>{esc(cs.definition)} ({cs.n_tokens} tokens sampled; chance is "
        f"about 1/d_vocab).</p><div class='plots'><div>{copying_heatmap(cs.layers, cs.scores)}"
        "</div><div><table><tr><th>head</th><th>copying score</th></tr>"
        f"{rows}</table></div></div>"
    )


def copying_heatmap(layers: tuple[int, ...], scores: np.ndarray, cell: int = 14) -> str:
    """Inline SVG: one cell per (layer, head), darker for a higher copying score."""
    n_layers, n_heads = scores.shape
    left, top = 34, 16
    w, h = left + n_heads * cell + 4, top + n_layers * cell + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'viewBox="0 0 {w} {h}"><title>copying score per layer (rows) and head (columns)</title>'
    ]
    for hd in range(n_heads):
        parts.append(f'<text x="{left + hd * cell + 3}" y="11">{hd}</text>')
    for r, (layer, row) in enumerate(zip(layers, scores, strict=True)):
        y = top + r * cell
        parts.append(f'<text x="2" y="{y + 10}">L{layer}</text>')
        for hd, s in enumerate(row):
            shade = int(round(235 - 200 * min(max(float(s), 0.0), 1.0)))
            parts.append(
                f'<a href="#layer={layer}&amp;head={hd}&amp;kind=ov_pairs">'
                f'<rect x="{left + hd * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="rgb({shade},{shade},255)">'
                f"<title>L{layer}.H{hd}: {float(s):.3f}</title></rect></a>"
            )
    parts.append("</svg>")
    return "".join(parts)


# --- files -----------------------------------------------------------------------------------


def _layer_data(atlas: Atlas, layer: int) -> dict[str, Any]:
    record = atlas.layer(layer)
    vectors = []
    for name, t in record.vectors.items():
        sv = t.extras.get("singular_value")
        vectors.append(
            {
                "name": name,
                "side": t.side,
                "basis": t.basis,
                "note": t.note,
                "labels": list(t.labels),
                "top": t.top_ids[:, :HTML_K].tolist(),
                "topS": _rounded(t.top_scores[:, :HTML_K]),
                "bottom": t.bottom_ids[:, :HTML_K].tolist(),
                "bottomS": _rounded(t.bottom_scores[:, :HTML_K]),
                "sv": None if sv is None else _rounded(np.asarray(sv, dtype=np.float64)),
            }
        )
    pairs = [
        {
            "label": p.label,
            "interpreter": p.interpreter,
            "head": p.head,
            "left": p.left_basis,
            "right": p.right_basis,
            "note": p.note,
            "top": [[x.i, x.j, float(f"{x.score:.3g}")] for x in p.top],
            "bottom": [[x.i, x.j, float(f"{x.score:.3g}")] for x in p.bottom],
        }
        for p in record.pairs
    ]
    return {"layer": layer, "vectors": vectors, "pairs": pairs}


def _search_data(atlas: Atlas) -> dict[str, Any]:
    labels: list[str] = []
    layer_of: list[int] = []
    row_of: list[int] = []
    kind_of: list[int] = []
    kinds: list[str] = []
    sides: list[str] = []
    top: list[np.ndarray] = []
    top_s: list[np.ndarray] = []
    k = min(SEARCH_K, int(atlas.options.get("k") or SEARCH_K))
    for layer in atlas.layers:
        for name, t in atlas.layer(layer).vectors.items():
            if name not in kinds:
                kinds.append(name)
                sides.append(t.side)
            labels.extend(t.labels)
            layer_of.extend([layer] * len(t))
            row_of.extend(range(len(t)))
            kind_of.extend([kinds.index(name)] * len(t))
            top.append(t.top_ids[:, :k].ravel())
            top_s.append(t.top_scores[:, :k].ravel())
    return {
        "k": k,
        "labels": labels,
        "layer": layer_of,
        "row": row_of,
        "kind": kind_of,
        "kinds": kinds,
        "side": sides,
        "top": np.concatenate(top).tolist() if top else [],
        "topS": _rounded(np.concatenate(top_s)) if top_s else [],
    }


def asset_files(atlas: Atlas) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of every file of the ``html/`` folder, one at a time (layers are big)."""
    static = resources.files("tl_embspace.report") / "static"
    yield "style.css", (static / "style.css").read_text(encoding="utf-8")
    yield "app.js", (static / "app.js").read_text(encoding="utf-8")
    yield "vocab.js", _script_data("vocab", list(atlas.vocab))
    yield "search.js", _script_data("search", _search_data(atlas))
    for layer in atlas.layers:
        yield _layer_script(layer), _script_data("layer", _layer_data(atlas, layer))


def _layer_script(layer: int) -> str:
    return re.sub(r"\.json$", ".js", schema.layer_meta_file(layer))


def render_index(
    atlas: Atlas, attached: Attached | None = None, sections: "Sequence[Section] | None" = None
) -> str:
    """The first page: header, navigation, search box and the sections.

    Args:
        atlas: The atlas.
        attached: Results kept outside the atlas that sections show (default: none).
        sections: The sections, in order (default :data:`SECTIONS`).
    """
    attached = attached if attached is not None else Attached()
    prov, spec = atlas.provenance, atlas.spec
    title = f"{prov.get('model_name')} in embedding space"
    facts = [
        ("model", prov.get("model_name")),
        ("weights", prov.get("weights")),
        ("read basis", prov.get("read_basis")),
        ("write basis", prov.get("write_basis")),
        ("tl_embspace", prov.get("tl_embspace_version")),
        ("TransformerLens", prov.get("transformer_lens_version")),
        ("format", atlas.format),
        ("unembedding", (atlas.unembedding_hash or "not recorded")[:23]),
    ]
    header = "".join(f"<span>{esc(k)}: <code>{esc(v)}</code></span>" for k, v in facts)
    rendered = [
        (s, s.render(atlas, attached)) for s in (SECTIONS if sections is None else sections)
    ]
    rendered = [(s, body) for s, body in rendered if body is not None]
    nav_sections = "".join(
        f"<li><a href='#sec-{esc(s.id)}'>{esc(s.title)}</a></li>" for s, _ in rendered
    )
    bodies = "".join(
        f"<section id='sec-{esc(s.id)}'><h2>{esc(s.title)}</h2>{body}</section>"
        for s, body in rendered
    )
    layer_links = "".join(
        f"<a href='#layer={layer}' data-layer='{layer}'>{layer}</a>" for layer in atlas.layers
    )
    kinds = _kinds(atlas)
    kind_options = "<option value=''>all kinds</option>" + "".join(
        f"<option value='{esc(k)}'>{esc(k)}</option>" for k in kinds
    )
    head_options = "<option value=''>all heads</option>" + "".join(
        f"<option value='{h}'>head {h}</option>" for h in range(int(spec.get("n_heads") or 0))
    )
    meta = {
        "assets": schema.REPORT_ASSETS,
        "layers": list(atlas.layers),
        "layerFiles": {str(layer): _layer_script(layer) for layer in atlas.layers},
    }
    meta_json = json.dumps(meta, ensure_ascii=True).replace("<", "\\u003c")
    a = schema.REPORT_ASSETS
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><link rel='stylesheet' href='{a}/style.css'>"
        f"<script type='application/json' id='atlas-meta'>{meta_json}</script>"
        f"<script src='{a}/app.js'></script></head><body>"
        f"<header><h1>{esc(title)}</h1><div class='prov'>{header}</div></header>"
        "<div id='wrap'><nav>"
        "<form id='search'><input id='q' type='search' placeholder='token or label, e.g. ␣Paris'"
        " aria-label='search'><button type='submit'>search</button></form>"
        f"<h2>Sections</h2><ul><li><a href='#'>first page</a></li>{nav_sections}</ul>"
        f"<h2>Layers</h2><div class='layers'>{layer_links}</div>"
        f"<h2>Filter</h2><select id='kind' aria-label='kind'>{kind_options}</select>"
        f"<select id='head' aria-label='head'>{head_options}</select>"
        "</nav><main><p id='status'></p><div id='view'></div>"
        f"<div id='sections'>{bodies}</div>"
        "<noscript><p>The layer views and the search need JavaScript; the files under "
        f"{a}/ hold the data.</p></noscript></main></div></body></html>\n"
    )


def _kinds(atlas: Atlas) -> list[str]:
    """Vector and pair interpreter names, from the first layer (every layer has the same)."""
    if not atlas.layers:
        return []
    record = atlas.layer(atlas.layers[0])
    pair_kinds = list(dict.fromkeys(p.interpreter for p in record.pairs))
    return [*record.vectors, *pair_kinds]


def _write_assets(atlas: Atlas, folder: Path) -> None:
    folder.mkdir()
    for name, text in asset_files(atlas):
        (folder / name).write_text(text, encoding="utf-8")


def write_site(
    atlas: "Atlas | str | os.PathLike[str]",
    folder: "Path | None" = None,
    *,
    attached: Attached | None = None,
    sections: "Sequence[Section] | None" = None,
) -> Path:
    """Write the HTML atlas (``index.html`` and ``html/``) of ``atlas`` into ``folder``.

    The writer's report hook: called on the atlas being written, inside its temporary folder.

    Args:
        atlas: An ``Atlas`` or an atlas folder.
        folder: Where to write (default: the atlas folder). ``html/`` must not exist there yet;
            use :func:`rerender` to replace the HTML of an existing atlas.
        attached: Results kept outside the atlas that sections show (see ``Attached.load``).
        sections: The sections, in order (default :data:`SECTIONS`).

    Returns:
        The path of ``index.html``.
    """
    if not isinstance(atlas, Atlas):
        atlas = Atlas.open(atlas)
    folder = Path(folder) if folder is not None else atlas.folder
    _write_assets(atlas, folder / schema.REPORT_ASSETS)
    index = folder / schema.REPORT
    index.write_text(render_index(atlas, attached, sections), encoding="utf-8")
    return index


def rerender(
    atlas: "Atlas | str | os.PathLike[str]",
    *,
    attached: Attached | None = None,
    sections: "Sequence[Section] | None" = None,
) -> Path:
    """Re-render the HTML atlas of an existing atlas folder, replacing only its HTML files.

    Each of ``html/`` and ``index.html`` is written beside its target and swapped into place, so
    an interrupted re-render leaves the old page (or a complete new one). Results attached
    before are not remembered: pass ``attached`` again to keep their sections.

    Args:
        atlas: An ``Atlas`` or an atlas folder.
        attached: Results kept outside the atlas that sections show (see ``Attached.load``).
        sections: The sections, in order (default :data:`SECTIONS`).

    Returns:
        The path of ``index.html``.
    """
    if not isinstance(atlas, Atlas):
        atlas = Atlas.open(atlas)
    opened = atlas
    replace_derived(opened, schema.REPORT_ASSETS, lambda tmp: _write_assets(opened, tmp))
    page = render_index(opened, attached, sections)

    def write_page(tmp: Path) -> None:
        tmp.write_text(page, encoding="utf-8")

    return replace_derived(opened, schema.REPORT, write_page)
