"""The atlas: written == read, safe replacement of an output folder, permissions, provenance."""

import ast
import inspect
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import tl_embspace as te
from tl_embspace.atlas import FORMAT, Atlas, AtlasWriter, check_output_folder, unembedding_hash
from tl_embspace.atlas.schema import DERIVED
from tl_embspace.errors import AtlasError, EmbSpaceError, OutputFolderError
from tl_embspace.job import interpret_model
from tl_embspace.report import site as report_site
from tl_embspace.report import write_site
from tl_embspace.vocab import choose_vocabulary

from . import tinymodels as tm

FAST = dict(k=3, pair_k=2, svd_components=2, copying_tokens=16, layers=[1], progress=False)


@pytest.fixture(scope="module")
def model():
    return tm.load("gpt2-mha-tied", "bridge")


@pytest.fixture(scope="module")
def space(model):
    return te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def atlas_dir(model, tmp_path):
    """A complete atlas at tmp_path/run, and the bytes of its files."""
    out = interpret_model(model, tmp_path / "run", **FAST)
    return out, _snapshot(out)


# --- written == read -----------------------------------------------------------------------


def test_round_trip_written_equals_read(space, tmp_path):
    vectors = {
        "ff_value": te.interpret("ff_value", space, layer=1, k=4),
        "svd_ov": te.interpret("svd_ov", space, layer=1, head=2, k=4, components=[0, 1]),
    }
    pairs = [
        te.interpret(n, space, layer=1, head=h, k=3)
        for h in (0, 3)
        for n in ("qk_pairs", "ov_pairs")
    ]
    copying = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    with AtlasWriter(tmp_path / "a") as w:
        w.write_layer(1, vectors, pairs)
        w.finish(
            vocab=vectors["ff_value"].vocab,
            provenance={"model_name": "m"},
            spec={"n_layers": 2},
            options={"layers": [1], "weights": "folded", "write": "W_U"},
            copying_scores=([0, 1], copying, 16),
            timings={"total": 0.0},
            unembedding_hash="sha256:x",
        )
    atlas = Atlas.open(tmp_path / "a")
    assert atlas.format == FORMAT and atlas.unembedding_hash == "sha256:x"
    assert atlas.files == ("L01.json", "L01.npz", "manifest.json", "vocab.json")  # no report asked
    assert atlas.vocab == vectors["ff_value"].vocab and atlas.layers == (1,)
    assert atlas.spec == {"n_layers": 2} and atlas.provenance == {"model_name": "m"}
    cs = atlas.copying_scores
    assert cs.layers == (0, 1) and cs.n_tokens == 16
    np.testing.assert_array_equal(cs.scores, copying)
    layer = atlas.layer(1)
    assert list(layer.vectors) == ["ff_value", "svd_ov"]
    for name, r in vectors.items():
        t = layer.vectors[name]
        assert (t.interpreter, t.labels, t.side, t.basis, t.note) == (
            name,
            r.labels,
            r.side,
            r.basis,
            r.note,
        )
        for f in ("top_ids", "top_scores", "bottom_ids", "bottom_scores"):
            np.testing.assert_array_equal(getattr(t, f), getattr(r, f).numpy())
        assert t.top_ids.dtype == np.int32 and t.top_scores.dtype == np.float32
        assert sorted(t.extras) == sorted(r.extras)
        for key, col in r.extras.items():
            np.testing.assert_array_equal(t.extras[key], np.asarray(col))
    assert layer.vectors["svd_ov"].extras  # the SVD rows carry singular values: extras round-trip
    assert [p.label for p in layer.pairs] == [p.label for p in pairs]
    for read, p in zip(layer.pairs, pairs, strict=True):
        assert (
            read.interpreter,
            read.layer,
            read.head,
            read.left_basis,
            read.right_basis,
            read.note,
        ) == (p.interpreter, p.layer, p.head, p.left_basis, p.right_basis, p.note)
        for which in ("top", "bottom"):
            scores, rows, cols = getattr(p, which)
            got = getattr(read, which)
            assert [(x.i, x.j) for x in got] == list(zip(rows.tolist(), cols.tolist(), strict=True))
            assert [x.score for x in got] == scores.tolist()
            assert [(x.token_i, x.token_j) for x in got] == [(a, b) for a, b, _ in p.pairs(which)]
    assert layer.pair(pairs[1].label) == layer.pairs[1]


def test_job_atlas_matches_the_interpreters_and_its_weights(model, space, atlas_dir):
    out, _ = atlas_dir
    atlas = Atlas.open(out)
    choice = choose_vocabulary(space, "hygiene")  # the job's default vocabulary
    ref = te.interpret("ff_key", choice.space, layer=1, k=3, token_filter=choice.token_filter)
    table = atlas.layer(1).vectors["ff_key"]
    np.testing.assert_array_equal(table.top_ids, ref.top_ids.numpy())
    assert table.labels == ref.labels
    assert atlas.unembedding_hash == unembedding_hash(space.write.matrix, space.write.bias)
    assert atlas.matches(model) and atlas.matches(space)
    other = tm.load("llama-mqa-tied", "bridge")
    assert not atlas.matches(other)
    assert not atlas.matches(te.adapt(model))  # raw weights: W_U without the final norm's gain
    assert not atlas.matches(te.EmbeddingSpace(te.adapt(model).folded(), write="W_E"))


def test_old_format_has_no_hash_to_match(model, atlas_dir):
    out, _ = atlas_dir
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format"] = "tl_embspace.job/1"
    del manifest["unembedding_hash"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    atlas = Atlas.open(out)
    assert atlas.unembedding_hash is None
    with pytest.raises(AtlasError, match="re-run"):
        atlas.matches(model)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda out: (out / "manifest.json").unlink(), "no manifest.json"),
        (lambda out: (out / "manifest.json").write_text("{not json"), "cannot read"),
        (
            lambda out: (out / "manifest.json").write_text('{"format": "tl_embspace.atlas/99"}'),
            "Re-run",
        ),
        (lambda out: (out / "L01.npz").unlink(), "incomplete atlas: L01.npz missing"),
    ],
    ids=["no-manifest", "bad-json", "unknown-format", "missing-file"],
)
def test_open_refuses_what_is_not_a_complete_atlas(atlas_dir, damage, message):
    out, _ = atlas_dir
    damage(out)
    with pytest.raises(AtlasError, match=message) as info:
        Atlas.open(out)
    assert isinstance(info.value, EmbSpaceError) and isinstance(info.value, ValueError)


def test_layer_not_in_the_atlas_is_refused(atlas_dir):
    with pytest.raises(AtlasError, match="holds layers \\[1\\], not 0"):
        Atlas.open(atlas_dir[0]).layer(0)


# --- the report reads only through Atlas ---------------------------------------------------


def test_report_renders_only_through_atlas(atlas_dir, monkeypatch):
    out, _ = atlas_dir
    atlas = Atlas.open(out)
    assert (out / "index.html").read_text(encoding="utf-8") == report_site.render_index(atlas)
    for name, text in report_site.asset_files(atlas):
        assert (out / "html" / name).read_text(encoding="utf-8") == text
    # The renderer imports no file-format code of its own: only the atlas reader.
    tree = ast.parse(inspect.getsource(report_site))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    stdlib = {"html", "json", "os", "re", "collections.abc", "dataclasses", "importlib"}
    # ``attached``: results kept beside the atlas (comparison, alignment), read as JSON.
    assert imported == stdlib | {"pathlib", "typing", "numpy", "atlas", "attached"}
    assert "np.load" not in inspect.getsource(report_site)
    # What the page shows comes from Atlas.layer: a label changed there shows up in the page.
    real = Atlas.layer

    def relabelled(self, layer):
        record = real(self, layer)
        table = record.vectors["ff_value"]
        record.vectors["ff_value"] = replace(table, labels=("SENTINEL",) * len(table))
        return record

    monkeypatch.setattr(Atlas, "layer", relabelled)
    assert any("SENTINEL" in text for _, text in report_site.asset_files(Atlas.open(out)))


def test_report_refuses_a_folder_that_is_not_an_atlas(tmp_path):
    with pytest.raises(AtlasError, match="no manifest.json"):
        write_site(tmp_path)


# --- safe writes ---------------------------------------------------------------------------


def test_refuses_an_existing_folder_without_overwrite(model, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite") as info:
        interpret_model(model, tmp_path / "run", **FAST)
    assert isinstance(info.value, OutputFolderError) and isinstance(info.value, EmbSpaceError)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def _user_folder(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.tex").write_text("six months of work")
    (d / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return d


def _atlas_plus_user_file(tmp_path: Path, model) -> Path:
    out = interpret_model(model, tmp_path / "mine", **FAST)
    (out / "notes.txt").write_text("my notes on this atlas")
    return out


def _atlas_missing_a_file(tmp_path: Path, model) -> Path:
    out = interpret_model(model, tmp_path / "mine", **FAST)
    (out / "vocab.json").unlink()
    return out


def _manifest_only(tmp_path: Path, model) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "manifest.json").write_text('{"format": "something else", "files": []}')
    return d


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda tmp_path, model: _user_folder(tmp_path), "not an atlas"),
        (_atlas_plus_user_file, "notes.txt"),
        (_atlas_missing_a_file, "missing: \\['vocab.json'\\]"),
        (_manifest_only, "not an atlas"),
    ],
    ids=["user-files", "atlas-plus-user-file", "incomplete-atlas", "foreign-manifest"],
)
def test_overwrite_refuses_what_is_not_exactly_an_atlas(model, tmp_path, make, why):
    folder = make(tmp_path, model)
    before = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(OutputFolderError, match=why):
        interpret_model(model, folder, overwrite=True, **FAST)
    after = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before  # byte for byte
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no partial folder beside it


def test_overwrite_refuses_the_current_folder_and_its_parents(model, tmp_path, monkeypatch):
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    (cwd / "keep.txt").write_text("x")
    monkeypatch.chdir(cwd)
    for target in (".", cwd, "..", tmp_path):
        with pytest.raises(OutputFolderError, match="current folder"):
            interpret_model(model, target, overwrite=True, **FAST)
    empty = tmp_path / "work" / "empty-cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(OutputFolderError, match="current folder"):  # even when empty
        check_output_folder(".", overwrite=True)
    assert (cwd / "keep.txt").read_text() == "x"


def test_overwrite_refuses_home_a_file_and_a_link(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(OutputFolderError, match="home folder"):
        check_output_folder(home, overwrite=True)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(f, overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(home)
    with pytest.raises(OutputFolderError, match="symbolic link"):
        check_output_folder(link, overwrite=True)
    assert f.read_text() == "x" and home.is_dir()


def test_overwrite_may_use_an_empty_folder(model, tmp_path):
    (tmp_path / "run").mkdir()
    out = interpret_model(model, tmp_path / "run", overwrite=True, **FAST)
    assert Atlas.open(out).layers == (1,)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_successful_overwrite_replaces_the_atlas(model, atlas_dir):
    out, before = atlas_dir
    assert Atlas.open(out).options["k"] == 3
    interpret_model(model, out, overwrite=True, **{**FAST, "k": 2, "layers": [0]})
    atlas = Atlas.open(out)
    assert atlas.options["k"] == 2 and atlas.layers == (0,)
    data = sorted(p.name for p in out.iterdir() if p.name not in DERIVED)
    assert data == list(atlas.files)  # no file of the old one
    assert "L01.npz" not in atlas.files and "L01.npz" in before
    assert [p.name for p in out.parent.iterdir()] == ["run"]  # no partial or old folder left


class _Boom(Exception):
    pass


def _raise(exc: type[BaseException]):
    def f(*args, **kwargs):
        raise exc("interrupted")

    return f


def _fail_second_rename(monkeypatch, exc):
    """The old atlas is renamed aside, then moving the new one into place fails."""
    real = os.rename
    calls = []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise exc("interrupted")
        return real(src, dst)

    monkeypatch.setattr("tl_embspace.atlas.writer.os.rename", rename)


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt])
@pytest.mark.parametrize(
    "where",
    [
        lambda mp, exc: mp.setattr("tl_embspace.job.copying_scores", _raise(exc)),
        lambda mp, exc: mp.setattr(AtlasWriter, "write_layer", _raise(exc)),
        lambda mp, exc: mp.setattr("tl_embspace.report.write_site", _raise(exc)),
        _fail_second_rename,
    ],
    ids=["computing", "writing-a-layer", "rendering", "swapping"],
)
def test_interrupted_overwrite_leaves_the_previous_atlas_intact(
    model, atlas_dir, monkeypatch, where, exc
):
    out, before = atlas_dir
    where(monkeypatch, exc)
    with pytest.raises(exc, match="interrupted"):
        interpret_model(model, out, overwrite=True, **{**FAST, "k": 2})
    assert _snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["run"]  # no partial or old folder left


def test_interrupted_first_run_leaves_nothing(model, tmp_path, monkeypatch):
    monkeypatch.setattr("tl_embspace.job.copying_scores", _raise(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        interpret_model(model, tmp_path / "new", **FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_has_normal_permissions(model, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = interpret_model(model, tmp_path / "run", **FAST)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in out.rglob("*"):
        mode = (0o777 if f.is_dir() else 0o666) & ~umask
        assert f.stat().st_mode & 0o777 == mode, f.name
    assert (out / "html").is_dir() and (out / "index.sqlite").is_file()
