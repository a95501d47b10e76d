"""Figures hold the data they claim: bar lengths, tick labels, images and lines are read back.

matplotlib is the ``plot`` extra; without it every plot is one error naming the extra.
"""

import sys

import numpy as np
import pytest
import torch

import tl_embspace as te
from tl_embspace import plots
from tl_embspace.apps import Alignment
from tl_embspace.atlas import CopyingScores
from tl_embspace.compare.agreement import AgreementResult, AgreementRow
from tl_embspace.errors import InvalidArgumentError, MissingDependencyError

from . import tinymodels as tm

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def model():
    return tm.load("llama-gqa-untied", "bridge")


def _hbar_widths(ax) -> list[float]:
    return [p.get_width() for p in ax.patches]


def _ticks(ax, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def test_vector_plot_shows_its_top_and_bottom_tokens_and_scores(model):
    res = te.interpret("ff_value", model, layer=1, neurons=[0, 3], k=6)
    fig = res.plot(1, n=4)
    top, bottom = fig.axes
    np.testing.assert_allclose(_hbar_widths(top), res.top_scores[1, :4].tolist(), rtol=1e-6)
    np.testing.assert_allclose(_hbar_widths(bottom), res.bottom_scores[1, :4].tolist(), rtol=1e-6)
    assert _ticks(top) == res.top_tokens(1)[:4]
    assert _ticks(bottom) == res.bottom_tokens(1)[:4]
    assert top.yaxis_inverted()  # rank 0 is drawn on top
    assert res.labels[1] in top.get_title() and "promotes" in top.get_title()
    with pytest.raises(te.SelectionError):
        res.plot(2)


def test_spectrum_plots_the_singular_values(model):
    svd = te.interpret("svd_ov", model, layer=0, head=1, components=[0, 1, 2], k=3)
    fig = svd.plot_spectrum()
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, svd.extras["singular_value"], rtol=1e-6)
    assert heights == sorted(heights, reverse=True)
    assert _ticks(ax, "x") == list(svd.labels)
    values = te.interpret("ff_value", model, layer=0, neurons=[0], k=3)
    with pytest.raises(InvalidArgumentError, match="svd_"):
        values.plot_spectrum()


def test_pair_plot_labels_each_bar_with_its_pair(model):
    res = te.interpret("ov_pairs", model, layer=1, head=0, k=5)
    (ax,) = res.plot(n=3).axes
    top = res.pairs("top")[:3]
    np.testing.assert_allclose(_hbar_widths(ax), [s for _, _, s in top], rtol=1e-6)
    assert _ticks(ax) == [f"{a} → {b}" for a, b, _ in top]


def test_copying_plot_shows_every_head_in_the_map_and_the_histogram():
    scores = np.array([[0.0, 0.5, 0.1], [0.9, 0.0, 0.0]])
    cs = CopyingScores(layers=(3, 7), scores=scores, n_tokens=16, definition="d")
    fig = cs.plot()
    heat = fig.axes[0]
    (hist,) = [ax for ax in fig.axes if ax.get_title() == "6 heads"]  # not the colour bar
    np.testing.assert_array_equal(heat.images[0].get_array(), scores)
    assert _ticks(heat) == ["L3", "L7"]
    assert sum(p.get_height() for p in hist.patches) == scores.size
    # The tensor te.copying_scores returns plots too, rows labelled 0, 1, ...
    fig = plots.copying(torch.tensor(scores))
    assert _ticks(fig.axes[0]) == ["L0", "L1"]
    with pytest.raises(InvalidArgumentError, match="3 layer labels for 2 rows"):
        plots.copying(scores, layers=[0, 1, 2])


def _agreement() -> AgreementResult:
    rows = []
    for layer in (0, 1, 2):
        for kind in ("ff_value", "o"):
            aligned, baseline = 0.1 * layer + 0.2, 0.05 * layer
            rows.append(
                AgreementRow(
                    layer, kind, "same", "raw", aligned, baseline, aligned - baseline,
                    aligned - baseline - 0.01, aligned - baseline + 0.02, 300,
                )
            )  # fmt: skip
    return AgreementResult(rows=tuple(rows), scores={}, provenance={"model": "m"})


def test_agreement_plot_draws_aligned_baseline_and_the_interval():
    result = _agreement()
    for source in (result, result.to_dict()):  # the result or agreement.json's content
        fig = plots.agreement(source)
        assert len(fig.axes) == 2
        ax = fig.axes[1]
        aligned, baseline = ax.lines
        assert list(aligned.get_xdata()) == [0, 1, 2]
        np.testing.assert_allclose(
            aligned.get_ydata(), [result.row(i, "o").aligned for i in range(3)]
        )
        np.testing.assert_allclose(baseline.get_ydata(), [0.0, 0.05, 0.1])
        band = ax.collections[0].get_paths()[0].vertices
        # The band spans baseline + ci_low .. baseline + ci_high; aligned lies inside it.
        np.testing.assert_allclose(band[:, 1].min(), 0.2 - 0.01)
        np.testing.assert_allclose(band[:, 1].max(), 0.4 + 0.02)
        assert "o, B: same layer, raw" == ax.get_title()


def test_alignment_plot_shows_the_similarity_and_the_matches():
    sim = np.array([[0.9, 0.1], [0.2, 0.8]])
    result = Alignment(
        space="embedding",
        groups=("ff_value",),
        aggregate="rms",
        similarity={"ff_value": sim, "combined": sim},
        layer_match=(0, 1),
    )
    fig = plots.alignment(result)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), sim)
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[0, 0], [1, 1]])
    with pytest.raises(InvalidArgumentError, match="no similarity for group 'qk'"):
        plots.alignment(result.to_dict(), group="qk")


def test_without_matplotlib_a_plot_is_one_error_naming_the_extra(model, monkeypatch):
    res = te.interpret("ff_value", model, layer=0, neurons=[0], k=3)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependencyError, match=r"tl_embspace\[plot\]"):
        res.plot()
    assert isinstance(MissingDependencyError("x"), ImportError)
