// tl_embspace HTML atlas: navigation, per-layer views loaded on demand, client-side search.
// Works from file:// (data comes as <script> files, which browsers load from disk; fetch() of
// local JSON does not). Every token reaches the page through textContent, never innerHTML, so a
// token such as "<script>" or "&amp;" shows as the text it is.
"use strict";

const tlAtlas = (() => {
  const meta = JSON.parse(document.getElementById("atlas-meta").textContent);
  const store = { vocab: null, layers: {}, search: null };
  const loading = {};
  const PAGE = 50;

  // --- loading data files ------------------------------------------------------------------
  function load(src, ready) {
    if (ready()) return Promise.resolve();
    if (!loading[src]) {
      loading[src] = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = src;
        s.onload = () => (ready() ? resolve() : reject(new Error(src + " did not register")));
        s.onerror = () => reject(new Error("cannot load " + src));
        document.head.appendChild(s);
      });
    }
    return loading[src];
  }
  const needVocab = () => load(meta.assets + "/vocab.js", () => store.vocab !== null);
  const needLayer = (l) =>
    load(meta.assets + "/" + meta.layerFiles[l], () => store.layers[l] !== undefined);
  const needSearch = () => load(meta.assets + "/search.js", () => store.search !== null);

  // --- DOM helpers (text only) ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  const fmt = (x) => (Math.abs(x) >= 1000 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(2) : x.toPrecision(3));
  function tok(id, score, neg, hit) {
    const text = store.vocab[id];
    const title = "token id " + id + (score === undefined ? "" : ", score " + fmt(score));
    return el("span", { class: "tok" + (neg ? " neg" : "") + (hit ? " hit" : ""), title: title }, text);
  }
  function link(hash, text) {
    return el("a", { href: "#" + hash }, text);
  }
  const headOf = (label) => {
    const m = /^L\d+\.(?:H|KV)(\d+)\./.exec(label);
    return m ? Number(m[1]) : null;
  };
  // The atlas shows whitespace as symbols (vocab.json is already in that form).
  const visible = (s) =>
    s.length === 0 ? "\u2205" : s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d");

  // --- views -------------------------------------------------------------------------------
  const view = () => document.getElementById("view");
  const sections = () => document.getElementById("sections");
  function setStatus(text) {
    document.getElementById("status").textContent = text;
  }

  function parseHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const get = (k) => (params.has(k) ? params.get(k) : null);
    return { layer: get("layer"), kind: get("kind"), head: get("head"), row: get("row"), search: get("search") };
  }

  async function route() {
    const h = parseHash();
    for (const a of document.querySelectorAll("nav .layers a")) {
      a.classList.toggle("current", a.dataset.layer === h.layer);
    }
    document.getElementById("kind").value = h.kind || "";
    document.getElementById("head").value = h.head || "";
    view().replaceChildren();
    try {
      if (h.search !== null) {
        document.getElementById("q").value = h.search;
        sections().hidden = true;
        await showSearch(h.search);
      } else if (h.layer !== null) {
        sections().hidden = true;
        await showLayer(Number(h.layer), h.kind, h.head === null ? null : Number(h.head), h.row === null ? null : Number(h.row));
      } else {
        sections().hidden = false;
      }
      setStatus("");
    } catch (e) {
      setStatus(String(e.message || e));
    }
    document.body.dataset.ready = location.hash;  // for tests: the view for this hash is drawn
  }

  async function showLayer(layer, kind, head, row) {
    if (!(layer in meta.layerFiles)) throw new Error("this atlas has no layer " + layer);
    setStatus("loading layer " + layer + "…");
    await Promise.all([needVocab(), needLayer(layer)]);
    const data = store.layers[layer];
    const out = view();
    out.appendChild(el("h2", {}, "Layer " + layer + (head !== null ? ", head " + head : "") + (kind ? ", " + kind : "")));
    const vectors = data.vectors.filter((t) => !kind || t.name === kind);
    const pairs = data.pairs.filter((p) => (!kind || p.interpreter === kind) && (head === null || p.head === head));
    if (!vectors.length && !pairs.length) out.appendChild(el("p", {}, "Nothing of kind " + kind + " in this layer."));
    const spectra = vectors.filter((t) => t.sv);
    if (spectra.length && row === null) out.appendChild(spectraSection(spectra, head));
    for (const t of vectors) {
      const rows = [];
      t.labels.forEach((label, r) => {
        if ((head === null || headOf(label) === head) && (row === null || r === row)) rows.push(r);
      });
      if (rows.length) out.appendChild(vectorTable(layer, t, rows, row !== null));
    }
    if (row === null) for (const p of pairs) out.appendChild(pairTable(p));
  }

  function vectorTable(layer, t, rows, single) {
    const box = el("section", { id: "t-" + t.name });
    box.appendChild(el("h3", {}, t.name + " ", el("span", { class: "muted" }, "(" + t.labels.length + " vectors, " + t.side + " side, basis " + t.basis + ")")));
    if (t.note) box.appendChild(el("p", { class: "note" }, t.note));
    const what = t.side === "write" ? ["promotes (top)", "suppresses (bottom)"] : ["responds to most (top)", "least (bottom)"];
    const table = el("table", {}, el("tr", {}, el("th", {}, "vector"), el("th", {}, "best"), t.sv ? el("th", {}, "σ") : null, el("th", {}, what[0]), el("th", {}, what[1])));
    box.appendChild(table);
    let shown = 0;
    const more = el("button", {}, "");
    function page() {
      for (const r of rows.slice(shown, shown + PAGE)) {
        const tr = el(
          "tr",
          { class: single ? "current" : "" },
          el("td", {}, link("layer=" + layer + "&kind=" + t.name + "&row=" + r, t.labels[r])),
          el("td", { class: "num" }, fmt(t.topS[r][0])),
          t.sv ? el("td", { class: "num" }, fmt(t.sv[r])) : null,
          el("td", {}, ...t.top[r].map((id, i) => tok(id, t.topS[r][i], false))),
          el("td", {}, ...t.bottom[r].map((id, i) => tok(id, t.bottomS[r][i], true))),
        );
        table.appendChild(tr);
      }
      shown = Math.min(rows.length, shown + PAGE);
      more.textContent = "show " + Math.min(PAGE, rows.length - shown) + " more of " + (rows.length - shown);
      more.hidden = shown >= rows.length;
    }
    more.addEventListener("click", page);
    page();
    box.appendChild(more);
    return box;
  }

  function pairTable(p) {
    const box = el("section", { id: "p-" + p.label });
    box.appendChild(el("h3", {}, p.label + " ", el("span", { class: "muted" }, "(" + p.interpreter + ": token i in " + p.left + " × token j in " + p.right + ")")));
    if (p.note) box.appendChild(el("p", { class: "note" }, p.note));
    const side = (list, neg) => {
      const t = el("table", {}, el("tr", {}, el("th", {}, "i"), el("th", {}, "j"), el("th", {}, "score")));
      for (const [i, j, s] of list) t.appendChild(el("tr", {}, el("td", {}, tok(i, undefined, neg)), el("td", {}, tok(j, undefined, neg)), el("td", { class: "num" }, fmt(s))));
      return t;
    };
    box.appendChild(el("div", { class: "plots" }, el("div", {}, el("b", {}, "top pairs"), side(p.top, false)), el("div", {}, el("b", {}, "bottom pairs"), side(p.bottom, true))));
    return box;
  }

  // --- inline SVG plots ----------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function barChart(title, values) {
    const w = 170, h = 70, pad = 14, max = Math.max(...values, 1e-12);
    const bw = (w - 2 * pad) / values.length;
    const root = svg("svg", { width: w, height: h + 14, viewBox: "0 0 " + w + " " + (h + 14), role: "img" });
    root.appendChild(svg("title", {}, title));
    root.appendChild(svg("text", { x: pad, y: 10 }, title));
    values.forEach((v, i) => {
      const bh = ((h - pad - 4) * v) / max;
      const r = svg("rect", { x: pad + i * bw + 1, y: h - bh, width: Math.max(bw - 2, 1), height: bh, fill: "#4f6fd8" });
      r.appendChild(svg("title", {}, "σ" + i + " = " + fmt(v)));
      root.appendChild(r);
    });
    root.appendChild(svg("line", { x1: pad, x2: w - pad, y1: h, y2: h, stroke: "#889" }));
    root.appendChild(svg("text", { x: pad, y: h + 12 }, "σ₀ = " + fmt(values[0])));
    return root;
  }
  function spectraSection(tables, head) {
    const box = el("section", {}, el("h3", {}, "Singular value spectra"));
    box.appendChild(el("p", { class: "note" }, "Leading singular values of each head's OV and QK circuits and of the MLP matrices (bars: the directions kept; hover for values)."));
    const plots = el("div", { class: "plots" });
    for (const t of tables) {
      const groups = new Map();
      t.labels.forEach((label, r) => {
        const hd = headOf(label);
        if (head !== null && hd !== head) return;
        const key = hd === null ? t.name : t.name + " H" + hd;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(t.sv[r]);
      });
      for (const [key, values] of groups) plots.appendChild(el("div", { class: "plot" }, barChart(key, values)));
    }
    box.appendChild(plots);
    return box;
  }

  // --- search --------------------------------------------------------------------------------
  async function showSearch(q) {
    const out = view();
    out.appendChild(el("h2", {}, "Search: ", el("span", { class: "tok" }, q)));
    if (!q) return;
    setStatus("loading the search data…");
    await Promise.all([needVocab(), needSearch()]);
    const vocab = store.vocab, sd = store.search;
    const forms = new Set([q, visible(q)]);
    const exact = [];
    const partial = [];
    const needle = visible(q).toLowerCase();
    vocab.forEach((t, id) => {
      if (forms.has(t)) exact.push(id);
      else if (t.toLowerCase().includes(needle) && partial.length < 60) partial.push(id);
    });
    // Parameter labels that start with the query (e.g. "L3.ff_value[17]").
    const labelHits = [];
    sd.labels.forEach((label, p) => {
      if (label.startsWith(q) && labelHits.length < 50) labelHits.push(p);
    });
    if (labelHits.length) {
      out.appendChild(el("h3", {}, "Parameters named " + q + "…"));
      const ul = el("ul", {});
      for (const p of labelHits) ul.appendChild(el("li", {}, paramLink(p)));
      out.appendChild(ul);
    }
    out.appendChild(el("h3", {}, "Tokens"));
    if (!exact.length && !partial.length) out.appendChild(el("p", {}, "No token matches."));
    const chips = el("p", {});
    for (const id of exact) chips.appendChild(tok(id, undefined, false, true));
    for (const id of partial) {
      const a = link("search=" + encodeURIComponent(vocab[id]), "");
      a.replaceChildren(tok(id));
      chips.appendChild(a);
    }
    out.appendChild(chips);
    if (!exact.length) return;
    const want = new Set(exact);
    const hits = [];
    for (let p = 0; p < sd.labels.length; p++) {
      for (let r = 0; r < sd.k; r++) {
        if (want.has(sd.top[p * sd.k + r])) hits.push([p, r, sd.topS[p * sd.k + r]]);
      }
    }
    hits.sort((a, b) => b[2] - a[2]);
    out.appendChild(el("h3", {}, "Parameters with this token among their top " + sd.k + " (" + hits.length + ")"));
    out.appendChild(el("p", { class: "note" }, "Write-side vectors promote the token (the score is the logit they add); read-side vectors respond to it. The full top/bottom lists are in index.sqlite: tl-embspace search FOLDER TOKEN."));
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "side"), el("th", {}, "rank"), el("th", {}, "score")));
    for (const [p, r, s] of hits.slice(0, 200)) {
      table.appendChild(el("tr", {}, el("td", {}, paramLink(p)), el("td", {}, sd.side[sd.kind[p]]), el("td", { class: "num" }, r), el("td", { class: "num" }, fmt(s))));
    }
    out.appendChild(table);
  }
  function paramLink(p) {
    const sd = store.search;
    return link("layer=" + sd.layer[p] + "&kind=" + sd.kinds[sd.kind[p]] + "&row=" + sd.row[p], sd.labels[p]);
  }

  // --- wiring --------------------------------------------------------------------------------
  function setHash(changes) {
    const h = parseHash();
    const params = new URLSearchParams();
    const merged = Object.assign({ layer: h.layer, kind: h.kind, head: h.head }, changes);
    if (merged.layer === null) merged.layer = String(meta.layers[0]);
    for (const [k, v] of Object.entries(merged)) if (v !== null && v !== "") params.set(k, v);
    location.hash = params.toString();
  }
  function start() {
    document.getElementById("search").addEventListener("submit", (e) => {
      e.preventDefault();
      location.hash = "search=" + encodeURIComponent(document.getElementById("q").value);
    });
    document.getElementById("kind").addEventListener("change", (e) => setHash({ kind: e.target.value, row: null }));
    document.getElementById("head").addEventListener("change", (e) => setHash({ head: e.target.value, row: null }));
    window.addEventListener("hashchange", route);
    route();
  }

  return {
    start,
    vocab: (v) => { store.vocab = v; },
    layer: (data) => { store.layers[data.layer] = data; },
    search: (data) => { store.search = data; },
  };
})();

document.addEventListener("DOMContentLoaded", tlAtlas.start);
