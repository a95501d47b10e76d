"""Allow-list of model families: what each adapter family understands, and refusal of the rest.

A family is data (``Family``): the Hugging Face ``architectures`` names it covers, its norm
placement, whether it is an encoder, the configuration features it understands and how its
activation is spelt. ``family_for`` finds the family of a model's configuration; anything not on
a list, or using a feature its family does not understand, is refused with an
``UnsupportedModelError`` naming the architecture and the attribute (penzai's "does not support
these configuration attributes").

Adding a family: one module in this package calling ``FAMILIES.add(name, Family(...))``, imported
below, plus a tiny model in ``tests/tinymodels.py`` that the hook checks pass on.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import UnsupportedModelError
from ...registry import Registry


def _positive(value: Any) -> bool:
    """Soft-cap style settings: active when a positive number (TransformerLens uses -1 for off)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# Configuration features that change what a weight means. A model whose config turns one on is
# refused unless its family lists the feature in ``understands``. Values: (is it on?, why it
# matters). Read from the TransformerLens config (``model.cfg``) of either backend.
FEATURES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_experts": (bool, "sparse mixture-of-experts MLPs have no single W_in/W_out"),
    "parallel_attn_mlp": (bool, "attention and MLP read the same residual"),
    "rmsnorm_uses_offset": (bool, "norms scale by (1 + weight)"),
    "attn_scores_soft_cap": (_positive, "attention logits are soft-capped"),
    "output_logits_soft_cap": (_positive, "final logits are soft-capped"),
    "use_normalization_before_and_after": (bool, "post-sublayer norms"),
    "post_embedding_ln": (bool, "a norm follows the embedding, so W_E is not the stream's basis"),
    "scale_embedding": (bool, "embeddings are scaled before block 0"),
    "use_qk_norm": (bool, "queries and keys are normalised per head"),
    "use_NTK_by_parts_rope": (lambda v: False, "rotary scaling (positions only)"),
    "do_layer_norm_before": (
        lambda v: v is False,
        "norms after each residual add (OPT-350m's post-norm layers)",
    ),
}

PLACEMENTS = ("pre", "post", "sublayer")

# Token mixers of hybrid models that are not attention, and why they have no attention weights.
MIXER_KINDS: dict[str, str] = {
    "mamba": (
        "a Mamba state-space mixer: an input-gated linear recurrence over positions, with no "
        "queries, keys, values or attention pattern"
    ),
    "short_conv": (
        "a gated short convolution over the last few positions, with no queries, keys, values "
        "or attention pattern"
    ),
}
QK_NORM_SCOPES = ("head", "projection")

# Settings every family handles: positions only, or read from the config where needed.
NORMS = ("LN", "LNPre", "RMS", "RMSPre")


@dataclass(frozen=True)
class MoELayout:
    """Where a sparse-MoE family keeps its router and experts, and how it routes.

    Every family read here routes the same way, which the hook checks rebuild exactly: router
    logits ``x @ W_router``, softmax over all experts, the top ``experts_per_token`` experts by
    probability (by probability plus ``router_selection_bias`` where there is one: that bias
    selects, it does not weight), their probabilities renormalised to sum to one when
    ``norm_topk_prob``, each expert a gated MLP ``act(x W_gate) * (x W_in) @ W_out``; plus a shared
    expert on every token, times ``sigmoid(x @ W_shared_gate)`` where it has a gate. A family
    routing any other way (sigmoid scores, grouped top-k, attention experts) is refused.

    Attributes:
        router: Attribute of the Hugging Face MoE block holding the router (``weight
            [n_experts, d_model]``).
        experts: Attribute holding the experts' batched ``gate_up_proj [n_experts, 2 d_mlp,
            d_model]`` (gate rows first) and ``down_proj [n_experts, d_model, d_mlp]``.
        norm_topk_prob: True or False when the family fixes it; None: read from the Hugging Face
            config's ``norm_topk_prob``.
        expert_width: Hugging Face config key of one expert's width (``d_mlp``).
        shared_expert: Attribute of an always-on shared expert (``gate_proj``/``up_proj``/
            ``down_proj`` linears), or None.
        shared_gate: Attribute of the shared expert's sigmoid gate (``Linear(d_model, 1)``), or
            None.
        selection_bias: Attribute path (from the router) of a bias added to the probabilities
            for selection only (Ernie-4.5's ``moe_statics.e_score_correction_bias``), or None.
        renorm_floor: Hugging Face config key of a floor on the renormalising sum (Ernie-4.5's
            ``moe_norm_min``), or None. Top-k softmax probabilities sum to at least
            ``experts_per_token / n_experts``, so a floor below that never acts; a larger one is
            refused.
    """

    router: str = "gate"
    experts: str = "experts"
    norm_topk_prob: bool | None = None
    expert_width: str = "intermediate_size"
    shared_expert: str | None = None
    shared_gate: str | None = None
    selection_bias: str | None = None
    renorm_floor: str | None = None


@dataclass(frozen=True)
class Family:
    """One adapter family: the architectures it covers and the configuration it understands.

    Attributes:
        name: Family name (recorded as ``ModelSpec.family``).
        architectures: Hugging Face ``architectures`` strings covered (as in TransformerLens 4.3's
            ``SUPPORTED_ARCHITECTURES``); TransformerLens 3.x ``original_architecture`` too.
        norm_placement: "pre" (norm before each sublayer), "post" (BERT: after the residual
            add) or "sublayer" (OLMo-2: no norm before attention/MLP; each sublayer's output
            is normalised before the residual add, so ``post_norms`` must be set and the view's
            ``ln1``/``ln2`` are ``None``, the identity).
        is_encoder: BERT's layout: embedding LayerNorm, post-norm blocks, MLM-head readout
            (bidirectional, except BertLMHeadModel, which has it with a causal mask).
        understands: ``FEATURES`` this family's adapter handles correctly.
        act_fn: The MLP activation when TransformerLens's config does not spell it (None: trust
            ``cfg.act_fn``).
        qk_norm: Attention has q/k norms whose gains the view reads.
        qk_norm_scope: What a q/k norm normalises: "head" (each head's ``d_head`` vector:
            Qwen3, Gemma-3, EXAONE-4) or "projection" (the whole ``n_heads * d_head`` query
            projection and ``n_kv_heads * d_head`` key projection at once: OLMo-2/3). Either
            way the gain is a fixed diagonal, read per head as ``[n_heads, d_head]``.
        shared_norm: Parallel block with one norm read by both attention and MLP (GPT-J):
            the view reports that norm as ``ln1`` and ``ln2``.
        norm_offset: The model's norms multiply by ``offset + weight`` (Gemma: 1.0); the view's
            norm weights include it.
        post_norms: Each sublayer's output is normalised before the residual add (Gemma-2/3,
            GLM-4, OLMo-2): the view reads those gains as ``ln1_post_w``/``ln2_post_w``.
        embed_scale_sqrt_d_model: The model multiplies embeddings by ``sqrt(d_model)`` (Gemma).
        logit_scale: The model multiplies its logits by ``config.logit_scale`` (Cohere): the
            view records the factor the model still applies after ``W_U`` as
            ``spec.logit_scale`` (read from the model: 1.0 once TransformerLens has folded it
            into ``W_U``), ``view.logits`` applies it, ``folded()`` folds it into ``W_U``/``b_U``.
        embed_norm_without_weight: A norm without weight or bias follows the token embedding
            (NanoChat's RMSNorm): the stream starts at ``norm(W_E[t])``, a positive multiple
            of ``W_E[t]``, so ``W_E`` stays the residual basis (``spec.embed_norm``).
        moe: Sparse-MoE layout (router, experts, routing), or None for dense MLPs.
        mup_multipliers: The model scales by muP multipliers from its Hugging Face config
            (Granite: ``embedding_multiplier``, ``residual_multiplier``, ``attention_multiplier``,
            ``logits_scaling``); see ``ModelSpec.residual_multiplier``.
        position_offset: Rows of the model's position table before position 0's row: an int
            (OPT, XGLM: 2), or ``"padding_idx+1"`` (RoBERTa: read from the table's
            ``padding_idx``). The view's ``W_pos[p]`` is the row the model adds at position
            ``p`` (``ModelSpec.position_offset`` records the offset); where the table has its
            own ``offset`` attribute it must agree, else the model is refused.
        embed_norm: A LayerNorm follows the embedding (Bloom's ``word_embeddings_layernorm``):
            the view reads it as ``embed_ln_w``/``embed_ln_b`` and the residual basis of the
            vocabulary is ``embed_ln(W_E)`` (``spec.embed_norm``, ``view.W_E_resid``).
        position_table: Dotted path, inside the Hugging Face model, of a fixed (sinusoidal)
            position table that the bridge does not map, read from its ``weights`` buffer
            (XGLM); None: the bridge's ``pos_embed`` where TransformerLens declares standard
            positions.
        hf_config: ``(dotted attribute, value)`` pairs of the Hugging Face config that the
            family's reading assumes; a model whose config differs is refused by name. A value
            of None means "off" (None, False or 0): MPT's ``attn_config.clip_qkv`` (queries,
            keys and values clamped); GPT-1's ``afn`` must be ``"gelu"`` (which it runs as the
            tanh approximation, the family's ``act_fn``).
        mlp_width: A function of the Hugging Face config giving the MLP width where it is not
            ``config.intermediate_size`` as TransformerLens reads it (LFM2 derives it), or None.
            Every dense MLP's tensors must have the resulting ``spec.d_mlp``.
        mixers: Hybrid models: ``(bridge submodule, kind)`` pairs naming a block's token mixer
            that is not attention (Jamba's ``("mixer", "mamba")``); a block has either ``attn``
            or exactly one of these, and its kind (``MIXER_KINDS``) is recorded per layer in
            ``spec.mixers``. Empty: every block must have attention.
        notes: What a projection means for this family (README table).
    """

    name: str
    architectures: frozenset[str]
    norm_placement: str = "pre"
    is_encoder: bool = False
    understands: frozenset[str] = field(default_factory=frozenset)
    act_fn: str | None = None
    qk_norm: bool = False
    qk_norm_scope: str = "head"
    shared_norm: bool = False
    norm_offset: float = 0.0
    post_norms: bool = False
    embed_scale_sqrt_d_model: bool = False
    embed_norm_without_weight: bool = False
    logit_scale: bool = False
    moe: MoELayout | None = None
    mup_multipliers: bool = False
    embed_norm: bool = False
    position_offset: int | str = 0
    position_table: str | None = None
    hf_config: tuple[tuple[str, Any], ...] = ()
    mlp_width: Callable[[Any], int] | None = None
    mixers: tuple[tuple[str, str], ...] = ()
    notes: str = ""


FAMILIES: Registry[Family] = Registry("model family")

# Refused by name, with the reason (not on any allow-list, but a common question).
REFUSED: dict[str, str] = {}


def add(family: Family) -> Family:
    """Register ``family`` (duplicate names or architectures, or inconsistent fields, raise)."""
    if family.norm_placement not in PLACEMENTS or family.qk_norm_scope not in QK_NORM_SCOPES:
        raise UnsupportedModelError(
            f"family {family.name!r}: norm_placement={family.norm_placement!r} (expected one "
            f"of {PLACEMENTS}), qk_norm_scope={family.qk_norm_scope!r} (expected one of "
            f"{QK_NORM_SCOPES})"
        )
    unknown = [kind for _, kind in family.mixers if kind not in MIXER_KINDS]
    if unknown:
        raise UnsupportedModelError(
            f"family {family.name!r}: mixer kinds {unknown} (expected one of {list(MIXER_KINDS)})"
        )
    if family.norm_placement == "sublayer" and not family.post_norms:
        raise UnsupportedModelError(
            f"family {family.name!r}: norm_placement='sublayer' means post-sublayer norms; "
            "set post_norms=True"
        )
    for other in FAMILIES.names():
        clash = family.architectures & FAMILIES[other].architectures
        if clash:
            raise UnsupportedModelError(
                f"architectures {sorted(clash)} claimed by families {other!r} and {family.name!r}"
            )
    FAMILIES.add(family.name, family)
    return family


def refuse(reason: str, *architectures: str) -> None:
    """Record architectures that are refused on purpose, with the reason."""
    for a in architectures:
        REFUSED[a] = reason


def family_for(architecture: str) -> Family:
    """The family covering ``architecture``.

    Raises:
        UnsupportedModelError: Naming the architecture and why, when no family covers it.
    """
    for name in FAMILIES.names():
        if architecture in FAMILIES[name].architectures:
            return FAMILIES[name]
    why = REFUSED.get(architecture, "it is on no adapter family's allow-list")
    raise UnsupportedModelError(
        f"architecture={architecture!r} is not supported: {why}. Supported architectures: "
        f"{', '.join(supported_architectures())}"
    )


def supported_architectures() -> list[str]:
    """Every architecture name on an allow-list, sorted."""
    return sorted(a for n in FAMILIES.names() for a in FAMILIES[n].architectures)


def check_config(family: Family, cfg: Any, architecture: str) -> None:
    """Refuse a config that turns on a feature ``family`` does not understand.

    Raises:
        UnsupportedModelError: Listing every such attribute with its value and why it matters.
    """
    problems = []
    for attr, (is_on, why) in FEATURES.items():
        value = getattr(cfg, attr, None)
        if attr not in family.understands and value is not None and is_on(value):
            problems.append(f"cfg.{attr}={value!r} ({why})")
    norm = getattr(cfg, "normalization_type", None)
    if norm not in NORMS:
        problems.append(f"cfg.normalization_type={norm!r} (expected one of {', '.join(NORMS)})")
    act = str(getattr(cfg, "act_fn", ""))
    if act.endswith("_ln"):
        problems.append(f"cfg.act_fn={act!r} (activations with an inner LayerNorm)")
    n_heads = cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    if n_heads % n_kv:
        problems.append(f"cfg.n_key_value_heads={n_kv} does not divide cfg.n_heads={n_heads}")
    if problems:
        raise UnsupportedModelError(
            f"architecture={architecture!r} (family {family.name!r}): the adapter does not "
            f"support these configuration attributes: {'; '.join(problems)}"
        )


# Importing the family modules registers them (one module per family).
from . import (  # noqa: E402, F401, I001
    bert,
    bloom,
    cohere,
    falcon,
    gemma,
    glm,
    granite,
    gpt2,
    hybrid,
    llama,
    moe,
    nanochat,
    native,
    nemotron,
    neox,
    olmo,
    openai_gpt,
    opt,
    stablelm,
    xglm,
    refused,
)

__all__ = [
    "FAMILIES",
    "FEATURES",
    "Family",
    "MIXER_KINDS",
    "MoELayout",
    "REFUSED",
    "add",
    "check_config",
    "family_for",
    "refuse",
    "supported_architectures",
]
