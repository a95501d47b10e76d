"""The fast job is the same job: same output as before, shards merge exactly, CUDA when present.

``tests/golden/hygiene-llama-gqa-untied.*`` hold the default (hygiene) job's output on a tiny
model written by the code before the performance work (commit 7541e66), packed as
``tests/golden/make_golden.py`` packs; the current job must write the same files, ids and
pairs, and scores equal up to float32 rounding.
"""

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tl_embspace as te
from tl_embspace import cli
from tl_embspace.adapters import WeightView
from tl_embspace.atlas import Atlas
from tl_embspace.engine import scores_vocab, topk_columns, topk_vocab, vocab_columns
from tl_embspace.errors import InvalidArgumentError
from tl_embspace.job import interpret_model, merge_atlases

from . import tinymodels as tm
from .golden.make_golden import pack

GOLDEN = Path(__file__).parent / "golden" / "hygiene-llama-gqa-untied"
OPTIONS = dict(k=3, pair_k=2, svd_components=2, copying_tokens=64)


def _load(stem: Path) -> tuple[dict, dict]:
    with np.load(stem.with_suffix(".npz")) as z:
        arrays = {n: z[n] for n in z.files}
    return arrays, json.loads(stem.with_suffix(".json").read_text())


def _without_scores(layer: dict) -> dict:
    pairs = [
        {**p, **{w: [{**x, "score": None} for x in p[w]] for w in ("top", "bottom")}}
        for p in layer["pairs"]
    ]
    return {**layer, "pairs": pairs}


def test_default_job_writes_what_it_wrote_before(tmp_path):
    out = interpret_model(tm.load("llama-gqa-untied", "bridge"), tmp_path / "run", **OPTIONS,
                          progress=False)  # fmt: skip
    pack(out, tmp_path / "now")
    (old_arrays, old), (new_arrays, new) = _load(GOLDEN), _load(tmp_path / "now")
    assert new["files"] == old["files"] and new["vocab"] == old["vocab"]
    for volatile in ("provenance", "spec"):  # temporary model folder's name, versions
        old["manifest"].pop(volatile), new["manifest"].pop(volatile)
    # Recorded since the golden was written (hybrids' mixer layers); none on this model.
    assert new["manifest"]["options"].pop("attention_skipped") == {}
    assert new["manifest"] == old["manifest"]  # options, vocabulary, copying scores, files
    assert sorted(new_arrays) == sorted(old_arrays)
    for name, before in old_arrays.items():
        now = new_arrays[name]
        assert now.dtype == before.dtype and now.shape == before.shape, name
        if "scores" in name or "singular_value" in name:
            np.testing.assert_allclose(now, before, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(now, before, err_msg=name)
    for name, layer in old["layers"].items():
        assert _without_scores(new["layers"][name]) == _without_scores(layer)
        for p_new, p_old in zip(new["layers"][name]["pairs"], layer["pairs"], strict=True):
            for which in ("top", "bottom"):
                np.testing.assert_allclose(
                    [x["score"] for x in p_new[which]],
                    [x["score"] for x in p_old[which]],
                    rtol=1e-6,
                    atol=1e-6,
                )


def test_prepared_columns_rank_as_the_dense_scores():
    """topk_columns (columns gathered once, reused) is the dense ranking, ties to the lower id."""
    gen = torch.Generator().manual_seed(0)
    vectors, matrix = torch.randn(7, 16, generator=gen), torch.randn(16, 300, generator=gen)
    matrix[:, 50] = matrix[:, 40]  # a tie: id 40 must come first
    bias = torch.randn(300, generator=gen)
    mask = torch.rand(300, generator=gen) > 0.3
    columns = vocab_columns(matrix, bias=bias, mask=mask, chunk_size=64)
    dense = scores_vocab(vectors, matrix, bias=bias).masked_fill(~mask, float("nan"))
    for _ in range(2):  # the same columns serve every call
        top, bottom = topk_columns(vectors, columns, 5)
        for row in range(7):
            allowed = mask.nonzero().squeeze(1).tolist()
            best = sorted(allowed, key=lambda t: (-float(dense[row, t]), t))[:5]
            worst = sorted(allowed, key=lambda t: (float(dense[row, t]), t))[:5]
            assert top.indices[row].tolist() == best and bottom.indices[row].tolist() == worst
    via_vocab = topk_vocab(vectors, matrix, 5, bias=bias, mask=mask, chunk_size=64)
    assert torch.equal(via_vocab[0].indices, top.indices)
    assert torch.equal(via_vocab[0].values, top.values)


def test_prepared_columns_still_refuse_nan_vectors():
    columns = vocab_columns(torch.randn(4, 30))
    with pytest.raises(InvalidArgumentError, match="vectors contains NaN"):
        topk_columns(torch.full((2, 4), float("nan")), columns, 3)


@pytest.mark.mutates_model
def test_a_pinned_view_checks_once_and_sees_edits_after():
    model = tm.bridge("gpt2-mha-tied")
    view = te.adapt(model)
    before = view.layer(0).W_in.clone()
    calls = []
    source_version = view.source_version
    view.source_version = lambda: calls.append(1) or source_version()  # type: ignore[method-assign]
    with view.pinned():
        for _ in range(5):
            view.layer(0), view.globals
        assert len(calls) == 1  # checked once, on entry
    with torch.no_grad():
        for p in model.blocks[0].mlp.parameters():
            p.mul_(2)
    torch.testing.assert_close(view.layer(0).W_in, 2 * before)  # outside: checked again


def test_release_forgets_one_block_in_the_view_and_the_view_it_wraps():
    model = tm.bridge("gpt2-mha-tied")
    base = te.adapt(model)
    folded = base.folded()
    kept, released = folded.layer(0), folded.layer(1)
    inner = base.layer(1)
    folded.release(-1)  # negative indices count from the end, as in layer()
    assert folded.layer(0) is kept  # other blocks stay cached
    again = folded.layer(1)
    assert again is not released and base.layer(1) is not inner  # read again, both views
    torch.testing.assert_close(again.W_in, released.W_in)
    torch.testing.assert_close(again.W_out_written, released.W_out_written)


def test_the_job_releases_each_block_after_use(tmp_path, monkeypatch):
    model = tm.load("gpt2-mha-tied", "bridge")
    released = []
    real = WeightView.release
    monkeypatch.setattr(WeightView, "release", lambda self, i: released.append(i) or real(self, i))
    interpret_model(model, tmp_path / "out", **OPTIONS, progress=False)
    n_layers = te.adapt(model).spec.n_layers
    assert sorted(set(released)) == list(range(n_layers))


def _merge_and_single(tmp_path: Path, shards: list[list[int]]) -> tuple[Path, Path]:
    model = tm.load("gpt2-mha-tied", "bridge")
    n_layers = te.adapt(model).spec.n_layers
    folders = []
    for i, layers in enumerate(shards):
        folders.append(interpret_model(model, tmp_path / f"shard{i}", layers=layers, **OPTIONS,
                                       progress=False))  # fmt: skip
    single = interpret_model(model, tmp_path / "single", **OPTIONS, progress=False)
    assert sorted(sum(shards, [])) == list(range(n_layers))
    code = cli.main(["merge", str(tmp_path / "merged"), *map(str, reversed(folders))])
    assert code == 0
    return tmp_path / "merged", single


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_merged_shards_equal_a_single_run_byte_for_byte(tmp_path):
    merged, single = _merge_and_single(tmp_path, [[1], [0]])
    assert _tree(merged) == _tree(single)
    for name in _tree(single):
        a, b = merged / name, single / name
        if name == "manifest.json":
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            ta, tb = ma.pop("timings_s"), mb.pop("timings_s")
            assert ma == mb and sorted(ta["layers"]) == sorted(tb["layers"])
        elif a.is_file():
            assert filecmp.cmp(a, b, shallow=False), name
    assert Atlas.open(merged).layers == Atlas.open(single).layers


def test_merge_refuses_overlapping_or_foreign_shards(tmp_path):
    model = tm.load("gpt2-mha-tied", "bridge")
    a = interpret_model(model, tmp_path / "a", layers=[0], **OPTIONS, progress=False)
    b = interpret_model(model, tmp_path / "b", layers=[0, 1], **OPTIONS, progress=False)
    with pytest.raises(InvalidArgumentError, match="layer 0 is in both"):
        merge_atlases(tmp_path / "m", [a, b])
    c = interpret_model(model, tmp_path / "c", layers=[1], **{**OPTIONS, "k": 2}, progress=False)
    with pytest.raises(InvalidArgumentError, match="options differ"):
        merge_atlases(tmp_path / "m", [a, c])
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_job_runs_on_cuda_and_agrees_with_the_cpu(tmp_path):
    cpu_model = tm.load("llama-gqa-untied", "bridge")
    gpu_model = tm.load("llama-gqa-untied", "bridge").to("cuda")
    cpu = Atlas.open(interpret_model(cpu_model, tmp_path / "cpu", **OPTIONS, progress=False))
    gpu = Atlas.open(interpret_model(gpu_model, tmp_path / "gpu", **OPTIONS, progress=False))
    assert gpu.layers == cpu.layers
    for layer in cpu.layers:
        a, b = cpu.layer(layer), gpu.layer(layer)
        for name, table in a.vectors.items():
            np.testing.assert_allclose(b.vectors[name].top_scores, table.top_scores, atol=1e-3)
        assert [p.label for p in a.pairs] == [p.label for p in b.pairs]
    np.testing.assert_allclose(gpu.copying_scores.scores, cpu.copying_scores.scores, atol=0.05)


def _identity_checker():
    """benchmarks/check_job_identity.py as a module (benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "check_job_identity.py"
    spec = importlib.util.spec_from_file_location("check_job_identity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identity_check_allows_only_near_tie_swaps_in_pair_lists():
    check = _identity_checker()

    def ranking(*entries):
        return [{"i": i, "j": j, "score": s} for i, j, s in entries]

    old = ranking((1, 2, 0.9), (3, 4, 0.5), (5, 6, 0.5000000298), (7, 8, 0.1))
    cases = {
        "same": (old, False, 0),
        # Two scores an ulp apart trade places: allowed, counted.
        "near_tie_swap": (
            ranking((1, 2, 0.9), (5, 6, 0.5), (3, 4, 0.5000000298), (7, 8, 0.1)),
            0,
            1,
        ),
        # A real reordering is not.
        "swap": (ranking((3, 4, 0.9), (1, 2, 0.5), (5, 6, 0.5), (7, 8, 0.1)), True, 1),
        # The last entry replaced by another of the same score: allowed; of another score: not.
        "tie_at_the_end": (ranking((1, 2, 0.9), (3, 4, 0.5), (5, 6, 0.5), (9, 9, 0.1)), False, 1),
        "new_at_the_end": (ranking((1, 2, 0.9), (3, 4, 0.5), (5, 6, 0.5), (9, 9, 0.09)), True, 1),
    }
    for name, (new, fails, n_swaps) in cases.items():
        check.SWAPS.clear()
        problems = []
        check._close({"top": old}, {"top": new}, name, problems)
        assert bool(problems) == fails, (name, problems)
        assert len(check.SWAPS) == n_swaps, name
