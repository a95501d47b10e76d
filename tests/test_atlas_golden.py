"""The job writes the same results as before the atlas module existed (golden fixtures).

``tests/golden/job1-*`` hold the output of the job of format "tl_embspace.job/1" on two tiny
models (see ``tests/golden/make_golden.py``). The current job must write the same files, the same
token ids, labels and pairs, and scores equal up to float32 rounding; only the format id, the new
``unembedding_hash``, timings, the temporary model folder's name and library versions may differ.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from tl_embspace.atlas import FORMAT, Atlas
from tl_embspace.atlas.schema import DERIVED
from tl_embspace.job import interpret_model

from . import tinymodels as tm
from .golden.make_golden import CASES, OPTIONS, pack

GOLDEN = Path(__file__).parent / "golden"

# Differ from run to run (temporary model folder, timings) or between environments (versions).
VOLATILE = {
    "provenance": (
        "model_name",
        "tl_embspace_version",
        "transformer_lens_version",
        "torch_version",
    ),
    "spec": ("model_name", "tl_version"),
}


def _data_files(files: list[str]) -> list[str]:
    """The data files: derived ones (HTML, search index) may come and go between versions."""
    return [f for f in files if f not in DERIVED]


def _stable(manifest: dict) -> dict:
    m = {k: v for k, v in manifest.items() if k not in ("format", "timings_s", "unembedding_hash")}
    m["files"] = _data_files(m["files"])
    for section, keys in VOLATILE.items():
        m[section] = {k: v for k, v in m[section].items() if k not in keys}
    return m


@pytest.fixture(scope="module", params=CASES)
def runs(request, tmp_path_factory):
    """(golden, current) packed outputs of one case: arrays and the rest."""
    out = interpret_model(
        tm.load(request.param, "bridge"),
        tmp_path_factory.mktemp("g") / "run",
        progress=False,
        vocab="raw",  # the old job's view: every token, raw scores (hygiene came later)
        **OPTIONS,
    )
    pack(out, out.parent / "now")

    def load(stem: Path) -> tuple[dict, dict]:
        with np.load(stem.with_suffix(".npz")) as z:
            arrays = {n: z[n] for n in z.files}
        return arrays, json.loads(stem.with_suffix(".json").read_text())

    return load(GOLDEN / f"job1-{request.param}"), load(out.parent / "now"), out


def test_same_files_and_manifest(runs):
    (_, old), (_, new), out = runs
    assert _data_files(new["files"]) == _data_files(old["files"])
    assert new["manifest"]["format"] == FORMAT and old["manifest"]["format"] == "tl_embspace.job/1"
    assert new["manifest"]["unembedding_hash"].startswith("sha256:")
    new_m, old_m = _stable(new["manifest"]), _stable(old["manifest"])
    # The spec has gained facts since (family, norm offset, soft-caps, ...); what it recorded
    # then must be recorded the same now.
    assert {k: new_m["spec"][k] for k in old_m["spec"]} == old_m["spec"]
    new_m.pop("spec"), old_m.pop("spec")
    # The vocabulary choice is recorded since hygiene exists; the old job was the raw view.
    assert new_m["options"].pop("vocab") == {"mode": "raw", "filter": None, "normalisation": None}
    # Layers without attention are recorded since hybrids are read; these models have none.
    assert new_m["options"].pop("attention_skipped") == {}
    assert new_m == old_m
    assert new["vocab"] == old["vocab"]


def test_same_arrays(runs):
    (old_arrays, _), (new_arrays, _), _ = runs
    assert sorted(new_arrays) == sorted(old_arrays)
    for name, old in old_arrays.items():
        new = new_arrays[name]
        assert new.dtype == old.dtype and new.shape == old.shape, name
        if "ids" in name:
            np.testing.assert_array_equal(new, old, err_msg=name)
        else:
            np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-6, err_msg=name)


def test_same_labels_and_pairs(runs):
    (_, old), (_, new), _ = runs
    assert sorted(new["layers"]) == sorted(old["layers"])
    for name, old_layer in old["layers"].items():
        new_layer = new["layers"][name]
        assert new_layer["vectors"] == old_layer["vectors"]  # labels, side, basis, note
        assert len(new_layer["pairs"]) == len(old_layer["pairs"])
        for p_new, p_old in zip(new_layer["pairs"], old_layer["pairs"], strict=True):
            for which in ("top", "bottom"):
                new_ids, old_ids = (
                    [(x["i"], x["j"], x["token_i"], x["token_j"]) for x in p[which]]
                    for p in (p_new, p_old)
                )
                assert new_ids == old_ids, p_old["label"]
                np.testing.assert_allclose(
                    [x["score"] for x in p_new[which]],
                    [x["score"] for x in p_old[which]],
                    rtol=1e-6,
                    atol=1e-6,
                )
            rest = lambda p: {k: v for k, v in p.items() if k not in ("top", "bottom")}  # noqa: E731
            assert rest(p_new) == rest(p_old)


def test_old_format_golden_reads_through_atlas(runs, tmp_path):
    """The reader opens a "tl_embspace.job/1" folder and reads it like the new one."""
    (old_arrays, old), _, out = runs
    folder = tmp_path / "job1"
    folder.mkdir()
    for name, meta in old["layers"].items():
        (folder / f"{name}.json").write_text(json.dumps(meta))
        np.savez_compressed(
            folder / f"{name}.npz",
            **{k.split("/", 1)[1]: v for k, v in old_arrays.items() if k.startswith(name + "/")},
        )
    (folder / "vocab.json").write_text(json.dumps(old["vocab"]))
    (folder / "manifest.json").write_text(json.dumps({**old["manifest"], "timings_s": {}}))
    (folder / "index.html").write_text("")
    atlas_old, atlas_new = Atlas.open(folder), Atlas.open(out)
    assert atlas_old.format == "tl_embspace.job/1" and atlas_old.unembedding_hash is None
    assert atlas_old.layers == atlas_new.layers and atlas_old.vocab == atlas_new.vocab
    for layer in atlas_new.layers:
        a, b = atlas_old.layer(layer), atlas_new.layer(layer)
        assert list(a.vectors) == list(b.vectors)
        for name in a.vectors:
            np.testing.assert_array_equal(a.vectors[name].top_ids, b.vectors[name].top_ids)
        assert [p.label for p in a.pairs] == [p.label for p in b.pairs]
