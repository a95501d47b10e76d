"""Attention circuits read from the weights vs what each head does on text (beyond Dar et al.).

Two per-head checks over a corpus, each against a shuffled-token baseline (seeded):

* **QK vs observed attention.** The weight reading scores a (query token, key token) pair as
  ``s(q, k) = e_qᵀ W_Q W_Kᵀ e_k``, with ``e_t`` the read basis's column for token ``t`` (the
  library's ``qk_pairs``). At each scored query position ``i`` the keys are the scored positions
  ``j`` it can see (``j ≤ i`` for a decoder) except the window's first position (BOS, or the
  attention sink of a model without one) and its own (that pair is always ``(t, t)``, shuffled
  or not, and attending to it is largely positional); the statistic is a within-row AUC: the
  fraction of the row's other keys whose weight score is below that of the key the head
  *actually* attends to most (ties ½). 0.5 is chance; 1 means the weights' ranking always
  puts the attended key first.
  Rows are compared within themselves because the softmax normalises per query (a term that
  depends on the query token only moves every key of a row alike).
* **OV vs the head's direct logit effect.** At the query positions where the head's most
  attended key (as above, the own position included) gets at least ``threshold`` of its
  attention, the measured effect is the head's direct logit attribution: its output
  ``z_h W_O[h]`` through the final norm with
  *that position's* scale (the norm's linear part, frozen at the final residual's statistics),
  then ``W_U``. The weight reading is the OV row of the attended key's token ``t``:
  ``e_tᵀ W_V W_O B_w`` (the library's ``ov_pairs``). Statistic: the Pearson correlation of the
  two over the vocabulary (computed through ``d_model x d_model`` Gram matrices: no vocab-sized
  vector is formed per position).

**Baseline**: the same statistic with every scored position's token replaced by the token of a
random *other* scored position (``agreement.partner_positions``, seeded); attention patterns
and head outputs are unchanged. Per head: mean aligned and baseline over the scored rows or
events, their difference and a percentile-bootstrap 95% interval (seeded).

**What the weight readings ignore** (the measurements include all of it, which is the point of
the comparison): positions (rotary or absolute position embeddings: the score has no position,
so recency and attention sinks are invisible to it), everything the residual holds beyond the
token's own embedding (context written by earlier layers; exact only at layer 0), the norm
before attention (its per-position scale and centring; with raw weights also its gain, which
folded weights include), the biases ``b_Q``, ``b_K``, ``b_V``, ``b_O``, and for OV the share
of attention the other keys get. The OV check needs a direct path from the head to the logits:
pre-norm decoders without post-sublayer norms.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..adapters import WeightView, adapt
from ..errors import InvalidArgumentError, UnsupportedModelError
from ..space import EmbeddingSpace
from .agreement import bootstrap_ci, partner_positions
from .collect import _layer_range, z_from
from .corpus import DEFAULT_POSITIONS, DEFAULT_SEQ_LEN, windows
from .stream import DEFAULT_BATCH_SIZE, Reducer, stream

MEASURES = ("qk", "ov")
DEFAULT_THRESHOLD = 0.5
# Index of each figure in the per-query summary a batch is reduced to.
_QK_ALIGNED, _QK_BASELINE, _OV_ALIGNED, _OV_BASELINE = range(4)


@dataclass(frozen=True)
class CircuitRow:
    """One head's figures for one measure.

    Attributes:
        layer, head: The head.
        measure: ``"qk"`` (within-row AUC) or ``"ov"`` (Pearson over the vocabulary).
        aligned: Mean over the scored query rows (``qk``) or attention events (``ov``).
        baseline: The same with shuffled tokens.
        difference: ``aligned - baseline``.
        ci_low, ci_high: Percentile bootstrap 95% interval of the difference.
        n: Rows or events scored.
    """

    layer: int
    head: int
    measure: str
    aligned: float
    baseline: float
    difference: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class CircuitLayer:
    """One layer's summary of one measure over its heads (each head weighted equally)."""

    layer: int
    measure: str
    aligned: float
    baseline: float
    difference: float
    heads_above: int
    heads_below: int
    n_heads: int


@dataclass(frozen=True)
class CircuitResult:
    """Per-head QK and OV figures, per-row scores and provenance.

    Attributes:
        rows: One :class:`CircuitRow` per (layer, head, measure) with at least 2 scores (a head
            that never attends to one key above the threshold has no OV row).
        scores: ``(layer, head, measure) -> (aligned [n], baseline [n])``.
        provenance: Model, weights, bases, options, corpus and seeds the figures came from.
    """

    rows: tuple[CircuitRow, ...]
    scores: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = field(repr=False)
    provenance: dict[str, Any]

    def row(self, layer: int, head: int, measure: str) -> CircuitRow:
        """The row of ``layer``, ``head`` and ``measure``."""
        for r in self.rows:
            if (r.layer, r.head, r.measure) == (layer, head, measure):
                return r
        raise InvalidArgumentError(f"no row for layer={layer}, head={head}, {measure=}")

    def layers(self, measure: str) -> list[CircuitLayer]:
        """Per-layer summary of ``measure``: means over heads; heads whose CI is above/below 0."""
        out = []
        for layer in self.provenance["layers"]:
            rows = [r for r in self.rows if r.layer == layer and r.measure == measure]
            if not rows:
                continue
            n = len(rows)
            out.append(
                CircuitLayer(
                    layer=layer,
                    measure=measure,
                    aligned=sum(r.aligned for r in rows) / n,
                    baseline=sum(r.baseline for r in rows) / n,
                    difference=sum(r.difference for r in rows) / n,
                    heads_above=sum(r.ci_low > 0 for r in rows),
                    heads_below=sum(r.ci_high < 0 for r in rows),
                    n_heads=n,
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every per-head and per-layer figure and the provenance (JSON-serialisable)."""
        return {
            "provenance": self.provenance,
            "rows": [asdict(r) for r in self.rows],
            "layers": [asdict(s) for m in self.provenance["measures"] for s in self.layers(m)],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """A Markdown table, one line per layer: ``aligned / baseline diff (heads ↑, ↓)``."""
        measures = self.provenance["measures"]
        titles = {"qk": "QK: attention AUC", "ov": "OV: r with direct logit effect"}
        summaries = {m: {s.layer: s for s in self.layers(m)} for m in measures}
        lines = [
            "| layer | " + " | ".join(titles[m] for m in measures) + " |",
            "|---" * (len(measures) + 1) + "|",
        ]
        for layer in self.provenance["layers"]:
            cells = []
            for m in measures:
                s = summaries[m].get(layer)
                cells.append(
                    "–"
                    if s is None
                    else f"{s.aligned:.3f} / {s.baseline:.3f} {s.difference:+.3f} "
                    f"({s.heads_above}↑ {s.heads_below}↓ of {s.n_heads})"
                )
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """``(a C)(b C)ᵀ`` for ``[d_model, d_vocab]`` matrices, ``C`` centring over the vocabulary."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    sum_a = torch.zeros(a.shape[0], 1, dtype=torch.float64)
    sum_b = torch.zeros(b.shape[0], 1, dtype=torch.float64)
    for start in range(0, a.shape[1], 4096):  # float64 blocks, not a float64 copy of W_U
        a_blk, b_blk = a[:, start : start + 4096].double(), b[:, start : start + 4096].double()
        out += a_blk @ b_blk.T
        sum_a += a_blk.sum(1, keepdim=True)
        sum_b += b_blk.sum(1, keepdim=True)
    return out - sum_a @ sum_b.T / a.shape[1]


def _final_norm_linear(view: WeightView, out: Tensor, final_resid: Tensor) -> Tensor:
    """The final norm's linear part applied to ``out [b, q, ..., d_model]``.

    Statistics (mean, scale) are those of the position's own final residual ``[b, q, d_model]``,
    as the model applies them to the whole residual, so the result summed over every component
    is the normalised residual minus the norm's bias (direct logit attribution).
    """
    extra = out.ndim - final_resid.ndim
    h = final_resid.float()
    if view.spec.norm_type == "LN":
        h = h - h.mean(-1, keepdim=True)
        out = out - out.mean(-1, keepdim=True)
    scale = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + view.spec.eps)
    out = out * scale.view(*scale.shape[:2], *([1] * extra), 1)
    w = view.globals.ln_final_w
    return out if w is None else out * w.float()


@dataclass(frozen=True)
class _LayerTables:
    """Weight readings of one layer's heads for the corpus's tokens (local ids)."""

    q: Tensor  # [H, U, d_head]: e_tᵀ W_Q
    k: Tensor  # [H, U, d_head]: e_tᵀ W_K
    ov: Tensor | None  # [H, U, d_model]: e_tᵀ W_V W_O (the write basis applied later)


def _tables(space: EmbeddingSpace, layer: int, tokens: Tensor, ov: bool) -> _LayerTables:
    lw = space.view.layer(layer)
    n_heads = lw.W_Q.shape[0]

    def factor(w: Tensor, purpose: str) -> Tensor:
        return space.vocab_factor(w, "read", layer, tokens, purpose=purpose)

    q = torch.stack([factor(lw.W_Q_qk[h], "QK vs attention") for h in range(n_heads)])
    k = torch.stack([factor(lw.W_K_qk[h], "QK vs attention") for h in range(n_heads)])
    ov_rows = None
    if ov:
        purpose = "OV vs direct logit effect"
        ov_rows = torch.stack(
            [
                factor(lw.W_V[h], purpose)
                @ space.carry_linear(lw.W_O_written[h], "write", layer, purpose)
                for h in range(n_heads)
            ]
        )
    return _LayerTables(q.float(), k.float(), None if ov_rows is None else ov_rows.float())


def _row_auc(
    scores: Tensor, key_tokens: Tensor, top: Tensor, allowed: Tensor, n_keys: Tensor
) -> Tensor:
    """Per ``[b, h, q]``: fraction of the row's other keys scored below the top key (ties ½).

    A key holding the top key's token ties by definition (the same token pair); comparing
    their float scores instead could split such a tie on rounding.
    """
    s_top = scores.gather(-1, top[..., None])
    same = key_tokens.gather(-1, top)[..., None] == key_tokens[..., None, :]  # [b, h, q, k]
    greater = ((s_top > scores) & ~same & allowed).sum(-1).double()
    ties = (same & allowed).sum(-1).double() - 1  # not the top key itself
    auc = (greater + 0.5 * ties) / (n_keys - 1).clamp(min=1)
    return auc.masked_fill(n_keys < 2, float("nan"))


def _batch_figures(
    view: WeightView,
    layer: int,
    tables: _LayerTables,
    local: tuple[Tensor, Tensor],
    allowed: Tensor,
    pattern: Tensor,
    ov_inputs: tuple[Tensor, Tensor, dict[str, Tensor]] | None,
    threshold: float,
) -> Tensor:
    """``[b, q, H, 4]``: QK AUC and OV Pearson, aligned and shuffled; NaN where not scored.

    Args:
        view: The model's own view (activations are in its coordinates).
        layer: The layer.
        tables: The layer's weight readings for the corpus's tokens.
        local: The batch's token ids as local table indices ``[b, seq]``, real and shuffled.
        allowed: ``[b, q, k]`` the keys each query row compares.
        pattern: ``[b, H, q, k]`` attention.
        ov_inputs: ``(attn_in, final_resid, grams)`` for the OV check, or None.
        threshold: The attention the top key needs for an OV event.
    """
    b, n_heads, n_q, _ = pattern.shape
    dev = pattern.device  # the model's: bring the (CPU) tables and masks to it
    out = torch.full((b, n_q, n_heads, 4), float("nan"), dtype=torch.float64, device=dev)
    pattern = pattern.float()
    allowed = allowed.to(dev)
    local = (local[0].to(dev), local[1].to(dev))
    q_table, k_table = tables.q.to(dev), tables.k.to(dev)

    def most_attended(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keys_h = keys[:, None]  # [b, 1, q, k]
        n_keys = keys.sum(-1)[:, None].expand(b, n_heads, n_q)  # [b, H, q]
        return keys_h, n_keys, pattern.masked_fill(~keys_h, -1.0).argmax(-1)  # top: [b, H, q]

    # QK leaves the query's own position out: its pair is always (t, t) (also with shuffled
    # tokens), and attending to it is largely positional.
    own = torch.eye(n_q, dtype=torch.bool, device=dev)
    allowed_h, n_keys, top = most_attended(allowed & ~own)
    for slot, tok in ((_QK_ALIGNED, local[0]), (_QK_BASELINE, local[1])):
        qv = q_table[:, tok]  # [H, b, seq, d_head]
        kv = k_table[:, tok]
        scores = torch.einsum("hbqd,hbkd->bhqk", qv, kv)
        key_tokens = tok[:, None, :].expand(b, n_heads, -1)  # [b, H, k]
        auc = _row_auc(scores, key_tokens, top, allowed_h, n_keys)
        out[..., slot] = auc.transpose(1, 2)
    if ov_inputs is None or tables.ov is None:
        return out
    attn_in, final_resid, grams = ov_inputs
    z = z_from(view, layer, attn_in, pattern)  # [b, q, H, d_head]
    head_out = torch.einsum("bqhd,hdm->bqhm", z, view.layer(layer).W_O.float())
    dla = _final_norm_linear(view, head_out, final_resid).transpose(1, 2).double()  # [b,H,q,m]
    _, n_keys, top = most_attended(allowed)  # OV: the own position is a key like the others
    top_weight = pattern.gather(-1, top[..., None])[..., 0]
    event = (n_keys >= 1) & (top_weight >= threshold)  # [b, H, q]
    heads = torch.arange(n_heads, device=dev)[None, :, None]
    ov_table = tables.ov.to(dev)
    grams = {name: g.to(dev) for name, g in grams.items()}
    dla_var = ((dla @ grams["uu"]) * dla).sum(-1)  # [b, H, q]
    dla_uw = dla @ grams["uw"]  # [b, H, q, d_model], shared by both token readings
    for slot, tok in ((_OV_ALIGNED, local[0]), (_OV_BASELINE, local[1])):
        key_tok = tok[:, None, :].expand(b, n_heads, -1).gather(-1, top)  # [b, H, q]
        w = ov_table[heads, key_tok].double()  # [b, H, q, d_model]
        cov = (dla_uw * w).sum(-1)
        w_var = ((w @ grams["ww"]) * w).sum(-1)
        r = cov / (dla_var * w_var).clamp(min=1e-300).sqrt()
        out[..., slot] = r.masked_fill(~event, float("nan")).transpose(1, 2)
    return out


def _reducer(
    view: WeightView,
    layer: int,
    tables: _LayerTables,
    local: tuple[Tensor, Tensor],
    allowed: Tensor,
    grams: dict[str, Tensor] | None,
    threshold: float,
) -> Reducer:
    """The reducer of one layer for one batch (OV needs the attention input and final residual)."""
    names = view.hook_names
    pattern = names.at("pattern", layer)
    if grams is None:
        return Reducer(
            (pattern,),
            lambda p: _batch_figures(view, layer, tables, local, allowed, p, None, threshold),
        )
    return Reducer(
        (pattern, names.at("attn_in", layer), names.final_resid),
        lambda p, x, h: _batch_figures(
            view, layer, tables, local, allowed, p, (x, h, grams), threshold
        ),
    )


def _check_ov(view: WeightView) -> None:
    s = view.spec
    if s.is_encoder or s.norm_placement != "pre":
        raise UnsupportedModelError(
            f"{s.model_name} has no direct path from a head to the logits (encoder or post-norm "
            "model); use measures=('qk',)"
        )
    if any(view.layer(layer).ln1_post_w is not None for layer in range(s.n_layers)):
        raise UnsupportedModelError(
            f"{s.model_name} normalises each attention output before adding it (post-sublayer "
            "norm), so a head's direct logit effect is not linear in its output; use "
            "measures=('qk',)"
        )


def circuit_agreement(
    model: Any,
    corpus: Any,
    *,
    layers: Any = None,
    measures: tuple[str, ...] = MEASURES,
    space: EmbeddingSpace | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    positions: int = DEFAULT_POSITIONS,
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> CircuitResult:
    """Compare each head's QK and OV readings with its attention and direct logit effect.

    See the module docstring for the statistics, the baseline and what the readings ignore.

    Args:
        model: A TransformerLens model (its hooks give the activations).
        corpus: A text file path, a list of strings, a token tensor or ``"hf:..."`` (see
            :func:`~tl_embspace.compare.corpus.windows`).
        layers: Layers to score (default all).
        measures: ``"qk"`` and/or ``"ov"``.
        space: Bases and weights the circuits are read with. Default the library's:
            ``EmbeddingSpace(adapt(model))`` (weights as the model holds them, ``e_t`` = the
            input embedding ``W_E``, ``B_w = W_U``). ``EmbeddingSpace.paper(model)`` reads
            ``e_t`` from ``W_U`` as Dar et al. do. Its bases must be linear.
        threshold: The attention the most attended key must get for an OV event.
        positions: Query positions scored (paper's protocol: 1,000).
        seq_len: Tokens per window (BOS included).
        batch_size: Windows per forward pass.
        seed: Seeds the shuffled tokens (``seed``) and the bootstrap (``seed + 1``).
        n_boot: Bootstrap resamples.
        progress: Show a progress bar.

    Returns:
        A :class:`CircuitResult`.

    Raises:
        UnsupportedModelError: ``"ov"`` on a model without a direct path to the logits.
        InvalidArgumentError: Bad options; a space built from another model.
        BasisError: A basis or transport that is not linear.
    """
    if not measures or any(m not in MEASURES for m in measures):
        raise InvalidArgumentError(f"measures must be a non-empty subset of {MEASURES}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidArgumentError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if not 0 < threshold <= 1:
        raise InvalidArgumentError(f"threshold must be in (0, 1], got {threshold}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InvalidArgumentError(f"n_boot must be an int >= 1, got {n_boot!r}")
    view = adapt(model)
    space = space if space is not None else EmbeddingSpace(view)
    spec = view.spec
    if space.view.spec.d_model != spec.d_model or space.view.spec.n_layers != spec.n_layers:
        raise InvalidArgumentError("space= was built from a different model")
    if "ov" in measures:
        _check_ov(view)
        space.write.require_linear("OV vs direct logit effect")
        if space.write.matrix.shape[1] != view.W_U.shape[1]:
            raise InvalidArgumentError(
                "the write basis and W_U have different vocabularies; use write='W_U'"
            )
    space.read.require_linear("QK/OV readings of token pairs")
    layer_list = _layer_range(view, layers)

    win = windows(model, corpus, positions=positions, seq_len=seq_len)
    tokens, scored = win.tokens, win.scored
    n_pos = int(scored.sum())
    shuffled = tokens.clone()
    shuffled[scored] = tokens[scored][partner_positions(n_pos, seed)]
    unique = torch.cat([tokens, shuffled]).unique()
    lookup = torch.full((int(unique.max()) + 1,), -1, dtype=torch.long)
    lookup[unique] = torch.arange(unique.numel())
    tables = {lay: _tables(space, lay, unique, "ov" in measures) for lay in layer_list}
    grams: dict[str, Tensor] = {}
    if "ov" in measures:
        W_U, B_w = view.W_U, space.write.matrix
        grams = {"uu": _gram(W_U, W_U), "uw": _gram(W_U, B_w), "ww": _gram(B_w, B_w)}

    # Keys: scored positions other than the window's first (BOS, or the sink of a model without
    # one); causal models see j <= i only. Query rows: scored positions.
    key_ok = scored.clone()
    key_ok[:, 0] = False
    seq = tokens.shape[1]
    visible = torch.ones(seq, seq, dtype=torch.bool)
    if not spec.is_encoder:
        visible = visible.tril()
    parts: list[Tensor] = []
    starts = range(0, tokens.shape[0], batch_size)
    for start in tqdm(starts, desc="circuits", disable=not progress, leave=False):
        sl = slice(start, start + batch_size)
        allowed = scored[sl][:, :, None] & key_ok[sl][:, None, :] & visible
        local = (lookup[tokens[sl]], lookup[shuffled[sl]])
        reducers = {
            str(lay): _reducer(
                view,
                lay,
                tables[lay],
                local,
                allowed,
                grams if "ov" in measures else None,
                threshold,
            )
            for lay in layer_list
        }
        got = stream(model, tokens[sl], reducers, batch_size=batch_size, progress=False)
        parts.append(torch.stack([got[str(lay)] for lay in layer_list]))  # [L, b, q, H, 4]
    figures = torch.cat(parts, dim=1)[:, scored]  # [L, P, H, 4]

    rows: list[CircuitRow] = []
    scores: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}
    slots = {"qk": (_QK_ALIGNED, _QK_BASELINE), "ov": (_OV_ALIGNED, _OV_BASELINE)}
    for li, lay in enumerate(layer_list):
        for h in range(figures.shape[2]):
            for m in measures:
                aligned, baseline = figures[li, :, h, slots[m][0]], figures[li, :, h, slots[m][1]]
                keep = ~aligned.isnan()
                aligned, baseline = aligned[keep].float(), baseline[keep].float()
                if aligned.numel() < 2:
                    continue
                diff = aligned - baseline
                lo, hi = bootstrap_ci(diff, n_boot, seed + 1)
                rows.append(
                    CircuitRow(
                        layer=lay,
                        head=h,
                        measure=m,
                        aligned=float(aligned.mean()),
                        baseline=float(baseline.mean()),
                        difference=float(diff.mean()),
                        ci_low=lo,
                        ci_high=hi,
                        n=int(aligned.numel()),
                    )
                )
                scores[(lay, h, m)] = (aligned, baseline)
    provenance = {
        "method": "per head: QK reading vs observed attention (within-row AUC of the most "
        "attended key); OV reading of the attended token vs the head's direct logit effect "
        "(Pearson over the vocabulary); baseline: tokens of random other positions",
        "model": spec.model_name,
        "backend": spec.backend,
        "tl_version": spec.tl_version,
        "weights_read": space.view.weights,
        "weights_run": view.weights,
        **space.describe(),
        "qk_score": "e_q^T W_Q W_K^T e_k, e_t = read basis column of token t",
        "ov_reading": "e_t^T W_V W_O B_w (B_w = write basis)",
        "ov_measured": "head output z_h W_O[h] through the final norm's linear part with the "
        "position's own statistics, then W_U (no b_U)",
        "keys": "scored positions j <= i (decoder) except the window's first; QK also "
        "leaves out j = i",
        "threshold": threshold,
        "baseline": "each scored position's token replaced by the token of a random other "
        "scored position; attention and head outputs unchanged",
        "ignored_by_the_readings": "positions (rotary / absolute embeddings), the residual's "
        "context beyond the token embedding, the norm before attention (scale, centring; its "
        "gain too with raw weights), b_Q/b_K/b_V/b_O, for OV the other keys' attention",
        "seed": seed,
        "n_boot": n_boot,
        "ci": "percentile bootstrap 95% of the mean difference, rows/events resampled",
        "corpus": win.source,
        "n_positions": n_pos,
        "layers": layer_list,
        "measures": list(measures),
    }
    return CircuitResult(tuple(rows), scores, provenance)


__all__ = [
    "DEFAULT_THRESHOLD",
    "MEASURES",
    "CircuitLayer",
    "CircuitResult",
    "CircuitRow",
    "circuit_agreement",
]
