"""Pieces every backend adapter shares: family lookup and the spec builder."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .. import _facts
from ..errors import UnsupportedModelError
from .families import Family, check_config, family_for
from .spec import ModelFacts, ModelSpec


def tl_version() -> str:
    """Installed TransformerLens version."""
    try:
        return version("transformer-lens")
    except PackageNotFoundError:  # pragma: no cover - TL is a hard dependency
        return "unknown"


def accept(cfg: Any, architecture: str) -> Family:
    """The family that covers ``architecture`` and understands ``cfg``; else refuse by name."""
    family = family_for(architecture)
    check_config(family, cfg, architecture)
    return family


def _cap(value: Any) -> float | None:
    """A soft-cap setting as a float, None when off (TransformerLens writes -1 for off)."""
    return float(value) if isinstance(value, int | float) and value > 0 else None


def moe_spec(
    family: Family, cfg: Any, hf_config: Any, moe_layers: tuple[int, ...]
) -> dict[str, Any]:
    """The sparse-MoE fields of a ModelSpec, from the configs (empty for dense families).

    ``hf_config`` is the Hugging Face config where the backend has one (None for
    HookedTransformer, whose ``cfg`` carries ``norm_topk_prob`` and the expert width as
    ``d_mlp``): the expert width and ``norm_topk_prob`` are read from it when the family does not
    fix them.

    Raises:
        UnsupportedModelError: When a routing setting the family leaves to the config is absent.
    """
    layout = family.moe
    if layout is None:
        return {}
    # HookedTransformer (TransformerLens 3.x) routes by its own cfg.norm_topk_prob: that is
    # what its forward pass computes, so it comes first; the bridge's cfg does not carry it.
    renorm = getattr(cfg, "norm_topk_prob", None)
    if renorm is None:
        renorm = layout.norm_topk_prob
    if renorm is None:
        renorm = getattr(hf_config, "norm_topk_prob", None)
        if renorm is None:
            raise UnsupportedModelError(
                f"family {family.name!r}: the config does not say whether the top-k routing "
                "weights are renormalised (norm_topk_prob); load the model with "
                "TransformerBridge"
            )
    width = getattr(hf_config, layout.expert_width, None) if hf_config is not None else None
    # TransformerLens's cfg names the counts on 4.x (and for HookedTransformer); some 3.x bridges
    # leave them unset, so fall back to the Hugging Face config's own names.
    n_experts = getattr(cfg, "num_experts", None) or _first(
        hf_config, "num_local_experts", "num_experts"
    )
    per_token = getattr(cfg, "experts_per_token", None) or _first(hf_config, "num_experts_per_tok")
    if not n_experts or not per_token:
        raise UnsupportedModelError(
            f"family {family.name!r}: the config gives no expert count or experts per token "
            "(num_experts / num_experts_per_tok)"
        )
    if layout.renorm_floor is not None:
        floor = getattr(hf_config, layout.renorm_floor, None)
        least = per_token / n_experts  # top-k probabilities sum to at least this
        if floor is None or floor >= least:
            raise UnsupportedModelError(
                f"family {family.name!r}: config.{layout.renorm_floor}={floor!r} may floor the "
                f"sum of the top-k routing probabilities (which is at least {least:g}); the "
                "view renormalises without a floor"
            )
    return dict(
        n_experts=int(n_experts),
        experts_per_token=int(per_token),
        norm_topk_prob=bool(renorm),
        moe_layers=moe_layers,
        shared_expert=layout.shared_expert is not None,
        d_mlp=int(width) if width else cfg.d_mlp,
    )


def _first(config: Any, *keys: str) -> Any:
    """The first of ``keys`` that ``config`` sets (None when none, or no config)."""
    values = (getattr(config, k, None) for k in keys) if config is not None else ()
    return next((v for v in values if v), None)


MUP_KEYS = ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling")


def mup_spec(family: Family, hf_config: Any) -> dict[str, Any]:
    """The muP multipliers of a ModelSpec from the Hugging Face config (empty without them).

    Raises:
        UnsupportedModelError: When the family scales by multipliers the config does not give.
    """
    if not family.mup_multipliers:
        return {}
    given = {k: getattr(hf_config, k, None) for k in MUP_KEYS}
    values = {k: float(v) for k, v in given.items() if isinstance(v, int | float) and v > 0}
    missing = [k for k in MUP_KEYS if k not in values]
    if missing:
        raise UnsupportedModelError(
            f"family {family.name!r}: the config gives no positive {', '.join(missing)}; the "
            "view cannot scale its weights (load the model with TransformerBridge)"
        )
    return dict(
        embed_scale=values["embedding_multiplier"],
        residual_multiplier=values["residual_multiplier"],
        attn_scale=values["attention_multiplier"],
        logit_scale=1.0 / values["logits_scaling"],
    )


def build_spec(
    model: Any,
    cfg: Any,
    family: Family,
    facts: ModelFacts | None,
    *,
    backend: str,
    architecture: str,
    **established: Any,
) -> ModelSpec:
    """A ModelSpec from a TransformerLens config, the family, and facts.

    Precedence: explicit ``facts`` (``adapt(model, facts=...)``) over facts declared by the
    model's builder (``tl_embspace._facts``) over what the backend established.
    """
    declared = (facts or ModelFacts()).over(_facts.declared_facts(model)).declared()
    norm = cfg.normalization_type
    positional = str(cfg.positional_embedding_type)
    rotary_dim = getattr(cfg, "rotary_dim", None)
    if positional == "rotary" and not rotary_dim:
        rotary_dim = cfg.d_head
    values: dict[str, Any] = dict(
        model_name=str(getattr(cfg, "model_name", None) or "unnamed"),
        backend=backend,
        tl_version=tl_version(),
        architecture=architecture,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_kv_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp or 0,
        d_vocab=cfg.d_vocab,
        d_vocab_out=cfg.d_vocab_out,
        norm_type="LN" if norm.startswith("LN") else "RMS",
        norm_placement=family.norm_placement,
        is_encoder=family.is_encoder,
        positional=positional,
        gated_mlp=bool(cfg.gated_mlp),
        act_fn=family.act_fn or str(cfg.act_fn),
        parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
        eps=float(cfg.eps),
        unembed_trained=True,
        family=family.name,
        attention_layers=tuple(range(cfg.n_layers)),
        mixers=("attention",) * cfg.n_layers,
        mlp_layers=() if getattr(cfg, "attn_only", False) else tuple(range(cfg.n_layers)),
        rotary_dim=int(rotary_dim) if positional == "rotary" and rotary_dim else None,
        qk_norm=family.qk_norm,
        qk_norm_scope=family.qk_norm_scope,
        embed_norm=family.embed_norm or family.embed_norm_without_weight,
        norm_offset=family.norm_offset,
        embed_scale=float(cfg.d_model) ** 0.5 if family.embed_scale_sqrt_d_model else 1.0,
        attn_softcap=_cap(getattr(cfg, "attn_scores_soft_cap", None)),
        final_softcap=_cap(getattr(cfg, "output_logits_soft_cap", None)),
    )
    values.update(established)
    values.update({k: v for k, v in declared.items() if k in values})
    return ModelSpec(**values)
