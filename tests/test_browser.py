"""The HTML atlas in a real browser: headless Chromium opens it from ``file://``.

A probe page (the atlas's ``index.html`` plus one script) clicks a layer link, picks a head in
the filter, submits the search form with a hostile token, and writes what the page then shows
into the DOM, which Chromium dumps. Hostile tokens (``<script>``, ``&amp;``, invisible
whitespace) are put into the atlas's vocabulary, so the test also proves they render as text.
Chromium comes from Debian (``scripts/setup.sh`` installs it in CI); without it the test is
skipped locally and fails in CI.
"""

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tl_embspace.atlas import Atlas, SearchIndex, build_index
from tl_embspace.job import interpret_model
from tl_embspace.report import Attached, rerender, site

from . import tinymodels as tm
from .attached_results import make_hostile, write_results

HOSTILE = {4: "<script>alert(1)</script>", 5: "&amp;", 6: "a\u200bb␣"}
SCREENSHOTS = (
    Path(os.environ.get("TL_EMBSPACE_SCREENSHOTS", ""))
    if os.environ.get("TL_EMBSPACE_SCREENSHOTS")
    else None
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes", "on"}:
        pytest.fail(message + "; CI must run the browser test", pytrace=False)
    pytest.skip(message)


def _browser(args: list[str]) -> str:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--virtual-time-budget=15000",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    out = interpret_model(
        tm.load("llama-gqa-untied", "bridge"),
        tmp_path_factory.mktemp("browser") / "run",
        k=4,
        pair_k=3,
        svd_components=2,
        copying_tokens=16,
        progress=False,
    )
    # Hostile display strings in place of three tokens, and in the comparison, alignment and
    # hygiene records the first page's sections show; then the page is rendered again.
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    for i, text in HOSTILE.items():
        vocab[i] = text
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    compare_dir, align_dir = write_results(out.parent / "results")
    make_hostile(compare_dir, align_dir, out, HOSTILE[4])
    rerender(out, attached=Attached.load(compare=compare_dir, align=align_dir))
    build_index(out)
    return out


PROBE = """
<script>
(async () => {
  // Resolves when the page has drawn the view for ``hash`` (or after 10 s, noting it).
  const waited = [];
  const wait = (hash) => new Promise((resolve) => {
    let n = 0;
    const t = setInterval(() => {
      n += 1;
      if (document.body.dataset.ready === hash || n > 500) {
        clearInterval(t);
        if (n > 500) waited.push(hash + " (got " + document.body.dataset.ready + ")");
        resolve();
      }
    }, 20);
  });
  const out = {};
  const grab = () => ({
    h2: document.querySelector("#view h2") ? document.querySelector("#view h2").textContent : null,
    tables: [...document.querySelectorAll("#view section[id]")].map((s) => s.id),
    labels: [...document.querySelectorAll("#view td:first-child a, #view li a")].map(
      (a) => a.textContent),
    toks: [...document.querySelectorAll("#view .tok")].map((s) => s.textContent),
    sectionsHidden: document.getElementById("sections").hidden,
    svgs: document.querySelectorAll("#view svg").length,
    status: document.getElementById("status").textContent,
  });
  await wait("");
  out.first = grab();
  out.sections = [...document.querySelectorAll("#sections > section")].map((s) => ({
    id: s.id,
    svgs: s.querySelectorAll("svg").length,
    text: s.textContent,
    visible: s.getBoundingClientRect().height > 0,
  }));
  out.navSections = [...document.querySelectorAll("nav ul a")].map((a) => a.textContent);
  document.querySelector('nav .layers a[data-layer="1"]').click();
  await wait("#layer=1");
  out.layer = grab();
  const head = document.getElementById("head");
  head.value = "2";
  head.dispatchEvent(new Event("change"));
  await wait("#layer=1&head=2");
  out.head = grab();
  document.getElementById("q").value = QUERY;
  document.getElementById("search").dispatchEvent(new Event("submit", {cancelable: true}));
  await wait("#search=" + encodeURIComponent(QUERY));
  out.search = grab();
  document.getElementById("q").value = "L0.ff_value[";
  document.getElementById("search").dispatchEvent(new Event("submit", {cancelable: true}));
  await wait("#search=" + encodeURIComponent("L0.ff_value["));
  out.labelSearch = grab();
  location.hash = "layer=7";
  await wait("#layer=7");
  out.missing = grab();
  out.timeouts = waited;
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


class _Probe(HTMLParser):
    """Collects the probe's JSON and every script element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self._in_probe = False
        self.probe = ""

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))
        self._in_probe = tag == "pre" and ("id", "probe") in attrs

    def handle_data(self, data):
        if self._in_probe:
            self.probe += data


def _run_probe(folder: Path, query: str) -> tuple[dict, list[dict]]:
    page = (folder / "index.html").read_text(encoding="utf-8")
    # "<" escaped: the query itself must not close the probe's script element.
    probe = PROBE.replace("QUERY", json.dumps(query).replace("<", "\\u003c"))
    (folder / "probe.html").write_text(page.replace("</body>", probe + "</body>"), "utf-8")
    try:
        dom = _browser(["--dump-dom", (folder / "probe.html").as_uri()])
    finally:
        (folder / "probe.html").unlink()
    parser = _Probe()
    parser.feed(dom)
    assert parser.probe, "the probe did not finish: " + dom[-1500:]
    return json.loads(parser.probe), parser.scripts


def test_navigation_search_and_hostile_tokens_in_chromium(atlas_dir):
    hostile = HOSTILE[4]
    result, scripts = _run_probe(atlas_dir, hostile)
    atlas = Atlas.open(atlas_dir)
    # First page: the whole-model sections, no layer view.
    assert result["first"]["sectionsHidden"] is False and result["first"]["h2"] is None
    # The whole-model sections: hygiene, comparison and alignment drawn, file strings as text.
    sections = {s["id"]: s for s in result["sections"]}
    assert list(sections) == [
        "sec-overview",
        "sec-copying",
        "sec-hygiene",
        "sec-comparison",
        "sec-alignment",
    ]
    assert all(s["visible"] for s in sections.values())
    assert result["navSections"][-3:] == [
        "Vocabulary hygiene",
        "Parameters vs activations",
        "Alignment with another model",
    ]
    assert sections["sec-comparison"]["svgs"] == 2  # a chart per kind (ff_value, o)
    assert sections["sec-alignment"]["svgs"] == 2  # embedding and raw space
    for name in ("sec-hygiene", "sec-comparison", "sec-alignment"):
        assert hostile in sections[name]["text"], name
    # Clicking layer 1 loads its data file and shows its tables, in the atlas's order.
    record = atlas.layer(1)
    layer = result["layer"]
    assert layer["h2"] == "Layer 1" and layer["status"] == "" and layer["sectionsHidden"]
    assert layer["tables"] == [f"t-{n}" for n in record.vectors] + [
        f"p-{p.label}" for p in record.pairs
    ]
    assert layer["labels"][:3] == list(record.vectors["ff_key"].labels[:3])
    ff_key = record.vectors["ff_key"]
    row0 = [*ff_key.top_ids[0], *ff_key.bottom_ids[0]]  # k=4 <= HTML_K: all shown
    assert layer["toks"][: len(row0)] == [atlas.vocab[i] for i in row0]
    assert layer["svgs"] > 0  # the spectra
    # The head filter keeps head 2's rows and pairs only.
    head = result["head"]
    assert head["h2"] == "Layer 1, head 2"
    assert head["labels"] and all(".H2." in x or ".KV" in x for x in head["labels"])
    assert [t for t in head["tables"] if t.startswith("p-")] == ["p-L1.H2.qk", "p-L1.H2.ov"]
    # The search for the hostile token finds it, as text, with the parameters the index finds.
    search = result["search"]
    assert search["toks"][:2] == [hostile, hostile]  # the heading, then the exact match
    assert hostile in atlas.vocab
    with SearchIndex.open(atlas_dir) as index:
        expected = {h.label for h in index.promoting(hostile, limit=None) if h.rank < site.SEARCH_K}
    assert set(search["labels"]) == expected
    # A label prefix lists the parameters so named.
    assert result["labelSearch"]["labels"][:2] == ["L0.ff_value[0]", "L0.ff_value[1]"]
    # A layer the atlas lacks is a message, not a blank page.
    assert result["missing"]["status"] == "this atlas has no layer 7"
    assert result["timeouts"] == []
    # No token became markup: the only scripts are the atlas's own (and the probe).
    assert all(
        s.get("src", "").startswith("html/") or s.get("type") or s.get("src") is None
        for s in scripts
    )
    assert sum(1 for s in scripts if s.get("src") is None and not s.get("type")) == 1  # probe


def test_screenshot(atlas_dir, tmp_path):
    folder = SCREENSHOTS or tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for name, hash_ in (("first", ""), ("layer", "#layer=1&head=2"), ("search", "#search=w5")):
        png = folder / f"atlas-{name}.png"
        _browser(
            [
                "--window-size=1280,900",
                f"--screenshot={png}",
                atlas_dir.as_uri() + "/index.html" + hash_,
            ]
        )
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
