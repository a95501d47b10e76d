"""Hook-verified checks: does a weight view reproduce the model's own forward pass?

``verify(model)`` adapts the model and, on one seeded random token sequence, records with
TransformerLens hooks (names from ``view.hook_names``, all removed when the run ends) each
layer's normalised attention input, attention pattern and attention output, the normalised MLP
input and MLP output, the final residual and the logits. It then rebuilds, in float32, from the
VIEW's weights only:

* ``attention``: ``sum_h pattern_h @ (x W_V[h] + b_V[h]) @ W_O[h] + b_O`` (values clamped
  to ``[-c, c]`` where ``spec.qkv_clip`` says the model does) with ``x`` the
  sublayer's input (the hooked tensor, times the view's own norm weight plus bias where
  ``names.norm_for`` says the hook fires before them, so norm gains are checked too; query head
  ``h`` reads key/value head ``h // group`` through the view's expanded ``W_V``); where the
  view has post-sublayer norm gains, the rebuilt output RMS-normalised and times the gain
  must also equal what the residual gains around the sublayer (``resid_mid - resid_pre``, and
  ``resid_post - resid_mid`` for the MLP);
* ``qk`` (where the adapter names query/key hooks, ``HookNames.q``/``.k``: the projections
  before any q/k norm and rotary): ``x W_Q + b_Q`` and ``x W_K + b_K`` (grouped heads); with
  q/k norms whose hooks the adapter names (the bridge does; ``HookedTransformer`` has no hook
  after its q-norm's weight), also each norm's hooked output against its hooked input
  normalised over the last axis times the view's ``q_norm_w``/``k_norm_w`` (per head or
  whole projection);
* ``mlp``: ``act(x W_gate) * (x W_in + b_in)`` (gated) or ``act(x W_in + b_in)``, then
  ``@ W_out + b_out``, with the activation named by ``view.spec.act_fn``; for a sparse MoE
  layer whose view exposes ``experts`` and ``W_router``, the same per expert, mixed by the
  router's top-k softmax weights (plus a shared expert where there is one);
* ``embedding``: the residual entering block 0 rebuilt from ``W_E[tokens] * spec.embed_scale``
  plus ``W_pos[p]`` at position ``p`` (so ``W_pos[p]`` must be the row the model adds at
  position ``p``, whatever offset its table has) plus the token-type row 0 where the view has
  one, through the embedding norm (``embed_ln_w``/``embed_ln_b``) where the model has one;
* ``logit_lens``: ``view.logits(final_resid)`` against the model's logits;
* ``folded_eq_tl``: ``adapt(model).folded()`` against ``adapt`` of a deep copy that
  TransformerLens processed itself (``enable_compatibility_mode`` / ``process_weights_``), and
  the view of that processed copy against the copy's own forward pass (the three checks above).

Each check ends as a ``Status``: pass, fail (with the deviation), refused (the library raised
``UnsupportedModelError``, with its message) or n/a (with the reason).
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import tl_embspace
from tl_embspace.adapters.weights import ATTENTION_FIELDS
from tl_embspace.errors import EmbSpaceError

CHECKS = ("adapts", "attention", "qk", "mlp", "embedding", "logit_lens", "folded_eq_tl")
RTOL = 1e-4  # max |got - expected| allowed, relative to max(1, max |expected|)
SEQ_LEN = 12


@dataclass(frozen=True)
class Status:
    """Outcome of one check: ``kind`` is "pass", "fail", "refused" or "n/a"."""

    kind: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True unless the check failed: a refusal is an answer, a failure is a defect."""
        return self.kind != "fail"

    def cell(self) -> str:
        """The table cell: ✓, ✗ reason, refused: reason, n/a: reason."""
        reason = self.reason.replace("|", "\\|").replace("\n", " ")
        if self.kind == "pass":
            return "✓" + (f" ({reason})" if reason else "")
        if self.kind == "fail":
            return f"✗ {reason}"
        return f"{self.kind}: {reason}"

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "reason": self.reason}


def passed(note: str = "") -> Status:
    """A passing check, with an optional note (e.g. which layers were refused)."""
    return Status("pass", note)


def failed(reason: str) -> Status:
    """A failing check: the weights do not reproduce the forward pass, or a bare error."""
    return Status("fail", reason)


def refused(reason: str) -> Status:
    """The library refused, with UnsupportedModelError (an acceptable answer)."""
    return Status("refused", reason)


def not_applicable(reason: str) -> Status:
    """The check does not apply to this model."""
    return Status("n/a", reason)


def _short(e: BaseException, limit: int = 160) -> str:
    msg = " ".join(str(e).split())
    msg = msg if len(msg) <= limit else msg[: limit - 1] + "…"
    return f"{type(e).__name__}: {msg}"


def _refusal(e: BaseException, limit: int = 160) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def deviation(got: Tensor, expected: Tensor) -> float:
    """Max |got - expected| / max(1, max |expected|), in float64 to keep it honest."""
    got, expected = got.double(), expected.double()
    if got.shape != expected.shape and got.numel() == expected.numel():
        # Some families run their MLP on flattened [batch * pos, d] rows (OPT).
        expected = expected.reshape(got.shape)
    if got.shape != expected.shape:
        return float("inf")
    scale = max(1.0, expected.abs().max().item())
    return (got - expected).abs().max().item() / scale


# -- hook names ------------------------------------------------------------------------------
def hook_names(view: Any) -> Any:
    """The adapter's hook names (``view.hook_names``): the harness never invents its own."""
    names = getattr(view, "hook_names", None)
    if names is None:
        raise AttributeError(
            f"{type(view).__name__} has no hook_names: the adapter must declare which hooks "
            "carry its sublayers' inputs and outputs"
        )
    return names


def _at(names: Any, field: str, layer: int | None = None) -> str | None:
    """The hook name of ``field`` (at ``layer``), or None where the model has no such hook."""
    try:
        return names.at(field, layer)
    except EmbSpaceError:
        return None


# -- the checks --------------------------------------------------------------------------------
def _tokens(view: Any, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    high = min(view.spec.d_vocab, 128)
    return torch.randint(4, high, (1, SEQ_LEN), generator=g)


def _record(model: Any, tokens: Tensor, wanted: set[Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and the wanted hook values; run_with_cache removes its hooks when it returns.

    A hook point the model has but its forward pass never reaches (GPT-1's last
    ``hook_resid_post``) is left out, as a missing one is: checks needing it skip that layer.
    """
    present = wanted & set(model.hook_dict)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in present)
    return logits, {k: cache[k].detach().float() for k in present if k in cache}


def _affine(x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    if w is not None:
        x = x * w.float()
    if b is not None:
        x = x + b.float()
    return x


def _normed(names: Any, field: str, lw: Any, x: Tensor) -> Tensor:
    """The sublayer's input from its hook and the view's own norm weights.

    ``names.norm_for(field)`` is "ln1"/"ln2" where the hook fires before that norm's weight and
    bias (they are applied here, so they are checked too), None where it is the input as is.
    """
    norm = names.norm_for(field)
    if norm is None:
        return x
    return _affine(x, getattr(lw, f"{norm}_w"), getattr(lw, f"{norm}_b"))


def _attention(view: Any, lw: Any, cache: dict[str, Tensor], names: Any, layer: int) -> str:
    """'' when the view's OV weights rebuild the hooked attention output, else the deviation."""
    x = _normed(names, "attn_in", lw, cache[_at(names, "attn_in", layer)])
    pattern = cache[_at(names, "pattern", layer)]
    v = torch.einsum("bpd,hde->bphe", x, lw.W_V.float())
    if lw.b_V is not None:
        v = v + lw.b_V.float()
    clip = getattr(view.spec, "qkv_clip", None)
    if clip is not None:  # OLMo's clip_qkv: the model clamps values after the projection
        v = v.clamp(-clip, clip)
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    out = torch.einsum("bqhe,hem->bqm", z, lw.W_O.float())
    if lw.b_O is not None:
        out = out + lw.b_O.float()
    dev = deviation(out, cache[_at(names, "attn_out", layer)])
    if dev > RTOL:
        return f"layer {layer}: attention output off by {dev:.2e}"
    return _post_norm(view, lw.ln1_post_w, out, cache, names, ("resid_pre", "resid_mid"), layer)


def _qk(view: Any, lw: Any, cache: dict[str, Tensor], names: Any, layer: int) -> str:
    """'' when x W_Q + b_Q and x W_K + b_K (grouped) match the hooked queries and keys."""
    x = _normed(names, "attn_in", lw, cache[_at(names, "attn_in", layer)])
    problems = []
    sides = (("q", "queries", lw.W_Q, lw.b_Q), ("k", "keys", lw.W_K_grouped, lw.b_K_grouped))
    for which, label, w, b in sides:
        got = torch.einsum("bpd,hde->bphe", x, w.float())
        if b is not None:
            got = got + b.float()
        dev = deviation(got, cache[_at(names, which, layer)])
        if dev > RTOL:
            problems.append(f"layer {layer}: {label} off by {dev:.2e}")
    if view.spec.qk_norm and getattr(names, "q_norm_in", None):
        problems += [_qk_norm(view, lw, cache, names, layer, which) for which in ("q", "k")]
    return "; ".join(p for p in problems if p)


def _qk_norm(
    view: Any, lw: Any, cache: dict[str, Tensor], names: Any, layer: int, which: str
) -> str:
    """'' when the hooked q (k) norm's output is its input normalised times the view's gain.

    The adapter names the norm's input and output hooks (``HookNames.q_norm_in`` ...), with
    the normalised axis last: ``d_head`` for per-head norms, all heads at once where the whole
    projection is normalised (``spec.qk_norm_scope``), where the view's ``[heads, d_head]``
    gain is flattened in head order. So the gains, and the scope, are checked against the
    forward pass.
    """
    hooks = (_at(names, f"{which}_norm_in", layer), _at(names, f"{which}_norm_out", layer))
    if any(h not in cache for h in hooks):
        return f"layer {layer}: {which}-norm gain unchecked: its hooks {hooks} did not fire"
    x = cache[hooks[0]]
    got = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + view.spec.eps)
    gain = getattr(lw, f"{which}_norm_w")
    if gain is not None:
        got = got * gain.float().reshape(-1)
    dev = deviation(got, cache[hooks[1]])
    return "" if dev <= RTOL else f"layer {layer}: {which}-norm output off by {dev:.2e}"


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    from transformers.activations import ACT2FN

    aliases = {"swish": "silu", "gelu_tanh": "gelu_pytorch_tanh"}
    name = aliases.get(name, name)
    if name not in ACT2FN:
        raise KeyError(f"unknown activation {name!r}")
    return ACT2FN[name]


def _dense_mlp(view: Any, w: Any, x: Tensor) -> Tensor:
    """``act(x W_gate) * (x W_in + b_in)`` or ``act(x W_in + b_in)``, then ``W_out``, ``b_out``."""
    act = _activation(view.spec.act_fn)
    pre = x @ w.W_in.float()
    if w.b_in is not None:
        pre = pre + w.b_in.float()
    if w.W_gate is not None:
        gate = x @ w.W_gate.float()
        # A folded LayerNorm bias lands in a gate bias (StableLM); views without one have None.
        b_gate = getattr(w, "b_gate", None)
        post = act(gate if b_gate is None else gate + b_gate.float()) * pre
    else:
        post = act(pre)
    out = post @ w.W_out.float()
    return out if w.b_out is None else out + w.b_out.float()


def _moe(view: Any, lw: Any, x: Tensor) -> Tensor:
    """Sparse MoE through the router: softmax, top-k (renormalised if the spec says so).

    The rule of ``tl_embspace.adapters.families.MoELayout``, written out independently here.
    """
    logits = x @ lw.W_router.float()
    b_router = getattr(lw, "b_router", None)
    if b_router is not None:
        logits = logits + b_router.float()
    probs = logits.softmax(-1)
    # A selection bias (Ernie-4.5) chooses the experts; the weights stay the probabilities.
    select = getattr(lw, "router_selection_bias", None)
    choice = probs if select is None else probs + select.float()
    top_e = choice.topk(view.spec.experts_per_token, dim=-1).indices
    top_p = probs.gather(-1, top_e)
    if view.spec.norm_topk_prob:
        top_p = top_p / top_p.sum(-1, keepdim=True)
    outs = torch.stack([_dense_mlp(view, e, x) for e in lw.experts], dim=-2)  # [..., E, d]
    picked = outs.gather(-2, top_e[..., None].expand(*top_e.shape, outs.shape[-1]))
    out = (top_p[..., None] * picked).sum(-2)
    shared = getattr(lw, "shared_expert", None)
    if shared is not None:
        gate = getattr(lw, "W_shared_gate", None)
        s = _dense_mlp(view, shared, x)
        out = out + (s if gate is None else torch.sigmoid(x @ gate.float()) * s)
    return out


def _mlp(view: Any, lw: Any, cache: dict[str, Tensor], names: Any, layer: int) -> str:
    """'' when the view's MLP weights rebuild the hooked MLP output, else the deviation."""
    x = _normed(names, "mlp_in", lw, cache[_at(names, "mlp_in", layer)])
    out = _moe(view, lw, x) if _is_moe(lw) else _dense_mlp(view, lw, x)
    dev = deviation(out, cache[_at(names, "mlp_out", layer)])
    if dev > RTOL:
        return f"layer {layer}: MLP output off by {dev:.2e}"
    post = getattr(lw, "ln2_post_w", None)
    return _post_norm(view, post, out, cache, names, ("resid_mid", "resid_post"), layer)


def _post_norm(
    view: Any,
    gain: Tensor | None,
    out: Tensor,
    cache: dict[str, Tensor],
    names: Any,
    around: tuple[str, str],
    layer: int,
) -> str:
    """'' when the sublayer's rebuilt output, through its post-norm, is what the residual gains.

    Models with post-sublayer norms (Gemma-2/3, OLMo-2, GLM-4) add
    ``rms_normalise(out) * gain`` to the residual: that must equal the hooked difference of the
    residual around the sublayer (``around``: before and after hooks), so the view's post-norm
    gains (``ln1_post_w``/``ln2_post_w``, offsets included) are checked against the forward
    pass too. Nothing to check (``''``) without a gain.
    """
    if gain is None:
        return ""
    before, after = (_at(names, f, layer) for f in around)
    if before not in cache or after not in cache:
        return (
            f"layer {layer}: post-norm gain unchecked: the adapter names no "
            f"{' / '.join(around)} hooks"
        )
    expected = cache[after] - cache[before]
    written = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + view.spec.eps) * gain.float()
    dev = deviation(written, expected)
    return "" if dev <= RTOL else f"layer {layer}: post-norm output off by {dev:.2e}"


def _is_moe(lw: Any) -> bool:
    """True for a layer whose view exposes experts and a router (see FINDINGS/README)."""
    return getattr(lw, "experts", None) is not None and getattr(lw, "W_router", None) is not None


# Checks of attention weights, which a hybrid's mixer layers do not have (spec.mixers).
_ATTENTION_CHECKS = ("attention", "query/key")


def _per_layer(
    view: Any,
    cache: dict[str, Tensor],
    names: Any,
    needs: tuple[str, ...],
    rebuild: Callable[..., str],
    has_weights: Callable[[Any], bool],
    what: str,
) -> Status:
    """Run ``rebuild`` on every layer that has the hooks and the weights; aggregate."""
    checked, skipped, failures = [], [], []
    for layer in range(view.spec.n_layers):
        if what in _ATTENTION_CHECKS and layer not in view.spec.attention_layers:
            skipped.append(f"{layer} ({view.spec.mixers[layer]} layer: no attention)")
            continue
        if any(_at(names, f, layer) not in cache for f in needs):
            skipped.append(f"{layer} (no {what} hook)")
            continue
        try:
            lw = view.layer(layer)
        except EmbSpaceError as e:
            skipped.append(f"{layer} (refused: {_refusal(e, 80)})")
            continue
        except Exception as e:  # noqa: BLE001 - any other error is a defect to report
            failures.append(f"layer {layer}: view.layer raised {_short(e)}")
            continue
        if not has_weights(lw):
            skipped.append(f"{layer} (no {what} weights in the view)")
            continue
        try:
            problem = rebuild(view, lw, cache, names, layer)
        except Exception as e:  # noqa: BLE001
            problem = f"layer {layer}: {_short(e)}"
        (failures.append(problem) if problem else checked.append(layer))
    if failures:
        return failed("; ".join(failures))
    if not checked:
        return not_applicable("no layer checked: " + "; ".join(skipped))
    note = f"layers {checked}" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
    return passed(note if skipped else "")


def _embedding(view: Any, tokens: Tensor, cache: dict[str, Tensor], names: Any) -> Status:
    """The residual entering block 0 from the view's embedding weights alone.

    ``W_E[t] * embed_scale + W_pos[p] (+ W_token_type[0])``, then the embedding norm when the
    view has one (BERT-style encoders, Bloom, NanoChat): a ``W_pos`` whose row ``p`` is not what the
    model adds at position ``p`` (OPT's and RoBERTa's offset tables), a missing embedding
    scale or an embedding norm left out all show here.
    """
    hook = _at(names, "resid_pre", 0)
    if hook is None or hook not in cache:
        return not_applicable(f"hook {hook!r} not in the model")
    g, s = view.globals, view.spec
    x = g.W_E.float()[tokens] * s.embed_scale
    if g.W_pos is not None:
        x = x + g.W_pos.float()[: tokens.shape[1]]
    token_type = getattr(g, "W_token_type", None)
    if token_type is not None:
        x = x + token_type.float()[0]  # every token has type 0 here, as in the forward pass
    if s.embed_norm or g.embed_ln_w is not None or g.embed_ln_b is not None:
        # NanoChat's embedding norm is a weightless RMSNorm: no centring, no affine part.
        if s.norm_type == "LN":
            x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps)
        x = _affine(x, g.embed_ln_w, g.embed_ln_b)
    dev = deviation(x, cache[hook])
    if dev <= RTOL:
        return passed("with W_pos" if g.W_pos is not None else "")
    return failed(f"residual entering block 0 off by {dev:.2e}")


def _logit_lens(view: Any, logits: Tensor, cache: dict[str, Tensor], names: Any) -> Status:
    final = cache.get(_at(names, "final_resid"))
    if final is None:
        return not_applicable(f"hook {_at(names, 'final_resid')!r} not in the model")
    try:
        got = view.logits(final)
    except EmbSpaceError as e:
        return refused(_refusal(e))
    except Exception as e:  # noqa: BLE001
        return failed(f"view.logits raised {_short(e)}")
    expected = logits.detach().float()
    dev = deviation(got, expected)
    cap = getattr(view.spec, "final_softcap", None)
    if dev <= RTOL:
        return passed(f"soft-cap {cap} applied by view.logits" if cap else "")
    if cap:
        dev_capped = deviation(cap * torch.tanh(got / cap), expected)
        if dev_capped <= RTOL:
            return passed(f"pre soft-cap; model logits = {cap} tanh(lens / {cap})")
        return failed(f"logits off by {dev:.2e} (after soft-cap {cap}: {dev_capped:.2e})")
    return failed(f"logits off by {dev:.2e}")


def _tensor_fields(obj: Any) -> dict[str, Tensor | None]:
    # The stored fields, not getattr: a hybrid's mixer layer refuses its attention fields (and
    # stores empty placeholders behind them, left out here).
    items = dict(vars(obj))
    if items.get("no_attention") is not None:
        items = {k: v for k, v in items.items() if k not in ATTENTION_FIELDS}
    return {k: v for k, v in items.items() if v is None or isinstance(v, Tensor)}


def compare_views(a: Any, b: Any, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Fields where two views' weights differ (None equals an all-zero tensor)."""
    diffs = []

    def cmp(where: str, x: Tensor | None, y: Tensor | None) -> None:
        if x is None and y is None:
            return
        if x is None or y is None:
            t = x if y is None else y
            if t.abs().max().item() != 0:
                side = "first" if x is None else "second"
                diffs.append(f"{where}: None in the {side} view, non-zero in the other")
            return
        dev = deviation(x, y)
        if dev > RTOL:
            diffs.append(f"{where} off by {dev:.2e}" if dev != float("inf") else f"{where} shape")

    ga, gb = _tensor_fields(a.globals), _tensor_fields(b.globals)
    for k in sorted(set(ga) | set(gb)):
        if k not in skip:
            cmp(k, ga.get(k), gb.get(k))
    for layer in range(a.spec.n_layers):
        try:
            la, lb = _tensor_fields(a.layer(layer)), _tensor_fields(b.layer(layer))
        except EmbSpaceError:
            continue
        for k in sorted(set(la) | set(lb)):
            if k not in skip:
                cmp(f"{k}[{layer}]", la.get(k), lb.get(k))
    return diffs


def _tl_process(model: Any) -> Any:
    """A deep copy of ``model`` with TransformerLens's own weight processing applied."""
    twin = copy.deepcopy(model)
    if hasattr(twin, "enable_compatibility_mode"):
        twin.enable_compatibility_mode(disable_warnings=True)
    else:
        twin.process_weights_(
            fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True
        )
    return twin


def _folded_eq_tl(model: Any, view: Any) -> Status:
    if view.spec.weights_processed:
        return not_applicable("the model's weights are already processed by TransformerLens")
    # Compare like with like: where TransformerLens's adapter declares it does not centre
    # writing weights (XGLM: its sinusoidal positions are a buffer it cannot centre), fold
    # without centring too, and say so in the cell.
    center = bool(getattr(getattr(model, "adapter", None), "supports_center_writing_weights", True))
    note = "" if center else "center_writing_weights=False, as TransformerLens processes it"
    try:
        folded = view.folded(center_writing_weights=center)
    except EmbSpaceError as e:
        return refused(f"folded(): {_refusal(e)}")
    except Exception as e:  # noqa: BLE001
        return failed(f"folded() raised {_short(e)}")
    try:
        twin = _tl_process(model)
    except Exception as e:  # noqa: BLE001 - TransformerLens's own limitation, reported as such
        return not_applicable(f"TransformerLens cannot process it: {_short(e, 120)}")
    changed = _processing_changes_outputs(model, twin, view)
    if changed:
        return not_applicable(changed)
    try:
        processed = tl_embspace.adapt(twin)
    except EmbSpaceError as e:
        return refused(f"adapt(processed): {_refusal(e)}")
    except Exception as e:  # noqa: BLE001
        return failed(f"adapt(processed) raised {_short(e)}")
    try:
        unfolded = _unfolded_norms(processed)
    except Exception as e:  # noqa: BLE001
        return failed(f"reading the processed view raised {_short(e)}")
    if unfolded:
        if processed.spec.ln_folded:
            return failed(
                f"TransformerLens left {unfolded} unfolded, yet the processed view declares "
                "ln_folded=True"
            )
        return not_applicable(f"TransformerLens's processing leaves {unfolded} unfolded")
    try:
        diffs = compare_views(folded, processed, skip=_NORM_FIELDS)
    except Exception as e:  # noqa: BLE001
        return failed(f"comparing raised {_short(e)}")
    # The view of the processed model must also reproduce that model's own forward pass: a
    # family whose processing TransformerLens only half applies must not be read as folded.
    twin_checks = forward_checks(twin, processed)
    diffs += [
        f"on the processed model, {k}: {s.reason}"
        for k, s in twin_checks.items()
        if s.kind == "fail"
    ]
    return (
        failed("; ".join(diffs[:4]) + (" …" if len(diffs) > 4 else "")) if diffs else passed(note)
    )


def _processing_changes_outputs(model: Any, twin: Any, view: Any) -> str:
    """'' when TransformerLens's processing kept the model's function, else why it is no reference.

    Processing must leave every next-token distribution unchanged (centring the unembedding
    shifts all logits of a position equally, so log-softmax is compared). Where it does not
    (e.g. Falcon without biases: TransformerLens folds LayerNorm biases into biases the model
    never adds), the processed weights are not a reference to compare a folded view with.
    """
    tokens = _tokens(view, 0)
    try:
        with torch.no_grad():
            raw = model(tokens).float().log_softmax(-1)
            processed = twin(tokens).float().log_softmax(-1)
    except Exception as e:  # noqa: BLE001 - TransformerLens's own limitation
        return f"TransformerLens's processed model cannot run: {_short(e, 120)}"
    dev = deviation(processed, raw)
    if dev <= RTOL:
        return ""
    return (
        f"TransformerLens's processing changes the model's outputs (log-softmax off by "
        f"{dev:.2e}), so its processed weights are no reference"
    )


def _unfolded_norms(view: Any) -> str:
    """Names of norm weights a (processed) view still carries that are not plain ones/zeros."""
    found = []
    for layer in range(view.spec.n_layers):
        try:
            lw = view.layer(layer)
        except EmbSpaceError:
            continue
        for k in ("ln1_w", "ln2_w"):
            w = getattr(lw, k)
            if w is not None and not torch.allclose(w.float(), torch.ones_like(w.float())):
                found.append(f"{k}[{layer}]")
        for k in ("ln1_b", "ln2_b"):
            b = getattr(lw, k)
            if b is not None and b.abs().max().item() > 0:
                found.append(f"{k}[{layer}]")
    g = view.globals
    if g.ln_final_w is not None and not torch.allclose(
        g.ln_final_w.float(), torch.ones_like(g.ln_final_w.float())
    ):
        found.append("ln_final_w")
    if g.ln_final_b is not None and g.ln_final_b.abs().max().item() > 0:
        found.append("ln_final_b")
    return ", ".join(found[:4]) + (" …" if len(found) > 4 else "")


# Folded views and TL-processed views both carry no norm weights; the normalising part stays.
_NORM_FIELDS = ("ln1_w", "ln1_b", "ln2_w", "ln2_b", "ln_final_w", "ln_final_b")


FORWARD_CHECKS = ("attention", "qk", "mlp", "embedding", "logit_lens")


def forward_checks(model: Any, view: Any, seed: int = 0) -> dict[str, Status]:
    """attention, mlp and logit_lens: the view's weights against ``model``'s forward pass."""
    tokens = _tokens(view, seed)
    try:
        with torch.no_grad():
            model(tokens)
    except Exception as e:  # noqa: BLE001 - TransformerLens's own limitation
        why = not_applicable(f"TransformerLens cannot run its forward pass: {_short(e, 120)}")
        return dict.fromkeys(FORWARD_CHECKS, why)
    try:
        names = hook_names(view)
        wanted = {
            _at(names, f, layer)
            for f in ("attn_in", "pattern", "attn_out", "mlp_in", "mlp_out")
            + ("resid_pre", "resid_mid", "resid_post")
            + ("q_norm_in", "q_norm_out", "k_norm_in", "k_norm_out")
            + _qk_fields(names)
            for layer in range(view.spec.n_layers)
        } | {_at(names, "final_resid"), _at(names, "resid_pre", 0)}
        wanted.discard(None)
        logits, cache = _record(model, tokens, wanted)
    except Exception as e:  # noqa: BLE001
        return dict.fromkeys(FORWARD_CHECKS, failed(f"recording hooks raised {_short(e)}"))
    attention = _per_layer(
        view,
        cache,
        names,
        ("attn_in", "pattern", "attn_out"),
        _attention,
        lambda lw: lw.W_V is not None and lw.W_O is not None,
        "attention",
    )
    qk = (
        _per_layer(
            view,
            cache,
            names,
            ("attn_in", "q", "k"),
            _qk,
            lambda lw: lw.W_Q is not None and lw.W_K_grouped is not None,
            "query/key",
        )
        if _qk_fields(names)
        else not_applicable("the adapter declares no query/key hooks (HookNames.q, .k)")
    )
    mlp = _per_layer(
        view,
        cache,
        names,
        ("mlp_in", "mlp_out"),
        _mlp,
        lambda lw: _is_moe(lw) or (lw.W_in is not None and lw.W_out is not None),
        "MLP",
    )
    try:
        embedding = _embedding(view, tokens, cache, names)
    except EmbSpaceError as e:
        embedding = refused(_refusal(e))
    except Exception as e:  # noqa: BLE001 - a bare error is a defect to report
        embedding = failed(f"rebuilding the embedding raised {_short(e)}")
    lens = _logit_lens(view, logits, cache, names)
    return {
        "attention": attention,
        "qk": qk,
        "mlp": mlp,
        "embedding": embedding,
        "logit_lens": lens,
    }


def _qk_fields(names: Any) -> tuple[str, ...]:
    """("q", "k") when the adapter names hooks for its queries and keys (optional fields)."""
    return ("q", "k") if getattr(names, "q", None) and getattr(names, "k", None) else ()


def verify(model: Any, *, seed: int = 0) -> dict[str, Status]:
    """Every check of ``CHECKS`` on ``model`` (a TransformerBridge, HookedTransformer...)."""
    try:
        view = tl_embspace.adapt(model)
    except tl_embspace.UnsupportedModelError as e:
        why = refused(_refusal(e, 300))
        return {"adapts": why} | {c: not_applicable("adapt() refused") for c in CHECKS[1:]}
    except Exception as e:  # noqa: BLE001 - a bare error instead of a refusal is a defect
        return {"adapts": failed(f"adapt() raised {_short(e)}")} | {
            c: not_applicable("adapt() failed") for c in CHECKS[1:]
        }
    out = {"adapts": passed()} | forward_checks(model, view, seed)
    out["folded_eq_tl"] = _folded_eq_tl(model, view)
    return out


def verify_hooked(bridge: Any, build_hooked: Callable[[], Any]) -> Status:
    """TransformerLens 3.x: the same weights as a HookedTransformer pass the same checks.

    ``build_hooked`` builds the HookedTransformer/HookedEncoder from the bridge's HF weights; a
    family TransformerLens 3.x cannot load that way is n/a with TransformerLens's error.
    """
    try:
        hooked = build_hooked()
    except NotImplementedError as e:
        if "not currently supported" in str(e):
            return not_applicable("TransformerLens 3.9 does not load it from a local folder")
        return not_applicable(f"TransformerLens 3.9 cannot load it: {_short(e, 120)}")
    except Exception as e:  # noqa: BLE001 - TransformerLens's own limitation
        return not_applicable(f"TransformerLens 3.9 cannot load it: {_short(e, 120)}")
    results = verify(hooked)
    if results["adapts"].kind != "pass":
        return results["adapts"]
    bad = [f"{k}: {s.reason}" for k, s in results.items() if s.kind == "fail"]
    if bad:
        return failed("HookedTransformer " + "; ".join(bad))
    try:
        diffs = compare_views(tl_embspace.adapt(hooked), tl_embspace.adapt(bridge))
    except Exception as e:  # noqa: BLE001
        return failed(f"comparing with the bridge raised {_short(e)}")
    if diffs:
        return failed("raw weights differ from the bridge's: " + "; ".join(diffs[:4]))
    return passed()
