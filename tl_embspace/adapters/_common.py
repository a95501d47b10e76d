"""Pieces every backend adapter shares: family lookup and the spec builder."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .. import _facts
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
        rotary_dim=int(rotary_dim) if positional == "rotary" and rotary_dim else None,
        qk_norm=family.qk_norm,
        embed_norm=family.embed_norm,
        norm_offset=family.norm_offset,
        embed_scale=float(cfg.d_model) ** 0.5 if family.embed_scale_sqrt_d_model else 1.0,
        attn_softcap=_cap(getattr(cfg, "attn_scores_soft_cap", None)),
        final_softcap=_cap(getattr(cfg, "output_logits_soft_cap", None)),
    )
    values.update(established)
    values.update({k: v for k, v in declared.items() if k in values})
    return ModelSpec(**values)
