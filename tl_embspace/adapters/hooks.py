"""Names of the TransformerLens hook points that carry what a weight view describes.

The comparison code (activations through hooks) must read the tensors that the view's weights
act on. Hook names differ between backends (``HookedTransformer`` names its norm output
``ln1.hook_normalized`` and fires it *before* the norm's weight; the bridge names it
``ln1.hook_out`` and fires it after), so every view carries its model's names in a
``HookNames``; code never spells a hook name itself.

Names verified on tiny GPT-2, Llama (GQA), GPT-NeoX (parallel) and BERT models, on
TransformerLens 4.3 (``TransformerBridge``) and 3.9 (``HookedTransformer``, ``HookedEncoder``,
``TransformerBridge``), by comparing cached tensors.
"""

from dataclasses import dataclass, fields, replace

from ..errors import InvalidArgumentError

LAYER_FIELDS = (
    "resid_pre",
    "attn_in",
    "q",
    "k",
    "pattern",
    "attn_out",
    "mlp_in",
    "mlp_pre",
    "mlp_post",
    "mlp_out",
    "resid_post",
    "resid_mid",
    "q_norm_in",
    "q_norm_out",
    "k_norm_in",
    "k_norm_out",
)


@dataclass(frozen=True)
class HookNames:
    """Hook-point names of one model, as format strings with a ``{layer}`` field.

    A field is ``None`` where the model has no such hook point (documented per family).

    Attributes:
        resid_pre: The residual stream entering block ``layer`` ``[batch, pos, d_model]``.
        attn_in: The input attention reads ``[batch, pos, d_model]``: the output of ``ln1`` in
            a pre-norm model, the residual itself in a post-norm one (BERT). See
            ``norm_after``: in a pre-norm model this hook fires before ``ln1``'s weight and bias
            are applied (``ln1.hook_normalized``, on both backends).
        q: Queries ``[batch, pos, n_heads, d_head]``: ``attn_in @ W_Q + b_Q``, before rotary and
            before any per-head q-norm (Qwen3, OLMo-2, Gemma-3: see ``spec.qk_norm``).
        k: Keys ``[batch, pos, n_kv_heads, d_head]`` (grouped): ``attn_in @ W_K_grouped +
            b_K_grouped``, before rotary and any k-norm.
        pattern: The attention pattern ``[batch, n_heads, query_pos, key_pos]`` (after softmax;
            rows sum to one).
        attn_out: Attention's output as added to the residual ``[batch, pos, d_model]``: after
            ``W_O`` and ``b_O`` (before any post-sublayer norm and before the residual add).
        mlp_in: The input the MLP reads ``[batch, pos, d_model]`` (``ln2``'s output; in a
            parallel block with one shared norm, that norm's output; in BERT, ``ln1``'s
            output, the post-attention norm). See ``norm_after``.
        mlp_pre: Pre-activation neuron values ``[batch, pos, d_mlp]``: ``x @ W_in + b_in`` for a
            plain MLP; for a gated MLP the *gate* branch ``x @ W_gate`` (before the activation).
        mlp_post: The neuron values ``W_out`` reads ``[batch, pos, d_mlp]``, so that
            ``mlp_out == mlp_post @ W_out + b_out``: ``act(x @ W_in + b_in)`` for a plain MLP;
            for a gated MLP the *product* ``act(x @ W_gate) * (x @ W_in)``, i.e. after the
            product with the ``W_in`` branch (TransformerLens's own ``hook_post`` on both
            backends; no backend hooks the gate's activation alone).
        mlp_out: The MLP's output as added to the residual ``[batch, pos, d_model]`` (after
            ``W_out`` and ``b_out``).
        resid_post: The residual stream leaving block ``layer`` (the next block's
            ``resid_pre``; in BERT, after the block's second norm).
        resid_mid: The residual stream between attention's residual add and the MLP's
            ``[batch, pos, d_model]``; named where a check needs it (models with post-sublayer
            norms: ``resid_mid - resid_pre`` is attention's output after its post-norm), else
            None.
        q_norm_in: With q/k norms (``spec.qk_norm``): the queries entering the q-norm, the
            normalised axis last (``[..., d_head]`` for per-head norms, ``[..., n_heads *
            d_head]`` where the whole projection is normalised, ``spec.qk_norm_scope``); else
            None.
        q_norm_out: The q-norm's output (same layout): ``q_norm_in`` normalised over its last
            axis, times the view's ``q_norm_w`` (flattened for a whole projection).
        k_norm_in: As ``q_norm_in``, for keys (grouped heads).
        k_norm_out: As ``q_norm_out``, for keys (``k_norm_w``).
        final_resid: Not a format string: the concrete name of the residual entering the final
            norm (for an encoder, entering the MLM head's transform). ``view.logits`` of this
            tensor reproduces the model's logits.
        norm_after: ``(field, norm)`` pairs for hooks that fire *before* a norm's own weight and
            bias: the sublayer reads ``hooked * w + b`` with ``w, b`` the layer's
            ``{norm}_w``/``{norm}_b`` in the view's *raw* ``LayerWeights`` (``None`` once folded).
            Pre-norm models: ``attn_in`` reads ``ln1``, ``mlp_in`` reads ``ln2`` (``ln1`` in a
            parallel block with one shared norm); BERT: ``mlp_in`` reads ``ln1``. A field not
            listed is the sublayer's input as is.
    """

    resid_pre: str | None
    attn_in: str | None
    q: str | None
    k: str | None
    pattern: str | None
    attn_out: str | None
    mlp_in: str | None
    mlp_pre: str | None
    mlp_post: str | None
    mlp_out: str | None
    resid_post: str | None
    final_resid: str
    norm_after: tuple[tuple[str, str], ...] = ()
    resid_mid: str | None = None
    q_norm_in: str | None = None
    q_norm_out: str | None = None
    k_norm_in: str | None = None
    k_norm_out: str | None = None

    def at(self, field: str, layer: int | None = None) -> str:
        """The concrete hook name of ``field`` at ``layer``.

        Args:
            field: One of the attribute names (``"attn_in"``, ..., ``"final_resid"``).
            layer: Block index (ignored for ``final_resid``).

        Raises:
            KeyError: If ``field`` is not a hook field, or the model has no such hook point.
        """
        from ..errors import MissingWeightError

        if field == "final_resid":
            return self.final_resid
        if field not in LAYER_FIELDS:
            names = ", ".join((*LAYER_FIELDS, "final_resid"))
            raise MissingWeightError(f"unknown hook field {field!r}; expected one of: {names}")
        template = getattr(self, field)
        if template is None:
            raise MissingWeightError(f"this model has no hook point for {field!r}")
        if layer is None:
            raise MissingWeightError(f"hook field {field!r} needs a layer")
        return template.format(layer=layer)

    def norm_for(self, field: str) -> str | None:
        """``"ln1"``/``"ln2"`` when ``field``'s hook fires before that norm's weights, else None."""
        return dict(self.norm_after).get(field)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in LAYER_FIELDS and value is not None and "{layer}" not in value:
                raise InvalidArgumentError(f"HookNames.{f.name}={value!r} has no '{{layer}}' field")


def bridge_hook_names(
    n_layers: int, *, encoder: bool = False, post_norm: bool = False
) -> HookNames:
    """``TransformerBridge`` names (TransformerLens 3.x and 4.x).

    Norm inputs are read at ``hook_normalized`` (after normalising, before the norm's weight and
    bias), like ``HookedTransformer``, so a check that re-applies the view's norm weights checks
    them too. In the bridge's BERT, ``attn.hook_out`` fires after the post-attention norm and the
    residual add, so attention's own output is read at the output projection ``attn.o.hook_out``;
    its MLP fires no ``mlp.hook_in`` on 3.x.

    A post-norm *decoder* (GPT-1, ``post_norm`` without ``encoder``) has BERT's norm placement
    but no final norm and no MLM head: the unembedding reads the last block's output
    (``unembed.hook_in``).
    """
    del n_layers  # the bridge names the final norm's input directly
    if encoder or post_norm:
        post_norm_names = HookNames(
            resid_pre="blocks.{layer}.hook_resid_pre",
            attn_in="blocks.{layer}.hook_resid_pre",
            q="blocks.{layer}.attn.hook_q",
            k="blocks.{layer}.attn.hook_k",
            pattern="blocks.{layer}.attn.hook_pattern",
            attn_out="blocks.{layer}.attn.o.hook_out",
            mlp_in="blocks.{layer}.ln1.hook_normalized",
            mlp_pre="blocks.{layer}.mlp.hook_pre",
            mlp_post="blocks.{layer}.mlp.hook_post",
            mlp_out="blocks.{layer}.hook_mlp_out",
            resid_post="blocks.{layer}.hook_resid_post",
            final_resid="mlm_head.hook_in",
            norm_after=(("mlp_in", "ln1"),),
        )
        # GPT-1: the encoder's names, but the unembedding reads the last block's output.
        return (
            post_norm_names if encoder else replace(post_norm_names, final_resid="unembed.hook_in")
        )
    return HookNames(
        resid_pre="blocks.{layer}.hook_resid_pre",
        attn_in="blocks.{layer}.ln1.hook_normalized",
        q="blocks.{layer}.attn.hook_q",
        k="blocks.{layer}.attn.hook_k",
        pattern="blocks.{layer}.attn.hook_pattern",
        attn_out="blocks.{layer}.hook_attn_out",
        mlp_in="blocks.{layer}.ln2.hook_normalized",
        mlp_pre="blocks.{layer}.mlp.hook_pre",
        mlp_post="blocks.{layer}.mlp.hook_post",
        mlp_out="blocks.{layer}.hook_mlp_out",
        resid_post="blocks.{layer}.hook_resid_post",
        final_resid="ln_final.hook_in",
        norm_after=(("attn_in", "ln1"), ("mlp_in", "ln2")),
    )


def hooked_transformer_hook_names(n_layers: int) -> HookNames:
    """``HookedTransformer`` names (TransformerLens 3.x).

    Its norms fire ``hook_normalized`` before their weight and bias, and it has no hook on the
    weighted norm output (``hook_attn_in``/``hook_mlp_in`` need config flags and carry other
    tensors), hence ``norm_after``.
    """
    return HookNames(
        resid_pre="blocks.{layer}.hook_resid_pre",
        attn_in="blocks.{layer}.ln1.hook_normalized",
        q="blocks.{layer}.attn.hook_q",
        k="blocks.{layer}.attn.hook_k",
        pattern="blocks.{layer}.attn.hook_pattern",
        attn_out="blocks.{layer}.hook_attn_out",
        mlp_in="blocks.{layer}.ln2.hook_normalized",
        mlp_pre="blocks.{layer}.mlp.hook_pre",
        mlp_post="blocks.{layer}.mlp.hook_post",
        mlp_out="blocks.{layer}.hook_mlp_out",
        resid_post="blocks.{layer}.hook_resid_post",
        final_resid=f"blocks.{n_layers - 1}.hook_resid_post",
        norm_after=(("attn_in", "ln1"), ("mlp_in", "ln2")),
    )


def hooked_encoder_hook_names(n_layers: int) -> HookNames:
    """``HookedEncoder`` names (TransformerLens 3.x, BERT, post-norm).

    Attention reads the residual itself; the MLP reads ``ln1`` (the post-attention norm);
    ``hook_resid_post`` fires before ``ln2``, so the block's output is
    ``hook_normalized_resid_post``.
    """
    return HookNames(
        resid_pre="blocks.{layer}.hook_resid_pre",
        attn_in="blocks.{layer}.hook_resid_pre",
        q="blocks.{layer}.attn.hook_q",
        k="blocks.{layer}.attn.hook_k",
        pattern="blocks.{layer}.attn.hook_pattern",
        attn_out="blocks.{layer}.hook_attn_out",
        mlp_in="blocks.{layer}.ln1.hook_normalized",
        mlp_pre="blocks.{layer}.mlp.hook_pre",
        mlp_post="blocks.{layer}.mlp.hook_post",
        mlp_out="blocks.{layer}.hook_mlp_out",
        resid_post="blocks.{layer}.hook_normalized_resid_post",
        final_resid=f"blocks.{n_layers - 1}.hook_normalized_resid_post",
        norm_after=(("mlp_in", "ln1"),),
    )


__all__ = [
    "HookNames",
    "LAYER_FIELDS",
    "bridge_hook_names",
    "hooked_encoder_hook_names",
    "hooked_transformer_hook_names",
]
