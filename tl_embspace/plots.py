"""Matplotlib figures of results, for notebooks: where a picture reads faster than a table.

matplotlib is optional (the ``plot`` extra: ``pip install 'tl_embspace[plot]'``); it is imported
only when a figure is asked for, and its absence is a :class:`~tl_embspace.errors.
MissingDependencyError` that names the extra. Every function returns a matplotlib ``Figure``
that is already closed in pyplot (so a notebook shows it once, as the cell's value, and a loop
of plots does not pile up open figures); save it with ``fig.savefig(path)``.

The functions read results by their attributes (or their ``to_dict()`` / JSON form), so this
module imports nothing else from the package but its errors::

    res.plot()                         # VectorProjection: top and bottom tokens of vector 0
    svd.plot_spectrum()                # singular values of SVD directions
    atlas.copying_scores.plot()        # copying scores: per layer and head, and their histogram
    te.plots.agreement(result)         # compare.agreement: aligned vs random-position baseline
    te.plots.alignment(result)         # apps.align: layer similarity, matches marked
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, MissingDependencyError

#: What to install for the figures.
EXTRA = "pip install 'tl_embspace[plot]' (or pip install matplotlib)"


def _pyplot() -> Any:
    """``matplotlib.pyplot``, or an error that names the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]  # optional
    except ImportError as e:
        raise MissingDependencyError(
            f"plots need matplotlib, which is not installed: {EXTRA}"
        ) from e
    return plt


def _finish(fig: Any) -> Any:
    fig.tight_layout()
    _pyplot().close(fig)  # returned, not shown: Jupyter draws it once, as the cell's value
    return fig


def _as_dict(result: Any) -> dict[str, Any]:
    """A result's plain form: its ``to_dict()``, or the mapping itself (e.g. a loaded JSON)."""
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "to_dict"):
        return result.to_dict()
    raise InvalidArgumentError(
        f"expected a result with to_dict() or its JSON as a dict, got {type(result).__name__}"
    )


def _list(x: Any) -> list[Any]:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def tokens(result: Any, i: int = 0, n: int = 10) -> Any:
    """Bar charts of one vector's top and bottom tokens and their scores.

    Args:
        result: A ``VectorProjection`` (``te.interpret`` of a vector interpreter).
        i: Which of its vectors.
        n: Tokens per side (at most the ``k`` it holds).

    Returns:
        A figure with two axes, "top" (highest score first, at the top) and "bottom".
    """
    if not 0 <= i < len(result.labels):
        raise InvalidArgumentError(f"vector {i} out of range: the result holds {len(result)}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.28 * n + 1.2))
    words = ("promotes", "suppresses") if result.side == "write" else ("top", "bottom")
    for ax, ids, scores, word, colour in (
        (axes[0], result.top_ids[i], result.top_scores[i], words[0], "#4f6fd8"),
        (axes[1], result.bottom_ids[i], result.bottom_scores[i], words[1], "#d85f4f"),
    ):
        ids, scores = _list(ids)[:n], _list(scores)[:n]
        y = np.arange(len(ids))
        ax.barh(y, scores, color=colour)
        ax.set_yticks(y, [result.vocab[t] for t in ids], fontfamily="monospace")
        ax.invert_yaxis()  # rank 0 on top
        ax.set_title(f"{result.labels[i]} {word}", fontsize=9)
        ax.set_xlabel(f"score ({result.basis})", fontsize=8)
    return _finish(fig)


def spectrum(result: Any) -> Any:
    """Bar chart of the singular values of SVD directions (``svd_ov``, ``svd_qk``, ...).

    Args:
        result: A ``VectorProjection`` whose ``extras`` hold ``singular_value``.
    """
    values = result.extras.get("singular_value")
    if values is None:
        raise InvalidArgumentError(
            f"{result.interpreter} results have no singular values; plot an svd_* result"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.0, 0.4 * len(values) + 1.5), 2.8))
    x = np.arange(len(values))
    ax.bar(x, _list(values), color="#4f6fd8")
    ax.set_xticks(x, list(result.labels), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("singular value")
    ax.set_title(f"{result.interpreter} spectrum", fontsize=9)
    return _finish(fig)


def pairs(result: Any, n: int = 10) -> Any:
    """Bar chart of a head's top token pairs (``qk_pairs`` / ``ov_pairs``), labelled ``i → j``."""
    plt = _pyplot()
    top = result.pairs("top")[:n]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(top) + 1.2))
    y = np.arange(len(top))
    ax.barh(y, [s for _, _, s in top], color="#4f6fd8")
    ax.set_yticks(y, [f"{a} → {b}" for a, b, _ in top], fontfamily="monospace")
    ax.invert_yaxis()
    ax.set_title(f"{result.label}: top pairs", fontsize=9)
    ax.set_xlabel("score", fontsize=8)
    return _finish(fig)


def copying(scores: Any, layers: Sequence[int] | None = None, bins: int = 30) -> Any:
    """Copying scores: a heat map per (layer, head) and the histogram of all heads.

    Args:
        scores: ``Atlas.copying_scores`` (its ``layers`` label the rows), or the
            ``[n_layers, n_heads]`` tensor ``te.copying_scores`` returns.
        layers: Row labels (default: the atlas's layers, else 0, 1, ...).
        bins: Histogram bins.
    """
    raw = scores.scores if hasattr(scores, "scores") else scores
    values = np.atleast_2d(np.asarray(_list(raw), dtype=np.float64))
    if layers is None:
        layers = getattr(scores, "layers", None) or range(values.shape[0])
    rows = list(layers or ())
    if len(rows) != values.shape[0]:
        raise InvalidArgumentError(f"{len(rows)} layer labels for {values.shape[0]} rows")
    plt = _pyplot()
    fig, (heat, hist) = plt.subplots(
        1,
        2,
        figsize=(9, max(2.6, 0.18 * len(rows) + 1.2)),
        gridspec_kw={"width_ratios": (3, 2)},
    )
    image = heat.imshow(values, aspect="auto", cmap="Blues", vmin=0.0, interpolation="nearest")
    heat.set_yticks(np.arange(len(rows)), [f"L{layer}" for layer in rows], fontsize=7)
    heat.set_xlabel("head")
    heat.set_title("copying score per head", fontsize=9)
    fig.colorbar(image, ax=heat)
    hist.hist(values.ravel(), bins=bins, color="#4f6fd8")
    hist.set_yscale("log")
    hist.set_xlabel("copying score")
    hist.set_ylabel("heads")
    hist.set_title(f"{values.size} heads", fontsize=9)
    return _finish(fig)


def agreement(result: Any, kinds: Sequence[str] | None = None) -> Any:
    """The agreement protocol per layer: aligned, random-position baseline, and the CI.

    One panel per (variant, reference) row and parameter kind column, as the paper's figures.
    The band is the baseline plus the 95% bootstrap interval of the difference, so aligned lies
    inside it and the band clears the baseline where the difference is significant.

    Args:
        result: A ``compare.agreement`` result, or its JSON (``agreement.json``) as a dict.
        kinds: Columns (default: every kind of the result).
    """
    data = _as_dict(result)
    rows = data["rows"]
    kinds = list(kinds or dict.fromkeys(r["kind"] for r in rows))
    panels = list(dict.fromkeys((r["variant"], r["reference"]) for r in rows))
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(panels), len(kinds), figsize=(3 * len(kinds), 2.4 * len(panels)), squeeze=False
    )
    for a, (variant, reference) in enumerate(panels):
        for b, kind in enumerate(kinds):
            mine = sorted(
                (
                    r
                    for r in rows
                    if (r["variant"], r["reference"], r["kind"]) == (variant, reference, kind)
                ),
                key=lambda r: r["layer"],
            )
            ax = axes[a][b]
            layers = [r["layer"] for r in mine]
            base = np.array([r["baseline"] for r in mine])
            ax.fill_between(
                layers,
                base + [r["ci_low"] for r in mine],
                base + [r["ci_high"] for r in mine],
                color="#4f6fd8",
                alpha=0.2,
                label="baseline + diff. 95% CI",
            )
            ax.plot(layers, [r["aligned"] for r in mine], "o-", ms=3, label="aligned")
            ax.plot(layers, base, "s--", ms=3, color="#888", label="random position")
            ax.set_title(f"{kind}, B: {reference} layer, {variant}", fontsize=8)
            ax.set_xlabel("layer", fontsize=7)
    axes[0][0].legend(fontsize=7)
    return _finish(fig)


def alignment(result: Any, group: str = "combined") -> Any:
    """Layer similarity of an alignment (rows: A's layers, columns: B's), matches marked.

    Args:
        result: An ``apps.align`` result, or its JSON (``embedding.json``) as a dict.
        group: Which similarity (``"combined"`` or one parameter group).
    """
    data = _as_dict(result)
    if group not in data["similarity"]:
        raise InvalidArgumentError(
            f"no similarity for group {group!r}; have {', '.join(data['similarity'])}"
        )
    sim = np.asarray(data["similarity"][group], dtype=np.float64)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(sim, cmap="Greys", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    if group == "combined":
        matched = [(i, j) for i, j in enumerate(data["layer_match"]) if j is not None]
        if matched:
            ax.scatter(
                [j for _, j in matched],
                [i for i, _ in matched],
                marker="s",
                s=30,
                facecolors="none",
                edgecolors="red",
                label="matched",
            )
            ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("layer of B")
    ax.set_ylabel("layer of A")
    ax.set_title(f"{data['space']} space, {group} ({data['aggregate']})", fontsize=9)
    return _finish(fig)


__all__ = ["EXTRA", "agreement", "alignment", "copying", "pairs", "spectrum", "tokens"]
