"""Result objects: frozen dataclasses with JSON, DataFrame and notebook HTML views.

Every quantity a user sees is defined here:

* ``score`` of a token for a vector ``x``: ``basis.prepare(x) @ basis.matrix[:, token]`` (+ the
  basis bias). With the ``W_U`` basis it is the logit ``x`` adds to the token; with ``W_E`` the
  dot product of ``x`` with the token's input embedding.
* ``top`` tokens: the k highest scores (most promoted / most strongly read); ``bottom``: the k
  lowest (most suppressed). Ties go to the lower token id.
* pair ``score`` of tokens (i, j): ``left_basis[:, i]ᵀ M right_basis[:, j]`` for the head's
  ``M = W_Q W_Kᵀ`` (QK: how much a query holding i attends to a key holding j, content only —
  positions and rotary are ignored) or ``M = W_V W_O`` (OV: how much attending to i promotes j).
"""

import functools
import html
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import Tensor

from .errors import InvalidArgumentError, OptionError, SelectionError


@functools.cache
def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: model, weights, bases and software versions."""

    model_name: str
    backend: str
    weights: str
    read_basis: str
    write_basis: str
    transport: str
    tl_embspace_version: str = field(default_factory=lambda: _version("tl_embspace"))
    transformer_lens_version: str = field(default_factory=lambda: _version("transformer-lens"))
    torch_version: str = field(default_factory=lambda: torch.__version__)

    @classmethod
    def of(cls, space: Any) -> "Provenance":
        """Provenance of results computed in ``space`` (an EmbeddingSpace)."""
        v = space.view
        return cls(
            model_name=v.spec.model_name,
            backend=v.spec.backend,
            weights=v.weights,
            **space.describe(),
        )


def _tokens(vocab: tuple[str, ...], ids: Tensor) -> list[str]:
    return [vocab[i] for i in ids.tolist()]


def _row(i: Any, n: int) -> int:
    """Check a vector index ``i`` (an int in ``[0, n)``; negative counts from the end)."""
    if isinstance(i, bool) or not isinstance(i, int):
        raise OptionError(f"the vector index must be an int, got {i!r} ({type(i).__name__})")
    if not -n <= i < n:
        raise SelectionError(f"vector {i} out of range: this result holds {n} vectors")
    return i


def _which(which: Any) -> str:
    """Check a side name: "top" or "bottom" (never guessed from a misspelling)."""
    if which not in ("top", "bottom"):
        raise InvalidArgumentError(f"which must be 'top' or 'bottom', got {which!r}")
    return which


@dataclass(frozen=True)
class VectorProjection:
    """Top and bottom vocabulary items of a batch of parameter vectors.

    Attributes:
        interpreter: Registry name that produced it (e.g. "ff_value").
        labels: One label per vector (e.g. "L3.ff_value[17]").
        layer: Layer the vectors belong to, or None.
        side: "read" or "write": which basis was used.
        basis: Name of that basis.
        top_ids, top_scores: ``[n, k]``, highest scores first.
        bottom_ids, bottom_scores: ``[n, k]``, lowest scores first.
        vocab: Display strings of the vocabulary (whitespace made visible), indexed by id.
        provenance: See ``Provenance``.
        extras: Per-vector extra columns (e.g. singular values), each a list of length n.
        note: Caveats the reader must know.
    """

    interpreter: str
    labels: tuple[str, ...]
    layer: int | None
    side: str
    basis: str
    top_ids: Tensor
    top_scores: Tensor
    bottom_ids: Tensor
    bottom_scores: Tensor
    vocab: tuple[str, ...] = field(repr=False)
    provenance: Provenance
    extras: dict[str, list] = field(default_factory=dict)
    note: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def top_tokens(self, i: int = 0) -> list[str]:
        """Display strings of the top tokens of vector ``i``."""
        return _tokens(self.vocab, self.top_ids[_row(i, len(self))])

    def bottom_tokens(self, i: int = 0) -> list[str]:
        """Display strings of the bottom tokens of vector ``i``."""
        return _tokens(self.vocab, self.bottom_ids[_row(i, len(self))])

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per vector (JSON-ready)."""
        out = []
        for i, label in enumerate(self.labels):
            rec: dict[str, Any] = {
                "label": label,
                "top": [
                    {"id": t, "token": self.vocab[t], "score": s}
                    for t, s in zip(
                        self.top_ids[i].tolist(), self.top_scores[i].tolist(), strict=True
                    )
                ],
                "bottom": [
                    {"id": t, "token": self.vocab[t], "score": s}
                    for t, s in zip(
                        self.bottom_ids[i].tolist(), self.bottom_scores[i].tolist(), strict=True
                    )
                ],
            }
            rec.update({k: v[i] for k, v in self.extras.items()})
            out.append(rec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (what ``to_json`` writes)."""
        return {
            "kind": "vectors",
            "interpreter": self.interpreter,
            "layer": self.layer,
            "side": self.side,
            "basis": self.basis,
            "note": self.note,
            "provenance": asdict(self.provenance),
            "vectors": self.records(),
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON string of ``to_dict()``."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    def to_dataframe(self) -> Any:
        """Long-format DataFrame: one row per (vector, side, rank). Needs pandas."""
        import pandas as pd

        rows = []
        for rec in self.records():
            for which in ("top", "bottom"):
                for rank, t in enumerate(rec[which]):
                    rows.append({"label": rec["label"], "which": which, "rank": rank, **t})
        return pd.DataFrame(rows)

    def plot(self, i: int = 0, n: int = 10) -> Any:
        """Bar charts of vector ``i``'s top and bottom ``n`` tokens (needs matplotlib).

        Returns:
            A matplotlib ``Figure`` (see ``tl_embspace.plots.tokens``).
        """
        from .plots import tokens

        return tokens(self, _row(i, len(self)) % len(self), n)

    def plot_spectrum(self) -> Any:
        """Bar chart of the singular values of an ``svd_*`` result (needs matplotlib)."""
        from .plots import spectrum

        return spectrum(self)

    def _repr_html_(self) -> str:
        head = (
            f"<b>{html.escape(self.interpreter)}</b> · {html.escape(self.side)} side · basis "
            f"{html.escape(self.basis)} · weights {html.escape(self.provenance.weights)}"
        )
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td>"
            f"<td>{_tokens_html(self.vocab, self.top_ids[i], self.top_scores[i])}</td>"
            f"<td>{_tokens_html(self.vocab, self.bottom_ids[i], self.bottom_scores[i])}</td></tr>"
            for i, label in enumerate(self.labels[:50])
        )
        more = f"<p>… {len(self) - 50} more</p>" if len(self) > 50 else ""
        words = ("promotes", "suppresses") if self.side == "write" else ("top", "bottom")
        header = f"<tr><th>vector</th><th>{words[0]}</th><th>{words[1]}</th></tr>"
        note = f"<p><i>{html.escape(self.note)}</i></p>" if self.note else ""
        return f"<div><p>{head}</p>{note}<table>{header}{rows}</table>{more}</div>"


def _tokens_html(vocab: tuple[str, ...], ids: Tensor, scores: Tensor) -> str:
    """Escaped token chips, whitespace kept visible, each with its score on hover."""
    return " ".join(
        f'<code style="white-space:pre" title="{s:.4g}">{html.escape(vocab[i])}</code>'
        for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
    )


@dataclass(frozen=True)
class PairProjection:
    """Top and bottom token pairs of one head's vocab x vocab interaction matrix.

    Attributes:
        interpreter: "qk_pairs" or "ov_pairs".
        label: e.g. "L3.H5.ov".
        layer, head: Where the matrix lives.
        left_basis, right_basis: Bases of the row token (i) and column token (j).
        top: ``(scores[k], rows[k], cols[k])`` highest first; bottom: lowest first.
        vocab: Display strings of the vocabulary.
        provenance: See ``Provenance``.
        note: Caveats (QK pairs are content-only: no positions, no rotary).
    """

    interpreter: str
    label: str
    layer: int
    head: int
    left_basis: str
    right_basis: str
    top: tuple[Tensor, Tensor, Tensor]
    bottom: tuple[Tensor, Tensor, Tensor]
    vocab: tuple[str, ...] = field(repr=False)
    provenance: Provenance
    note: str = ""

    def pairs(self, which: str = "top") -> list[tuple[str, str, float]]:
        """``(token_i, token_j, score)`` triples, best first (``which``: "top" or "bottom")."""
        scores, rows, cols = self.top if _which(which) == "top" else self.bottom
        return [
            (self.vocab[i], self.vocab[j], s)
            for s, i, j in zip(scores.tolist(), rows.tolist(), cols.tolist(), strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (what ``to_json`` writes)."""

        def side(t: tuple[Tensor, Tensor, Tensor]) -> list[dict[str, Any]]:
            s, r, c = t
            return [
                {"i": i, "j": j, "token_i": self.vocab[i], "token_j": self.vocab[j], "score": v}
                for v, i, j in zip(s.tolist(), r.tolist(), c.tolist(), strict=True)
            ]

        return {
            "kind": "pairs",
            "interpreter": self.interpreter,
            "label": self.label,
            "layer": self.layer,
            "head": self.head,
            "left_basis": self.left_basis,
            "right_basis": self.right_basis,
            "note": self.note,
            "provenance": asdict(self.provenance),
            "top": side(self.top),
            "bottom": side(self.bottom),
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON string of ``to_dict()``."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    def to_dataframe(self) -> Any:
        """One row per (side, rank). Needs pandas."""
        import pandas as pd

        d = self.to_dict()
        return pd.DataFrame(
            [{"which": w, "rank": r, **p} for w in ("top", "bottom") for r, p in enumerate(d[w])]
        )

    def plot(self, n: int = 10) -> Any:
        """Bar chart of the ``n`` top pairs, labelled ``i → j`` (needs matplotlib)."""
        from .plots import pairs

        return pairs(self, n)

    def _repr_html_(self) -> str:
        def cells(which: str) -> str:
            return "".join(
                f'<tr><td><code style="white-space:pre">{html.escape(a)}</code></td>'
                f'<td><code style="white-space:pre">{html.escape(b)}</code></td>'
                f"<td>{s:.3g}</td></tr>"
                for a, b, s in self.pairs(which)
            )

        header = "<tr><th>i</th><th>j</th><th>score</th></tr>"
        return (
            f"<div><p><b>{html.escape(self.label)}</b> · {html.escape(self.left_basis)} × "
            f"{html.escape(self.right_basis)} · {html.escape(self.note)}</p>"
            "<div style='display:flex;gap:2em'>"
            f"<div><b>top</b><table>{header}{cells('top')}</table></div>"
            f"<div><b>bottom</b><table>{header}{cells('bottom')}</table></div></div></div>"
        )
