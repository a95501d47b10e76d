"""The search index: same hits as a brute-force scan of the atlas arrays, atomic, no duplicates."""

import sqlite3

import numpy as np
import pytest

import tl_embspace as te
from tl_embspace.atlas import Atlas, SearchIndex, build_index, check_output_folder
from tl_embspace.atlas import search as search_mod
from tl_embspace.errors import AtlasError, InvalidArgumentError
from tl_embspace.job import interpret_model

from . import tinymodels as tm

FAST = dict(k=3, pair_k=2, svd_components=2, copying_tokens=16, progress=False)


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    model = tm.load("llama-gqa-untied", "bridge")
    return interpret_model(model, tmp_path_factory.mktemp("search") / "run", **FAST)


def brute_force(atlas: Atlas, token_id: int, polarity: int) -> set[tuple[str, int, float]]:
    """(label, rank, score) of every vector whose top/bottom list holds the token: a scan."""
    found = set()
    for layer in atlas.layers:
        for table in atlas.layer(layer).vectors.values():
            ids = table.top_ids if polarity == 1 else table.bottom_ids
            scores = table.top_scores if polarity == 1 else table.bottom_scores
            for row, rank in zip(*np.nonzero(ids == token_id), strict=True):
                found.add((table.labels[row], int(rank), float(scores[row, rank])))
    return found


def test_the_job_writes_the_index_with_the_atlas(atlas_dir):
    assert (atlas_dir / "index.sqlite").is_file()
    assert "index.sqlite" not in Atlas.open(atlas_dir).files  # derived, not data
    assert not [p for p in atlas_dir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("polarity", [1, -1])
def test_hits_equal_a_brute_force_scan_for_every_token(atlas_dir, polarity):
    atlas = Atlas.open(atlas_dir)
    with SearchIndex.open(atlas_dir) as index:
        for token_id, token in enumerate(atlas.vocab):
            hits = index.hits(token, polarity=polarity, limit=None)
            assert all(h.token_id == token_id and h.token == token for h in hits)
            got = {(h.label, h.rank, h.score) for h in hits}
            assert len(got) == len(hits)  # no duplicate row
            assert got == brute_force(atlas, token_id, polarity), token
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=polarity == 1)


def test_hits_point_back_to_the_atlas_row(atlas_dir):
    atlas = Atlas.open(atlas_dir)
    with SearchIndex.open(atlas_dir) as index:
        hits = index.promoting("w5", limit=None)
    assert hits
    for h in hits:
        table = atlas.layer(h.layer).vectors[h.interpreter]
        assert table.labels[h.row] == h.label
        assert table.top_ids[h.row, h.rank] == h.token_id
        assert table.side == h.side
        assert h.head is None or f"H{h.head}." in h.label or f"KV{h.head}." in h.label


def test_filters_narrow_the_hits(atlas_dir):
    with SearchIndex.open(atlas_dir) as index:
        every = index.promoting("w7", limit=None)
        writes = index.promoting("w7", limit=None, side="write")
        values = index.promoting("w7", limit=None, interpreters=["ff_value"], layers=[1])
        assert set(writes) == {h for h in every if h.side == "write"}
        assert set(values) == {h for h in every if h.interpreter == "ff_value" and h.layer == 1}
        assert index.promoting("w7", limit=2) == every[:2]
        with pytest.raises(InvalidArgumentError, match="side"):
            index.hits("w7", side="both")
        with pytest.raises(InvalidArgumentError, match="give a token"):
            index.hits("")


def test_contains_matches_with_and_without_fts5(atlas_dir, monkeypatch):
    atlas = Atlas.open(atlas_dir)
    expected = [i for i, t in enumerate(atlas.vocab) if "w1" in t.lower()]
    long = [i for i, t in enumerate(atlas.vocab) if "w12" in t.lower()]
    with SearchIndex.open(atlas_dir) as index:
        assert index.meta["fts5"] == str(search_mod.fts5_available())
        assert index.token_ids("W1", contains=True) == expected
        assert index.token_ids("w12", contains=True) == long
    monkeypatch.setattr(search_mod, "fts5_available", lambda: False)
    plain = build_index(atlas, atlas_dir.parent / "plain.sqlite")
    with SearchIndex.open(plain) as index:
        assert index.meta["fts5"] == "False"
        assert index.token_ids("w12", contains=True) == long


def test_pairs_and_copying_heads_equal_the_atlas(atlas_dir):
    atlas = Atlas.open(atlas_dir)
    with SearchIndex.open(atlas_dir) as index:
        heads = index.copying_heads(limit=None)
        pairs = index.pairs_with("w3", limit=None)
    cs = atlas.copying_scores
    expected = {
        (ly, h, float(s))
        for ly, row in zip(cs.layers, cs.scores, strict=True)
        for h, s in enumerate(row)
    }
    assert set(heads) == expected
    assert [h.copying_score for h in heads] == sorted((s for *_, s in expected), reverse=True)
    brute = {
        (p.label, x.i, x.j)
        for layer in atlas.layers
        for p in atlas.layer(layer).pairs
        for x in p.top
        if 7 in (x.i, x.j)  # "w3" is token 7
    }
    assert atlas.vocab[7] == "w3"
    assert {(p.label, p.i, p.j) for p in pairs} == brute


def test_rebuilding_replaces_the_index_whole(atlas_dir):
    with SearchIndex.open(atlas_dir) as index:
        before = index.counts()
    for _ in range(2):
        build_index(atlas_dir)
    with SearchIndex.open(atlas_dir) as index:
        assert index.counts() == before
    atlas = Atlas.open(atlas_dir)
    n_vectors = sum(len(t) for ly in atlas.layers for t in atlas.layer(ly).vectors.values())
    assert before["params"] == n_vectors
    assert before["hits"] == 2 * n_vectors * atlas.options["k"]
    assert not [p for p in atlas_dir.iterdir() if p.name.startswith(".")]


def test_an_interrupted_build_leaves_the_old_index(atlas_dir, monkeypatch):
    before = (atlas_dir / "index.sqlite").read_bytes()

    def fail(con, atlas):
        con.execute("CREATE TABLE half(x)")
        raise KeyboardInterrupt

    monkeypatch.setattr(search_mod, "_fill", fail)
    with pytest.raises(KeyboardInterrupt):
        build_index(atlas_dir)
    assert (atlas_dir / "index.sqlite").read_bytes() == before
    assert not [p for p in atlas_dir.iterdir() if p.name.startswith(".")]


def test_open_builds_a_missing_index_unless_told_not_to(atlas_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in atlas_dir.iterdir():
        if p.is_file() and p.name != "index.sqlite":
            (copy / p.name).write_bytes(p.read_bytes())
    with pytest.raises(AtlasError, match="no index.sqlite"):
        SearchIndex.open(copy, build=False)
    with SearchIndex.open(copy) as index:
        assert index.promoting("w5", limit=None)
    with pytest.raises(AtlasError, match="not a folder, so it is not an atlas"):
        SearchIndex.open(tmp_path / "nothing-here")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, really" * 10)
    with pytest.raises(AtlasError, match="not a search index"):
        SearchIndex.open(tmp_path / "junk.sqlite")


def test_queries_never_write_the_index(atlas_dir):
    with SearchIndex.open(atlas_dir) as index:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            index._con.execute("DELETE FROM hits")


def test_an_atlas_with_derived_files_may_still_be_overwritten(atlas_dir):
    assert check_output_folder(atlas_dir, overwrite=True) == atlas_dir
    model = tm.load("llama-gqa-untied", "bridge")
    out = interpret_model(model, atlas_dir, overwrite=True, **FAST)
    with te.SearchIndex.open(out) as index:
        assert index.counts()["params"] > 0


# --- notebook views ------------------------------------------------------------------------

HOSTILE = "<script>x</script>&amp;"


def test_notebook_views_escape_every_token(atlas_dir):
    from dataclasses import replace

    model = tm.load("llama-gqa-untied", "bridge")
    values = te.interpret("ff_value", model, layer=1, neurons=[0, 1], k=3)
    hostile = tuple(
        HOSTILE if i == int(values.top_ids[0, 0]) else t for i, t in enumerate(values.vocab)
    )
    page = replace(values, vocab=hostile)._repr_html_()
    assert HOSTILE not in page and "&lt;script&gt;x&lt;/script&gt;&amp;amp;" in page
    assert "promotes" in page and values.labels[1] in page
    pairs = te.interpret("ov_pairs", model, layer=1, head=0, k=2)
    i = int(pairs.top[1][0])
    page = replace(
        pairs, vocab=tuple(HOSTILE if t == i else v for t, v in enumerate(pairs.vocab))
    )._repr_html_()
    assert HOSTILE not in page and "&lt;script&gt;" in page and "bottom" in page
    atlas = Atlas.open(atlas_dir)
    page = atlas._repr_html_()
    assert "top copying heads" in page and str(atlas.folder) in page
    with SearchIndex.open(atlas_dir) as index:
        hits = index.promoting("w5", limit=3)
    page = hits._repr_html_()
    assert page.count("<tr>") == 1 + len(hits) and hits[0].label in page
