"""Pieces every backend adapter shares: config checks and the spec builder."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .. import _facts
from ..errors import UnsupportedModelError
from .base import ModelSpec

# Architectures whose weights need a convention we do not implement yet. Refusing is better than
# returning silently wrong numbers (penzai: "does not support these configuration attributes").
_REFUSED_ARCHITECTURE_PREFIXES = {
    "Gemma": "Gemma norms scale by (1 + weight) and Gemma-2 soft-caps logits",
    "Deepseek": "multi-head latent attention (MLA) has no per-head W_K/W_V",
    "Mixtral": "sparse mixture-of-experts MLPs have no single W_in/W_out",
    "Qwen2Moe": "sparse mixture-of-experts MLPs have no single W_in/W_out",
    "Olmoe": "sparse mixture-of-experts MLPs have no single W_in/W_out",
}


def tl_version() -> str:
    """Installed TransformerLens version."""
    try:
        return version("transformer-lens")
    except PackageNotFoundError:  # pragma: no cover - TL is a hard dependency
        return "unknown"


def check_supported(cfg: Any, architecture: str) -> None:
    """Raise UnsupportedModelError naming the attribute when the config asks for unknown maths."""
    for prefix, why in _REFUSED_ARCHITECTURE_PREFIXES.items():
        if architecture.startswith(prefix):
            raise UnsupportedModelError(
                f"architecture={architecture!r} is not supported: {why}. "
                "Open an issue with the model name; until then read it with TransformerLens directly"
            )
    n_experts = getattr(cfg, "num_experts", None)
    if n_experts:
        raise UnsupportedModelError(
            f"cfg.num_experts={n_experts}: sparse mixture-of-experts MLPs are not supported "
            "(no single W_in/W_out per layer)"
        )
    norm = getattr(cfg, "normalization_type", None)
    if norm not in ("LN", "LNPre", "RMS", "RMSPre"):
        raise UnsupportedModelError(
            f"cfg.normalization_type={norm!r} is not supported; expected LN, LNPre, RMS or RMSPre"
        )
    act = str(getattr(cfg, "act_fn", ""))
    if act.endswith("_ln"):
        raise UnsupportedModelError(
            f"cfg.act_fn={act!r}: activations with an inner LayerNorm (SoLU-LN) are not supported"
        )
    n_heads = cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    if n_heads % n_kv:
        raise UnsupportedModelError(
            f"cfg.n_key_value_heads={n_kv} does not divide cfg.n_heads={n_heads}"
        )


def build_spec(model: Any, cfg: Any, *, backend: str, architecture: str, **facts: Any) -> ModelSpec:
    """A ModelSpec from a TransformerLens config plus facts the backend established.

    Facts declared by the model's builder (``tl_embspace._facts``) override what the
    config says.
    """
    declared = _facts.declared(model)
    norm = cfg.normalization_type
    values = dict(
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
        positional=str(cfg.positional_embedding_type),
        gated_mlp=bool(cfg.gated_mlp),
        act_fn=str(cfg.act_fn),
        parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
        eps=float(cfg.eps),
    )
    values.update(facts)
    values["unembed_trained"] = declared.get("unembed_trained", values.get("unembed_trained", True))
    values["tied_embeddings"] = declared.get("tied_embeddings", values["tied_embeddings"])
    values["model_name"] = declared.get("model_name", values["model_name"])
    return ModelSpec(**values)
