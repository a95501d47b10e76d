"""The atlas's first-page sections for hygiene, comparison and alignment results.

The comparison and alignment results are the files ``tl-embspace compare`` and ``tl-embspace
align`` wrote (run in-process on the tiny Llama); the sections must show their numbers, leave
themselves out when there is nothing to show, and escape every string the files bring.
"""

import json
import re
from html.parser import HTMLParser

import pytest

from tl_embspace import cli
from tl_embspace.atlas import Atlas
from tl_embspace.errors import InvalidArgumentError
from tl_embspace.job import interpret_model
from tl_embspace.report import Attached, site

from . import tinymodels as tm
from .attached_results import make_hostile, write_results

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sections")
    atlas_dir = interpret_model(
        tm.load("llama-gqa-untied", "bridge"),
        root / "atlas",
        k=4,
        pair_k=3,
        svd_components=2,
        copying_tokens=16,
        progress=False,
        search_index=False,
    )
    compare_dir, align_dir = write_results(root / "results")
    return atlas_dir, compare_dir, align_dir


class _Page(HTMLParser):
    """Script elements, section ids, and the text of each section."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "section":
            self._section = dict(attrs).get("id")
            self.sections[self._section or ""] = ""

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._section:
            self.sections[self._section] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_sections_show_the_comparison_and_alignment_files(folders):
    atlas_dir, compare_dir, align_dir = folders
    atlas = Atlas.open(atlas_dir)
    attached = Attached.load(compare=compare_dir, align=align_dir)
    page = site.render_index(atlas, attached)
    parsed = _parse(page)
    assert list(parsed.sections) == [
        "sec-overview",
        "sec-copying",
        "sec-hygiene",
        "sec-comparison",
        "sec-alignment",
    ]
    # Every per-layer figure of agreement.json is in the comparison table.
    agreement = json.loads((compare_dir / "agreement.json").read_text())
    text = parsed.sections["sec-comparison"]
    for row in agreement["rows"]:
        assert f"{row['aligned']:.3f} / {row['baseline']:.3f} ({row['difference']:+.3f}" in text
    assert text.count("aligned") >= 2  # one chart per kind, each with its legend
    corpus = agreement["provenance"]["corpus"]
    assert f"path {corpus['path']}" in text and "{" not in text  # a record, shown as text
    comparison = page[page.index("id='sec-comparison'") : page.index("id='sec-alignment'")]
    assert comparison.count("<svg") == len({r["kind"] for r in agreement["rows"]})
    # The alignment: both spaces, one heat-map cell per layer pair, the matches outlined.
    text = parsed.sections["sec-alignment"]
    assert "embedding space" in text and "raw space" in text
    for space in ("embedding", "raw"):
        data = json.loads((align_dir / f"{space}.json").read_text())
        n_a, n_b = len(data["similarity"]["combined"]), len(data["similarity"]["combined"][0])
        assert data["score"]["layers"]["combined"]["fraction_matched"] == 1.0
        svg = page[page.index(f"<title>{space} space layer similarity") :]
        svg = svg[: svg.index("</svg>")]
        assert svg.count("<rect") == n_a * n_b
        assert svg.count('stroke="red"') == n_a  # a shuffled copy: every layer matched
        value = data["similarity"]["combined"][1][0]
        assert f"<title>A L1, B L0: {value:.3g}</title>" in svg
    assert "heads matched as expected1.0" in text
    # Hygiene: what the job's vocabulary record says.
    text = parsed.sections["sec-hygiene"]
    choice = atlas.options["vocab"]
    assert choice["mode"] == "hygiene" and choice["filter"]["label"] in text
    assert f"{choice['filter']['allowed']:,} of {atlas.spec['d_vocab']:,}" in text
    # Sections are links: a layer the atlas holds opens its view.
    assert "<a href='#layer=1'>1</a>" in comparison


def test_sections_without_results_are_left_out_and_the_list_is_the_callers(folders):
    atlas_dir, _, _ = folders
    atlas = Atlas.open(atlas_dir)
    ids = list(_parse(site.render_index(atlas)).sections)
    assert ids == ["sec-overview", "sec-copying", "sec-hygiene"]
    raw = dict(atlas.manifest, options={**atlas.options, "vocab": {"mode": "raw", "filter": None}})
    ids = list(_parse(site.render_index(Atlas(atlas_dir, raw))).sections)
    assert ids == ["sec-overview", "sec-copying"]  # a raw atlas ranks every token
    only = [s for s in site.SECTIONS if s.id == "copying"]
    page = site.render_index(atlas, sections=only)
    assert list(_parse(page).sections) == ["sec-copying"]
    assert "href='#sec-copying'" in page and "#sec-overview" not in page


def test_strings_from_the_files_are_escaped(folders, tmp_path):
    atlas_dir, compare_dir, align_dir = folders
    copies = []
    for src in (atlas_dir, compare_dir, align_dir):
        dst = tmp_path / src.name
        dst.mkdir()
        for f in src.iterdir():
            if f.is_file():
                (dst / f.name).write_bytes(f.read_bytes())
        copies.append(dst)
    atlas_copy, compare_copy, align_copy = copies
    make_hostile(compare_copy, align_copy, atlas_copy, HOSTILE)
    page = site.render_index(
        Atlas.open(atlas_copy), Attached.load(compare=compare_copy, align=align_copy)
    )
    parsed = _parse(page)
    # The page's own scripts only (the metadata and app.js): no file string became markup.
    assert [s.get("type") or s.get("src") for s in parsed.scripts] == [
        "application/json",
        "html/app.js",
    ]
    for sec in ("sec-comparison", "sec-alignment", "sec-hygiene"):
        assert HOSTILE in parsed.sections[sec], sec  # shown as text
    assert "&amp;amp;" in page  # a literal "&amp;" excluded token shows as itself
    assert not re.search(r"<script>alert", page)


def test_attached_refuses_folders_without_results(tmp_path):
    (tmp_path / "agreement.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="cannot read .*agreement.json"):
        Attached.load(compare=tmp_path)
    (tmp_path / "agreement.json").write_text('{"rows": []}')
    with pytest.raises(InvalidArgumentError, match=r"lacks \['provenance'\]"):
        Attached.load(compare=tmp_path)
    with pytest.raises(InvalidArgumentError, match="neither embedding.json nor raw.json"):
        Attached.load(align=tmp_path)


def test_atlas_command_attaches_the_results(folders, tmp_path, capsys):
    atlas_dir, compare_dir, align_dir = folders
    code = cli.main(
        ["atlas", str(atlas_dir), "--compare", str(compare_dir), "--align", str(align_dir)]
    )
    assert code == 0
    page = (atlas_dir / "index.html").read_text(encoding="utf-8")
    assert "id='sec-comparison'" in page and "id='sec-alignment'" in page
    capsys.readouterr()
    # A folder without results: one error line, the page left as it was.
    code = cli.main(["atlas", str(atlas_dir), "--align", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "neither embedding.json nor raw.json" in err
    assert (atlas_dir / "index.html").read_text(encoding="utf-8") == page
    # Without the options the page is re-rendered without those sections.
    assert cli.main(["atlas", str(atlas_dir)]) == 0
    page = (atlas_dir / "index.html").read_text(encoding="utf-8")
    assert "sec-comparison" not in page and "sec-alignment" not in page
