"""The paper's parameters-vs-activations agreement protocol (Dar et al. 2023, §5), with baselines.

At each scored position ``i`` of a corpus and each layer ``l``:

1. take the ``n`` most active FF neurons (largest coefficient: the value ``W_out[j]`` is
   multiplied by, i.e. post-activation times the ``W_in`` branch for gated MLPs) and the ``n``
   most active attention sub-heads (largest coordinates of the concatenated per-head ``z``);
2. project their parameter vectors into the vocabulary (FF keys = columns of ``W_in``, FF gates
   = columns of ``W_gate``, FF values = rows of ``W_out``; sub-heads: column ``j`` of
   ``W_V[h]``, row ``j`` of ``W_O[h]``) and let ``A`` be the union of their top-``k`` tokens;
3. let ``B`` be the top-``k`` tokens of the logit lens of the residual at position ``i``: the
   same layer's output (``reference="same"``) or the final layer's (``"final"``);
4. score ``|A ∩ B| / |B|``.

With a vocabulary (``vocab=``, see :mod:`tl_embspace.vocab`), both top-``k`` lists are taken
over the tokens its filter allows only, and the parameters are projected with its (possibly
normalised) bases; ``B`` stays the model's own logits (never normalised), restricted to the same
tokens, so the reference the parameters are compared with is the model's and a normalisation
cannot make the two sides agree by construction.

The *baseline* scores the parameters selected at a random **other** position ``π(i) ≠ i``
(seeded) against ``B`` of position ``i``. Per layer, kind and reference the result holds the
mean aligned and baseline scores over positions, their difference, and a percentile bootstrap
95% interval of the difference (positions resampled with replacement, seeded).

Scores are computed from per-position summaries kept while streaming (the top-``n`` ids and the
top-``k`` lens tokens), so memory does not grow with the vocabulary; parameter vectors are
projected only for the neurons and sub-heads some position selected.
"""

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..adapters import WeightView, adapt
from ..errors import InvalidArgumentError, UnsupportedModelError
from ..space import Basis, EmbeddingSpace, make_basis
from ..vocab import VocabularyChoice, choose_vocabulary
from .collect import _layer_range, ff_reducer, residual_reducer, z_reducer
from .corpus import DEFAULT_POSITIONS, DEFAULT_SEQ_LEN, windows
from .lens import top_tokens
from .stream import DEFAULT_BATCH_SIZE, Reducer, stream

# kind -> (which activations select it, side of the residual it is on)
KINDS: dict[str, tuple[str, str]] = {
    "ff_key": ("ff", "read"),
    "ff_gate": ("ff", "read"),
    "ff_value": ("ff", "write"),
    "v": ("head", "read"),
    "o": ("head", "write"),
}
REFERENCES = ("same", "final")
VARIANTS = ("raw", "centered")


@dataclass(frozen=True)
class AgreementRow:
    """One layer's figures for one parameter kind against one reference residual."""

    layer: int
    kind: str
    reference: str
    variant: str
    aligned: float
    baseline: float
    difference: float
    ci_low: float
    ci_high: float
    n_positions: int


@dataclass(frozen=True)
class AgreementResult:
    """Per-layer aligned / baseline / difference figures, per-position scores and provenance.

    Attributes:
        rows: One :class:`AgreementRow` per (layer, kind, reference).
        scores: ``(layer, kind, reference, variant) -> (aligned [P], baseline [P])``.
        provenance: Model, weights, bases, options, corpus and seeds the figures came from.
    """

    rows: tuple[AgreementRow, ...]
    scores: dict[tuple[int, str, str, str], tuple[Tensor, Tensor]] = field(repr=False)
    provenance: dict[str, Any]

    def row(
        self, layer: int, kind: str, reference: str = "same", variant: str = "raw"
    ) -> AgreementRow:
        """The row of ``layer``, ``kind``, ``reference`` and ``variant``."""
        for r in self.rows:
            if (r.layer, r.kind, r.reference, r.variant) == (layer, kind, reference, variant):
                return r
        raise InvalidArgumentError(
            f"no row for layer={layer}, kind={kind!r}, {reference=}, {variant=}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Every per-layer figure and the provenance (JSON-serialisable)."""
        return {"provenance": self.provenance, "rows": [asdict(r) for r in self.rows]}

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows])

    def table(
        self, reference: str = "same", kinds: Sequence[str] | None = None, variant: str = "raw"
    ) -> str:
        """A Markdown table: one line per layer, ``aligned / baseline (diff [95% CI])`` per kind."""
        kinds = list(kinds or dict.fromkeys(r.kind for r in self.rows))
        layers = sorted({r.layer for r in self.rows})
        head = "| layer | " + " | ".join(kinds) + " |"
        lines = [head, "|---" * (len(kinds) + 1) + "|"]
        for layer in layers:
            cells = []
            for kind in kinds:
                r = self.row(layer, kind, reference, variant)
                cells.append(
                    f"{r.aligned:.3f} / {r.baseline:.3f} "
                    f"({r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}])"
                )
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def partner_positions(n_positions: int, seed: int) -> Tensor:
    """The baseline pairing: for each position ``i`` a uniformly random ``π(i) ≠ i`` (seeded)."""
    if n_positions < 2:
        raise InvalidArgumentError("the baseline needs at least 2 positions")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_positions, (n_positions,), generator=g)
    return (torch.arange(n_positions) + shift) % n_positions


def overlap(a_ids: Tensor, b_ids: Tensor, block: int = 1024) -> Tensor:
    """``|A_i ∩ B_i| / |B_i|`` per row: ``a_ids [P, m]`` (may repeat), ``b_ids [P, k]`` distinct."""
    out = []
    for s in range(0, b_ids.shape[0], block):
        a, b = a_ids[s : s + block], b_ids[s : s + block]
        out.append((b[:, :, None] == a[:, None, :]).any(-1).float().mean(-1))
    return torch.cat(out)


def bootstrap_ci(diff: Tensor, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of ``diff.mean()`` (positions resampled, seeded)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, diff.shape[0], (n_boot, diff.shape[0]), generator=g)
    means = diff.double()[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


def parameter_vectors(view: WeightView, layer: int, kind: str) -> Tensor:
    """``[m, d_model]`` vectors of ``kind`` in ``layer``; sub-head ``h * d_head + j``."""
    lw = view.layer(layer)
    if kind == "ff_key" or kind == "ff_gate":
        w = lw.W_in if kind == "ff_key" else lw.W_gate
        if w is None:
            raise UnsupportedModelError(f"layer {layer} has no {kind} weights")
        return w.T
    if kind == "ff_value":
        w = lw.W_out_written
        if w is None:
            raise UnsupportedModelError(f"layer {layer} has no dense MLP")
        return w
    if kind == "v":
        return lw.W_V.permute(0, 2, 1).reshape(-1, lw.W_V.shape[1])
    if kind == "o":
        return lw.W_O_written.reshape(-1, lw.W_O.shape[2])
    raise InvalidArgumentError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")


def _restricted(bias: Tensor | None, allowed: Tensor | None, matrix: Tensor) -> Tensor | None:
    """``bias`` with ``-inf`` on the tokens ``allowed`` leaves out: top-k over allowed tokens.

    On ``matrix``'s device (``[d_model, d_vocab]``, the basis the bias is added to).
    """
    if allowed is None:
        return bias
    zero = torch.zeros(matrix.shape[1], device=matrix.device)
    out = zero if bias is None else bias.detach().float().to(matrix.device).clone()
    return out.masked_fill_(~allowed.to(matrix.device), float("-inf"))


def _project_topk(
    space: EmbeddingSpace,
    layer: int,
    kind: str,
    ids: Tensor,
    k: int,
    centered: bool,
    allowed: Tensor | None = None,
) -> Tensor:
    """Top-``k`` token ids ``[len(ids), k]`` of the selected parameter vectors of ``kind``.

    ``centered``: score ``(x_i - mean_j x_j) @ B`` with the mean over *every* vector of the kind
    in the layer (after the transport and the basis's ``pre``), so what all of them share (e.g.
    a common high-norm direction) does not decide the top tokens; the basis bias cancels.
    ``allowed``: ``[d_vocab]`` bool, rank only these tokens (None: every token).
    """
    side = KINDS[kind][1]
    basis = space.basis(side)
    if not centered:
        vectors = parameter_vectors(space.view, layer, kind)[ids].float()
        x = basis.prepare(space.carry(vectors, side, layer))
        return top_tokens(x, basis.matrix, k, _restricted(basis.bias, allowed, basis.matrix))[0]
    every = basis.prepare(
        space.carry(parameter_vectors(space.view, layer, kind).float(), side, layer)
    )
    return top_tokens(
        every[ids] - every.mean(0), basis.matrix, k, _restricted(None, allowed, basis.matrix)
    )[0]


def _mean_prepared(
    model: Any,
    tokens: Tensor,
    scored: Tensor,
    reducers: dict[str, Reducer],
    batch_size: int,
    progress: bool,
) -> dict[str, Tensor]:
    """Mean over the scored positions of each reducer's ``[batch, pos, d]`` output (streamed)."""
    sums: dict[str, Tensor] = {}
    starts = range(0, tokens.shape[0], batch_size)
    for start in tqdm(starts, desc="corpus means", disable=not progress, leave=False):
        part = stream(
            model,
            tokens[start : start + batch_size],
            reducers,
            batch_size=batch_size,
            progress=False,
        )
        mask = scored[start : start + batch_size]
        for name, x in part.items():
            total = x[mask].double().sum(0)
            sums[name] = sums[name] + total if name in sums else total
    n_scored = int(scored.sum())
    return {name: (total / n_scored).float() for name, total in sums.items()}


def _prepared_fn(basis: Basis):
    """``[batch, pos, d] -> [batch, pos, d]``: the vectors the basis's matrix is applied to."""
    return lambda x: basis.prepare(x.flatten(0, 1)).view(*x.shape[:2], -1)


def _lens_ids_fn(basis: Basis, k: int, allowed: Tensor | None, mean: Tensor | None = None):
    """``[batch, pos, d] -> [batch, pos, k, 1]``: top-k ids of the lens over the allowed tokens.

    The lens is ``prepare(x) @ B + b``; with ``mean`` it is ``(prepare(x) - mean) @ B``, the
    lens minus its corpus mean (the bias cancels).
    """
    bias = _restricted(basis.bias if mean is None else None, allowed, basis.matrix)

    def fn(x: Tensor) -> Tensor:
        b, p, d = x.shape
        flat = basis.prepare(x.reshape(b * p, d))
        if mean is not None:
            flat = flat - mean.to(flat.device)
        shift = None if bias is None else bias.to(flat.device)
        ids, _ = top_tokens(flat, basis.matrix.to(flat.device), k, shift)
        return ids.view(b, p, k, 1)

    return fn


def _vocabulary(
    model: Any, space: EmbeddingSpace, vocab: "str | VocabularyChoice", k: int
) -> tuple[VocabularyChoice, Tensor | None]:
    """The vocabulary choice of a run and its ``[d_vocab]`` allowed mask (None: every token)."""
    if isinstance(vocab, str):
        choice = choose_vocabulary(space, vocab)
    elif isinstance(vocab, VocabularyChoice):
        choice = vocab
    else:
        raise InvalidArgumentError(
            f"vocab must be 'raw', 'hygiene' or a vocab.VocabularyChoice, got {vocab!r}"
        )
    if choice.token_filter is None:
        return choice, None
    d_vocab = choice.space.write.matrix.shape[1]
    tokenizer = choice.space.tokenizer or getattr(model, "tokenizer", None)
    allowed = choice.token_filter.mask(tokenizer, d_vocab)
    if allowed is not None and int(allowed.sum()) < k:
        raise InvalidArgumentError(
            f"the vocabulary allows {int(allowed.sum())} tokens, fewer than k={k}; lower k"
        )
    return choice, allowed


def _check_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")


def agreement(
    model: Any,
    corpus: Any,
    *,
    n: int = 5,
    k: int = 50,
    layers: Any = None,
    kinds: Sequence[str] | None = None,
    references: Sequence[str] = REFERENCES,
    space: EmbeddingSpace | None = None,
    positions: int = DEFAULT_POSITIONS,
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    n_boot: int = 1000,
    lens_basis: str = "readout",
    variants: Sequence[str] = ("raw",),
    vocab: "str | VocabularyChoice" = "raw",
    progress: bool = True,
) -> AgreementResult:
    """Run the agreement protocol (see the module docstring) over a corpus.

    Args:
        model: A TransformerLens model (its hooks give the activations).
        corpus: A text file path, a list of strings, a token tensor or ``"hf:..."`` (see
            :func:`~tl_embspace.compare.corpus.windows`).
        n: Most active neurons / sub-heads per position (paper: 5).
        k: Tokens per projected vector and per lens reading (paper: 50).
        layers: Layers to score (default all).
        kinds: Subset of ``"ff_key"``, ``"ff_gate"`` (gated MLPs), ``"ff_value"``, ``"v"``,
            ``"o"``; default all the model has.
        references: ``"same"`` (the layer's own output ``resid_post``) and/or ``"final"``.
        space: Bases the parameters are projected with. Default the paper's:
            ``EmbeddingSpace.paper(adapt(model))``, ``E = W_U`` on both sides, on the weights
            as the model holds them (raw for an unprocessed model). Pass
            ``EmbeddingSpace(adapt(model).folded())`` for folded weights and the library's
            default bases.
        positions: Positions scored (paper: 1,000).
        seq_len: Tokens per window (BOS included).
        batch_size: Windows per forward pass.
        seed: Seeds the baseline pairing (``seed``) and the bootstrap (``seed + 1``).
        n_boot: Bootstrap resamples.
        lens_basis: How residuals are read: ``"readout"`` (logit lens, the paper's
            ``ln_f(h) E``) or another basis name (``"W_E"`` for an encoder without a trained
            unembedding: then the residual is read without the final norm).
        variants: ``"raw"`` (the paper's scores, as specified) and/or ``"centered"``: the same
            with what every position shares removed, on both sides. ``B`` is the top-k of the
            lens *minus its corpus mean* (the normalised residual minus its mean over the
            scored positions, then ``W_U``), and the parameter tokens are the top-k of each
            vector *minus its layer's mean* over all vectors of that kind. Models whose lens
            is dominated by tokens that top almost every position (and parameters dominated
            by a few high-norm tokens) score a high raw baseline; the centred variant shows
            whether the per-position part agrees. It costs one more pass over the corpus.
        vocab: ``"raw"`` (the paper's: every token, the bases of ``space``), ``"hygiene"``
            (``vocab.choose_vocabulary(space, "hygiene")``: the hygiene mask, scores
            standardised over random directions) or a :class:`~tl_embspace.vocab.
            VocabularyChoice` (then its space is the one projected; leave ``space`` unset).
            ``A`` and ``B`` are the top-``k`` over the tokens its filter allows; the parameters
            are projected with its space's bases; ``B`` keeps the model's own logits.
        progress: Show progress bars.

    Returns:
        An :class:`AgreementResult`.
    """
    _check_int("n", n)
    _check_int("k", k)
    _check_int("n_boot", n_boot)
    for ref in references:
        if ref not in REFERENCES:
            raise InvalidArgumentError(f"reference {ref!r}; expected 'same' and/or 'final'")
    for variant in variants:
        if variant not in VARIANTS:
            raise InvalidArgumentError(f"variant {variant!r}; expected 'raw' and/or 'centered'")
    if not references or not variants:
        raise InvalidArgumentError("references and variants must not be empty")
    view = adapt(model)
    if isinstance(vocab, VocabularyChoice):
        if space is not None and space is not vocab.space:
            raise InvalidArgumentError(
                "pass space= or a VocabularyChoice, not both: the choice's space is the one "
                "projected (build it with vocab.choose_vocabulary(space, ...))"
            )
        space = vocab.space
    space = space if space is not None else EmbeddingSpace.paper(view)
    if (
        space.view.spec.d_model != view.spec.d_model
        or space.view.spec.n_layers != view.spec.n_layers
    ):
        raise InvalidArgumentError("space= was built from a different model")
    spec = view.spec
    layer_list = _layer_range(view, layers)
    if kinds is None:
        kinds = [kd for kd in KINDS if kd != "ff_gate" or spec.gated_mlp]
    for kd in kinds:
        if kd not in KINDS:
            raise InvalidArgumentError(f"unknown kind {kd!r}; expected one of {list(KINDS)}")
        if kd == "ff_gate" and not spec.gated_mlp:
            raise UnsupportedModelError(f"{spec.model_name} has no gated MLP: no 'ff_gate'")
    if n > min(spec.d_mlp, spec.n_heads * spec.d_head):
        raise InvalidArgumentError(f"n={n} exceeds the number of neurons or sub-heads")
    if "final" in references and spec.is_encoder:
        raise UnsupportedModelError(
            "the final-layer reference reads the last residual through the MLM head; for an "
            "encoder use references=('same',)"
        )

    choice, allowed = _vocabulary(model, space, vocab, k)
    space = choice.space
    win = windows(model, corpus, positions=positions, seq_len=seq_len)
    lens = make_basis(view, lens_basis)
    if allowed is not None and allowed.numel() != lens.matrix.shape[1]:
        raise InvalidArgumentError(
            f"the vocabulary's mask covers {allowed.numel()} tokens, the lens "
            f"{lens.matrix.shape[1]}; build both from this model"
        )

    def top_n(x: Tensor) -> Tensor:
        return x.flatten(2).topk(n, dim=-1).indices

    def lens_reducer(name: str, fn: Any) -> Reducer:
        if name == "final":
            return Reducer((view.hook_names.final_resid,), fn)
        return residual_reducer(view, "resid_post", int(name[len("lens") :]), fn)

    lens_names = [f"lens{layer}" for layer in layer_list] if "same" in references else []
    lens_names += ["final"] if "final" in references else []
    means: dict[str, Tensor] = {}
    if "centered" in variants:
        means = _mean_prepared(
            model,
            win.tokens,
            win.scored,
            {name: lens_reducer(name, _prepared_fn(lens)) for name in lens_names},
            batch_size,
            progress,
        )
    need_ff = any(KINDS[kd][0] == "ff" for kd in kinds)
    need_head = any(KINDS[kd][0] == "head" for kd in kinds)
    reducers: dict[str, Reducer] = {}
    for name in lens_names:
        if "raw" in variants:
            reducers[f"{name}:raw"] = lens_reducer(name, _lens_ids_fn(lens, k, allowed))
        if "centered" in variants:
            reducers[f"{name}:centered"] = lens_reducer(
                name, _lens_ids_fn(lens, k, allowed, means[name])
            )
    for layer in layer_list:
        if need_ff:
            reducers[f"ff{layer}"] = ff_reducer(view, layer, top_n)
        if need_head:
            reducers[f"head{layer}"] = z_reducer(view, layer, top_n)
    out = stream(
        model, win.tokens, reducers, batch_size=batch_size, progress=progress, desc="agreement"
    )
    scored = win.scored
    picked = {name: t[scored] for name, t in out.items()}  # [P, ...]
    n_pos = int(scored.sum())
    partner = partner_positions(n_pos, seed)

    rows: list[AgreementRow] = []
    scores: dict[tuple[int, str, str, str], tuple[Tensor, Tensor]] = {}
    combos = list(itertools.product(layer_list, kinds, variants))
    for layer, kd, variant in tqdm(combos, desc="projecting parameters", disable=not progress):
        sel = picked[f"{KINDS[kd][0]}{layer}"]  # [P, n]
        unique, inverse = sel.unique(return_inverse=True)
        table = _project_topk(space, layer, kd, unique, k, variant == "centered", allowed)
        a_ids = table[inverse].reshape(n_pos, n * k)
        for ref in references:
            lens_name = f"lens{layer}" if ref == "same" else "final"
            b_ids = picked[f"{lens_name}:{variant}"][..., 0].long()
            aligned = overlap(a_ids, b_ids)
            baseline = overlap(a_ids[partner], b_ids)
            diff = aligned - baseline
            lo, hi = bootstrap_ci(diff, n_boot, seed + 1)
            rows.append(
                AgreementRow(
                    layer=layer,
                    kind=kd,
                    reference=ref,
                    variant=variant,
                    aligned=float(aligned.mean()),
                    baseline=float(baseline.mean()),
                    difference=float(diff.mean()),
                    ci_low=lo,
                    ci_high=hi,
                    n_positions=n_pos,
                )
            )
            scores[(layer, kd, ref, variant)] = (aligned, baseline)
    provenance = {
        "method": "Dar et al. 2023 §5: |A ∩ B| / |B|, baseline = parameters of a random other "
        "position",
        "model": spec.model_name,
        "backend": spec.backend,
        "tl_version": spec.tl_version,
        "weights_projected": space.view.weights,
        "weights_run": view.weights,
        **space.describe(),
        "lens": lens.name,
        "lens_site_same": "resid_post of the layer",
        "lens_site_final": view.hook_names.final_resid,
        "ff_selection": "largest coefficient (post-activation x W_in branch for gated MLPs)",
        "head_selection": "largest coordinate of the concatenated per-head z",
        "parameter_tokens": "top-k by projection (largest scores)",
        "n": n,
        "k": k,
        "seed": seed,
        "n_boot": n_boot,
        "ci": "percentile bootstrap 95% of the mean difference, positions resampled",
        "corpus": win.source,
        "n_positions": n_pos,
        "layers": layer_list,
        "kinds": list(kinds),
        "references": list(references),
        "variants": list(variants),
        "centered": "lens minus its mean over the scored positions; each parameter vector "
        "minus its layer's mean over all vectors of its kind",
        "vocab": choice.record,
        "vocab_tokens": "every token"
        if allowed is None
        else f"A and B ranked over the {int(allowed.sum())} tokens the filter allows; B from "
        "the model's own (unnormalised) logits",
    }
    return AgreementResult(tuple(rows), scores, provenance)


__all__ = [
    "KINDS",
    "REFERENCES",
    "VARIANTS",
    "AgreementResult",
    "AgreementRow",
    "agreement",
    "bootstrap_ci",
    "overlap",
    "parameter_vectors",
    "partner_positions",
]
