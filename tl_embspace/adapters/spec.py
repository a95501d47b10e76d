"""What a view knows about its model: ``ModelSpec`` (from the config) and ``ModelFacts``.

Every field is read from the model's configuration or declared by whoever built the model;
nothing is guessed from tensor shapes.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    """Facts a TransformerLens model cannot tell about itself; ``None`` means "not declared".

    Pass them to ``adapt(model, facts=ModelFacts(...))``; the offline zoo declares them on the
    models it builds (``tl_embspace._facts.declare``). Explicit facts override declared ones.

    Attributes:
        unembed_trained: False when ``W_U`` exists but was never trained (an encoder loaded
            without its MLM head): projections through it are refused.
        model_name: The checkpoint's name, for provenance.
        tied_embeddings: Whether the checkpoint ties ``W_U`` to ``W_E``.
        source: Where the weights came from (a path or hub id), for provenance.
    """

    unembed_trained: bool | None = None
    model_name: str | None = None
    tied_embeddings: bool | None = None
    source: str | None = None

    def declared(self) -> dict[str, Any]:
        """The facts that are set (not ``None``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def over(self, other: "ModelFacts") -> "ModelFacts":
        """These facts, falling back to ``other`` where these are not declared."""
        return ModelFacts(**{**other.declared(), **self.declared()})

    @classmethod
    def names(cls) -> frozenset[str]:
        """The fact names ``declare`` accepts."""
        return frozenset(f.name for f in fields(cls))


@dataclass(frozen=True)
class ModelSpec:
    """Facts about a model, declared by its configuration (never guessed from tensor shapes).

    Attributes:
        model_name: Name of the checkpoint (or "unnamed").
        backend: "HookedTransformer", "HookedEncoder" or "TransformerBridge".
        tl_version: TransformerLens version the model was loaded with.
        architecture: Original architecture (e.g. "LlamaForCausalLM").
        norm_type: "LN" (LayerNorm, centres and scales) or "RMS" (RMSNorm, scales only).
        norm_placement: "pre" (norm before each sublayer), "post" (BERT-style, after the add)
            or "sublayer" (OLMo-2: no norm before attention/MLP, only on each sublayer's output
            before the residual add; ``ln1``/``ln2`` are ``None`` in the view, the identity).
            In "pre" and "sublayer" models the residual stream itself is only normalised by
            the final norm, so ``folded()`` applies (``residual_normalised_in_place`` is False).
        ln_folded: True when norm weights are already folded into the next linear maps (the norms
            then only normalise); false for raw weights.
        weights_processed: True when TransformerLens processed the weights at load
            (fold_ln / centring, ``HookedTransformer.from_pretrained`` defaults or the bridge's
            ``enable_compatibility_mode``).
        tied_embeddings: True when the raw output embedding is the input embedding transposed.
        positional: TransformerLens ``positional_embedding_type`` ("standard", "rotary",
            "alibi", ...), or "sinusoidal" for a fixed sinusoidal table the view exposes as
            ``W_pos`` (XGLM, which TransformerLens calls "standard").
        gated_mlp: True for gated MLPs (SwiGLU/GeGLU): ``act(x W_gate) * (x W_in)``.
        parallel_attn_mlp: True when attention and MLP read the same residual (GPT-J/NeoX).
        is_encoder: True for BERT-layout models (embedding LayerNorm, post-norm blocks, MLM-head
            readout): bidirectional encoders, and BertLMHeadModel (causal mask, same layout).
        unembed_trained: False when ``W_U`` exists but was never trained (an encoder without its
            MLM head): projections through it are meaningless and the library refuses them.
        n_kv_heads: Number of key/value heads (== n_heads for MHA, 1 for MQA).
        eps: Epsilon of the norms.
        family: The adapter family that accepted the model (``adapters/families``).
        norm_offset: Added to every norm weight by the model (Gemma's RMSNorm multiplies by
            ``1 + w``: offset 1.0). The view's norm weights already include it.
        embed_scale: The model multiplies token embeddings by this before block 0 (Gemma:
            ``sqrt(d_model)``); ``W_E`` in the view is the unscaled table.
        attn_softcap: Attention-logit soft-cap ``c`` (scores become ``c * tanh(s / c)``), or None.
        final_softcap: Final-logit soft-cap, or None. Projection scores are *pre-cap*: capping
            is monotone, so the top-k order of one logit vector is unchanged.
        qkv_clip: The forward pass clamps queries, keys and values to ``[-c, c]`` after their
            projections (OLMo's ``clip_qkv``), or None. The view's weights are the unclipped
            linear maps; an activation beyond ``c`` is clipped by the model, not by them.
        n_experts: Experts per sparse-MoE layer (0 for dense MLPs). ``d_mlp`` is then one
            expert's width (an interleaved stack's dense layers and a shared expert may be
            wider: read their tensors' shapes in the view).
        experts_per_token: Experts each token is routed to (0 for dense MLPs).
        norm_topk_prob: Sparse MoE: the top-k routing probabilities are renormalised to sum to
            one (else they are the softmax over all experts, as selected).
        moe_layers: Indices of the sparse-MoE layers (others are dense; Ernie-4.5 starts with
            dense layers).
        shared_expert: Sparse MoE: every MoE layer also runs a shared expert on every token.
        residual_multiplier: Every sublayer's output is multiplied by this before the residual
            add (Granite's muP ``residual_multiplier``). The view's written weights (``W_O``,
            ``b_O``, ``W_out``, ``b_out``, every expert's ``W_out``) already include it, so they
            are what the residual receives.
        attn_scale: The attention-score scale when it is not ``1 / sqrt(d_head)`` (Granite's
            ``attention_multiplier``), else None. QK scores are unscaled ``x W_Q W_Kᵀ yᵀ``; the
            scale multiplies them all, so their order is unchanged.
        logit_scale: The model multiplies its logits by this after ``W_U`` and ``b_U``
            (Cohere's ``config.logit_scale``, Granite's ``1 / logits_scaling``; 1.0 elsewhere,
            and once TransformerLens has folded it into ``W_U``). ``view.logits`` applies it;
            a positive factor leaves every ranking unchanged, so projection scores through the
            raw ``W_U`` are scaled, not reordered.
        attention_layers: Indices of the blocks that have attention (every block, except in
            hybrid models: see ``mixers``).
        mixers: Per block, what mixes information across positions: ``"attention"``, or in a
            hybrid model the kind of a layer without attention weights (``"mamba"``: a
            state-space mixer; ``"short_conv"``: a gated short convolution). Read from the
            model's modules and checked against its config's layer types, never guessed. Such a
            layer's attention fields are refused (``LayerWeights.no_attention``); the
            interpreters and the whole-model job skip them and record that they did.
        mlp_layers: Indices of the blocks with an MLP or a sparse-MoE MLP (every block in the
            families read here, hybrids included; empty only for attention-only models).
        rotary_dim: Dimensions per head that rotary embedding rotates (None without rotary);
            QK pairs are content-only either way.
        qk_norm: True when queries and keys are normalised (Qwen3, OLMo-2, Gemma-3): the
            view's ``q_norm_w``/``k_norm_w`` gains are part of the QK circuit.
        qk_norm_scope: With ``qk_norm``: "head" when each head's query/key is normalised on
            its own (gains ``[d_head]``), "projection" when the whole query (key) projection of
            a token is normalised at once (OLMo-2/3: gains ``[n_heads, d_head]`` and
            ``[n_kv_heads, d_head]``, the normalising scalar shared by a token's heads).
        embed_norm: True when a norm follows the embedding (Bloom's
            ``word_embeddings_layernorm``): the residual stream starts at ``embed_ln(W_E)``.
            NanoChat's has no weight, so ``W_E``'s directions are the stream's (each row is
            only rescaled).
        position_offset: The model's position table has this many rows before position 0's
            (OPT, XGLM: 2; RoBERTa: ``padding_idx + 1``) as the backend holds it (0 on
            ``HookedTransformer``, whose converters already drop those rows); the view's
            ``W_pos`` starts at position 0, so ``W_pos[p]`` is what the model adds at
            position ``p``.
    """

    model_name: str
    backend: str
    tl_version: str
    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    norm_type: str
    norm_placement: str
    ln_folded: bool
    weights_processed: bool
    tied_embeddings: bool
    positional: str
    gated_mlp: bool
    act_fn: str
    parallel_attn_mlp: bool
    is_encoder: bool
    unembed_trained: bool
    eps: float
    family: str = ""
    norm_offset: float = 0.0
    embed_scale: float = 1.0
    attn_softcap: float | None = None
    final_softcap: float | None = None
    qkv_clip: float | None = None
    n_experts: int = 0
    experts_per_token: int = 0
    norm_topk_prob: bool = False
    moe_layers: tuple[int, ...] = ()
    shared_expert: bool = False
    residual_multiplier: float = 1.0
    attn_scale: float | None = None
    logit_scale: float = 1.0
    attention_layers: tuple[int, ...] = ()
    mixers: tuple[str, ...] = ()
    mlp_layers: tuple[int, ...] = ()
    rotary_dim: int | None = None
    qk_norm: bool = False
    qk_norm_scope: str = "head"
    embed_norm: bool = False
    position_offset: int = 0

    @property
    def residual_normalised_in_place(self) -> bool:
        """True when a norm's output replaces the residual stream (post-norm BERT).

        Then no norm weight can move into the next sublayer's weights (``folded()`` refuses).
        """
        return self.norm_placement == "post"

    @property
    def is_hybrid(self) -> bool:
        """True when some block's token mixer is not attention (see ``mixers``)."""
        return len(self.attention_layers) < self.n_layers

    def non_attention_layers(self) -> dict[int, str]:
        """Blocks without attention, with their mixer kind (empty unless ``is_hybrid``)."""
        return {i: m for i, m in enumerate(self.mixers) if m != "attention"}

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads."""
        return head // self.group_size


NORM_TYPES = ("LN", "RMS")

__all__ = ["ModelFacts", "ModelSpec", "NORM_TYPES"]
