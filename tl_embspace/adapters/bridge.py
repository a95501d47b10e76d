"""Adapter for ``TransformerBridge`` (TransformerLens 3.x and 4.x), decoders and BERT encoders.

The bridge wraps a Hugging Face model and exposes TransformerLens-layout weights per block
(``blocks[l].attn.W_Q`` ...). Unlike ``HookedTransformer`` its ``W_K``/``W_V`` stay *grouped*
for GQA models; we expand them once, in ``make_layer``.
"""

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..errors import UnsupportedModelError
from ._common import accept, build_spec, moe_spec, mup_spec
from .families import MIXER_KINDS, Family, MoELayout
from .hooks import HookNames, bridge_hook_names
from .spec import ModelFacts, ModelSpec
from .view import WeightView
from .weights import (
    GlobalWeights,
    LayerWeights,
    MLPWeights,
    copy_tensor,
    make_layer,
    make_mixer_layer,
    mlp_fields,
)


def _norm(module: Any, norm_type: str) -> tuple[Any, Any]:
    """(weight, bias) of a bridged norm; None for a parameter the norm lacks.

    RMSNorm has no bias; a LayerNorm may lack its bias or both parameters.
    """
    if module is None:
        return None, None
    inner = getattr(module, "original_component", module)
    weight = getattr(inner, "weight", None)
    bias = getattr(inner, "bias", None) if norm_type == "LN" else None
    return weight, bias


def _unwrap(module: Any) -> Any:
    """The Hugging Face module under any bridge wrappers (which own no weights of their own)."""
    while isinstance(getattr(module, "original_component", None), torch.nn.Module):
        module = module.original_component
    return module


def _is_sparse(mlp: Any) -> bool:
    """True for a bridged sparse-MoE block (an interleaved stack's dense layers bind dense)."""
    return mlp is not None and type(mlp).__name__ == "MoEBridge" and not mlp.bound_dense


def _linear_mlp(module: Any, gated: bool) -> MLPWeights:
    """A Hugging Face ``gate_proj``/``up_proj``/``down_proj`` MLP in TransformerLens layout.

    Raises:
        UnsupportedModelError: When the gate has a bias (``MLPWeights`` carries none).
    """
    if gated and module.gate_proj.bias is not None:
        raise UnsupportedModelError(
            f"{type(module).__name__}: a shared expert whose gate_proj has a bias is not supported"
        )
    return MLPWeights(
        W_in=copy_tensor(module.up_proj.weight.T),
        W_gate=copy_tensor(module.gate_proj.weight.T) if gated else None,
        W_out=copy_tensor(module.down_proj.weight.T),
        b_in=copy_tensor(module.up_proj.bias),
        b_out=copy_tensor(module.down_proj.bias),
    )


def _moe_fields(mlp: Any, layout: MoELayout, s: ModelSpec, layer: int) -> dict[str, Any]:
    """Experts, router, selection bias and shared expert of one bridged sparse-MoE block.

    Raises:
        UnsupportedModelError: When the block's tensors are not laid out as ``layout`` says
            (transposed or biased expert stacks, unexpected shapes).
    """
    block = _unwrap(mlp)
    where = f"{s.architecture}: blocks[{layer}].mlp"
    router = _unwrap(getattr(block, layout.router))
    experts = _unwrap(getattr(block, layout.experts))
    if getattr(experts, "is_transposed", False) or getattr(experts, "has_bias", False):
        raise UnsupportedModelError(
            f"{where}: transposed or biased expert stacks are not supported (is_transposed, "
            "has_bias); this architecture's expert layout is not verified"
        )
    E, m, d = s.n_experts, s.d_mlp, s.d_model
    shapes = {
        "gate_up_proj": (experts.gate_up_proj, (E, 2 * m, d)),
        "down_proj": (experts.down_proj, (E, d, m)),
        "router weight": (router.weight, (E, d)),
    }
    for name, (t, shape) in shapes.items():
        if tuple(t.shape) != shape:
            raise UnsupportedModelError(
                f"{where}: {name} has shape {tuple(t.shape)}, expected {shape} from the config "
                f"(n_experts={E}, expert d_mlp={m}, d_model={d}); this layout is not supported"
            )
    gate_up, down = experts.gate_up_proj.detach(), experts.down_proj.detach()
    out: dict[str, Any] = dict(
        experts=tuple(
            MLPWeights(
                # gate_up_proj stacks the gate rows first, then the up (W_in) rows.
                W_in=copy_tensor(gate_up[e, m:].T),
                W_gate=copy_tensor(gate_up[e, :m].T),
                W_out=copy_tensor(down[e].T),
            )
            for e in range(E)
        ),
        W_router=router.weight.T,
    )
    if layout.selection_bias is not None:
        bias = router
        for part in layout.selection_bias.split("."):
            bias = _unwrap(getattr(bias, part))
        out["router_selection_bias"] = bias.reshape(-1)
    if layout.shared_expert is not None:
        shared = _unwrap(getattr(block, layout.shared_expert))
        out["shared_expert"] = _linear_mlp(shared, s.gated_mlp)
    if layout.shared_gate is not None:
        out["W_shared_gate"] = _unwrap(getattr(block, layout.shared_gate)).weight.T
    return out


def _residual_scaled(
    attn: dict[str, Any], mlp: dict[str, Any], r: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the sublayers write, times the residual multiplier (Granite's muP).

    The view's written weights are then what the residual receives.
    """

    def scale(t: Any) -> Any:
        return None if t is None else t.detach() * r

    def scale_mlp(e: MLPWeights | None) -> MLPWeights | None:
        return None if e is None else replace(e, W_out=scale(e.W_out), b_out=scale(e.b_out))

    mlp = dict(mlp, W_out=scale(mlp["W_out"]), b_out=scale(mlp["b_out"]))
    if mlp.get("experts") is not None:
        mlp["experts"] = tuple(scale_mlp(e) for e in mlp["experts"])
    if mlp.get("shared_expert") is not None:
        mlp["shared_expert"] = scale_mlp(mlp["shared_expert"])
    return {k: scale(v) for k, v in attn.items()}, mlp


def _position_module(model: Any, family: Family) -> Any:
    """The Hugging Face module holding the position table, or None (rotary, ALiBi, none).

    The family's ``position_table`` path when the bridge does not map the table (XGLM's
    sinusoidal one), else the bridge's ``pos_embed``.
    """
    if family.position_table is not None:
        module = model.original_model
        for part in family.position_table.split("."):
            module = getattr(module, part)
        return module
    pos = model._modules.get("pos_embed")
    return None if pos is None else getattr(pos, "original_component", pos)


def _position_offset(module: Any, family: Family, architecture: str) -> int:
    """Rows of the position table before position 0's, as the family declares it.

    Raises:
        UnsupportedModelError: When the table's own ``offset`` attribute (OPT, XGLM) disagrees
            with the family, or a padding-relative offset has no ``padding_idx``.
    """
    offset = family.position_offset
    if offset == "padding_idx+1":
        pad = getattr(module, "padding_idx", None)
        if pad is None:
            raise UnsupportedModelError(
                f"{architecture}: family {family.name!r} offsets positions by padding_idx + 1 "
                "but the position table has no padding_idx"
            )
        offset = int(pad) + 1
    own = getattr(module, "offset", None)
    if own is not None and own != offset:
        raise UnsupportedModelError(
            f"{architecture}: the position table starts position 0 at row {own} (its offset "
            f"attribute) but family {family.name!r} declares position_offset={offset!r}; "
            "W_pos would be misaligned, so this layout is not supported"
        )
    return int(offset)


def _position_rows(module: Any, offset: int) -> Any:
    """The table's rows from position 0's on: learned ``weight`` or a fixed ``weights`` buffer."""
    table = getattr(module, "weight", None)
    if table is None:
        # A sinusoidal buffer grows when a longer sequence is run; keep its declared positions.
        table = module.weights[: offset + module.num_positions]
    return table[offset:]


def _token_types(model: Any) -> Any:
    """A copy of an encoder's token-type (segment) table, None where the bridge has none."""
    module = model._modules.get("token_type_embed")
    if module is None:
        return None
    return copy_tensor(getattr(module, "original_component", module).weight)


# Top-level bridge components no family reads: each changes what the residual stream's basis is.
_UNREAD_COMPONENTS = {
    "project_in": "a projection from the word embeddings into the residual (OPT-350m)",
    "project_out": "a projection from the residual to the unembedding (OPT-350m)",
}


class BridgeView(WeightView):
    """Read-only weights of a ``TransformerBridge``."""

    def __init__(self, model: Any, facts: ModelFacts | None = None) -> None:
        cfg = model.cfg
        architecture = str(cfg.architecture or type(model.original_model).__name__)
        family = accept(cfg, architecture)
        self._model = model
        self._family = family
        is_encoder = family.is_encoder
        # The bridge boots with raw Hugging Face weights; enable_compatibility_mode() (or
        # process_weights()) folds and centres them in place and records it in this flag.
        processed = bool(model._weights_processed)
        moe: dict[str, Any] = {}
        if family.moe is not None:
            sparse = tuple(
                i for i, b in enumerate(model.blocks) if _is_sparse(b._modules.get("mlp"))
            )
            moe = moe_spec(family, cfg, getattr(model.original_model, "config", None), sparse)
        moe.update(mup_spec(family, getattr(model.original_model, "config", None)))
        if family.mlp_width is not None:
            moe["d_mlp"] = family.mlp_width(model.original_model.config)
        # Granite's logits_scaling comes with its muP multipliers; Cohere's logit_scale alone.
        moe.setdefault("logit_scale", _logit_scale(model, family, architecture))
        self._positions = _position_module(model, family)
        positional: dict[str, Any] = {}
        if self._positions is not None:
            positional["position_offset"] = _position_offset(self._positions, family, architecture)
        if family.position_table is not None:
            positional["positional"] = "sinusoidal"
        mixers = _layer_mixers(model, family, architecture)
        positional["mixers"] = mixers
        positional["attention_layers"] = tuple(i for i, m in enumerate(mixers) if m == "attention")
        spec = build_spec(
            model,
            cfg,
            family,
            facts,
            backend="TransformerBridge",
            architecture=architecture,
            ln_folded=processed and not is_encoder and _tl_folds_norms(model),
            weights_processed=processed,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            qkv_clip=_qkv_clip(model),
            **moe,
            **positional,
        )
        super().__init__(spec, "tl-processed" if processed else "raw", model.tokenizer)
        self._check_layout()

    @property
    def hook_names(self) -> HookNames:
        """Bridge hook names (see ``hooks.bridge_hook_names``)."""
        names = bridge_hook_names(
            self.spec.n_layers,
            encoder=self.spec.is_encoder,
            post_norm=self.spec.norm_placement == "post",
        )
        if self._family.shared_norm:
            # One norm feeds both sublayers: the MLP reads ln1 (reported as ln2 too).
            names = replace(names, mlp_in="blocks.{layer}.ln1.hook_normalized")
        if self._family.norm_placement == "sublayer":
            names = _sublayer_norm_hook_names(names)
        if self._family.qk_norm:
            # The q/k norms' own input and output (the normalised axis is last on both lines).
            names = replace(
                names,
                **{
                    f"{w}_norm_{end}": f"blocks.{{layer}}.attn.{w}_norm.hook_{end}"
                    for w in ("q", "k")
                    for end in ("in", "out")
                },
            )
        if self._family.post_norms:
            # The sublayers' own outputs, before their post-norms (the block aliases fire after).
            # resid_mid: what attention adds, after its post-norm, is resid_mid - resid_pre.
            names = replace(
                names,
                attn_out="blocks.{layer}.attn.hook_out",
                mlp_out="blocks.{layer}.mlp.hook_out",
                resid_mid="blocks.{layer}.hook_resid_mid",
            )
        return names

    def _check_layout(self) -> None:
        """Refuse a bridge whose per-head tensors do not have the configured shapes, on every layer.

        Every attention block (``spec.attention_layers``; a hybrid's other blocks have a mixer
        the family declares instead, see ``_layer_mixers``) must have the configured shapes,
        and q/k norms exactly when the family reads them.
        """
        s = self.spec
        for name, why in _UNREAD_COMPONENTS.items():
            if name in self._model._modules:
                raise UnsupportedModelError(
                    f"{s.architecture}: the bridge has {name!r}, {why}, which the view does not "
                    "read (W_E and W_U would not be in the residual's basis); not supported"
                )
        self._check_embed_scale()
        self._check_hf_config()
        if s.norm_placement == "post" and not s.is_encoder and "ln_final" in self._model._modules:
            raise UnsupportedModelError(
                f"{s.architecture}: a post-norm decoder is read without a final norm (its last "
                "block's norm feeds W_U), but the bridge has ln_final; not supported"
            )
        # A weightless embedding norm (NanoChat) is not bridged as embed_ln: nothing to read.
        has_embed_ln = "embed_ln" in self._model._modules
        declared = self._family.embed_norm
        if has_embed_ln != (s.is_encoder or declared):
            raise UnsupportedModelError(
                f"{s.architecture}: the bridge {'has' if has_embed_ln else 'has no'} embedding "
                f"norm (embed_ln) but family {s.family!r} declares embed_norm={declared}; "
                "W_E would not be the residual's basis, so this layout is not supported"
            )
        expected = {
            "W_Q": (s.n_heads, s.d_model, s.d_head),
            "W_K": (s.n_kv_heads, s.d_model, s.d_head),
            "W_V": (s.n_kv_heads, s.d_model, s.d_head),
            "W_O": (s.n_heads, s.d_head, s.d_model),
        }
        for layer, block in enumerate(self._model.blocks):
            block_norms = _block_norms(block, self._family)
            _check_pre_norms(s, self._family, block_norms, layer)
            self._check_mlp_width(layer, block._modules.get("mlp"))
            attn = block._modules.get("attn")
            if layer not in s.attention_layers:
                continue  # a hybrid's mixer layer (_layer_mixers): no attention to check
            for name, shape in expected.items():
                got = tuple(getattr(attn, name).shape)
                if got != shape:
                    raise UnsupportedModelError(
                        f"{s.architecture}: blocks[{layer}].attn.{name} has shape {got}, "
                        f"expected {shape} from the config (n_heads={s.n_heads}, "
                        f"n_key_value_heads={s.n_kv_heads}, d_head={s.d_head}); this "
                        "architecture's bridge layout is not supported"
                    )
            posts = {n for n in ("ln1_post", "ln2_post") if n in block_norms}
            if posts != ({"ln1_post", "ln2_post"} if self._family.post_norms else set()):
                raise UnsupportedModelError(
                    f"{s.architecture}: blocks[{layer}] has post-sublayer norms {sorted(posts)} "
                    f"but family {s.family!r} declares post_norms={self._family.post_norms}; "
                    "this layout is not supported"
                )
            norms = {n for n in ("q_norm", "k_norm") if n in attn._modules}
            if norms != ({"q_norm", "k_norm"} if s.qk_norm else set()):
                raise UnsupportedModelError(
                    f"{s.architecture}: blocks[{layer}].attn has q/k norms {sorted(norms)} but "
                    f"family {s.family!r} declares qk_norm={s.qk_norm}; this layout is not "
                    "supported"
                )

    def _check_mlp_width(self, layer: int, mlp: Any) -> None:
        """Refuse a dense MLP whose width is not ``spec.d_mlp``.

        Sparse-MoE families are skipped: their ``d_mlp`` is the expert width, checked with the
        experts, and their dense layers may be wider.
        """
        s = self.spec
        if self._family.moe is not None or mlp is None or getattr(mlp, "W_in", None) is None:
            return
        width = mlp.W_in.shape[-1]
        if width != s.d_mlp:
            raise UnsupportedModelError(
                f"{s.architecture}: blocks[{layer}].mlp has width {width} but the config gives "
                f"d_mlp={s.d_mlp}; family {s.family!r} does not know how this width is derived, "
                "so this configuration is not supported"
            )

    def _check_hf_config(self) -> None:
        """Refuse a model whose Hugging Face config differs from what its family reads."""
        config = getattr(self._model.original_model, "config", None)
        for path, expected in self._family.hf_config:
            value: Any = config
            for part in path.split("."):
                value = getattr(value, part, None)
            if bool(value) if expected is None else value != expected:
                wanted = "off" if expected is None else repr(expected)
                raise UnsupportedModelError(
                    f"{self.spec.architecture}: config.{path}={value!r}, but family "
                    f"{self.spec.family!r} reads it as {wanted}; this configuration is not "
                    "supported"
                )

    def _check_embed_scale(self) -> None:
        """Refuse when the embedding module scales by other than ``spec.embed_scale``.

        Scaled-embedding modules (XGLM's, Gemma-3's) carry their factor as ``embed_scale``;
        the family declares it (``embed_scale_sqrt_d_model``), and the two must agree (an XGLM
        checkpoint with ``scale_embedding=False`` is refused rather than read wrongly).
        """
        embed = self._model._modules.get("embed")
        own = getattr(getattr(embed, "original_component", embed), "embed_scale", None)
        if own is None:
            return
        own, declared = float(own), self.spec.embed_scale
        if abs(own - declared) > 1e-6 * max(1.0, declared):
            raise UnsupportedModelError(
                f"{self.spec.architecture}: the embedding module scales token embeddings by "
                f"{own:g} but family {self.spec.family!r} declares embed_scale={declared:g}; "
                "this configuration is not supported"
            )

    def _read_globals(self) -> GlobalWeights:
        m, s = self._model, self.spec
        w, b = _norm(m.ln_final, s.norm_type) if "ln_final" in m._modules else (None, None)
        w = self._gain(w)
        W_pos = None
        if s.positional in ("standard", "sinusoidal") and self._positions is not None:
            W_pos = _position_rows(self._positions, s.position_offset)
        extra: dict[str, Any] = {}
        if self._family.embed_norm:
            emb_w, emb_b = _norm(m.embed_ln, "LN")
            extra = dict(embed_ln_w=copy_tensor(emb_w), embed_ln_b=copy_tensor(emb_b))
        if s.is_encoder:
            head = m._modules.get("mlm_head")
            emb_w, emb_b = _norm(m.embed_ln, "LN")
            extra = dict(
                mlm_W=copy_tensor(head.weight.T) if head is not None else None,
                mlm_b=copy_tensor(head.bias) if head is not None else None,
                embed_ln_w=copy_tensor(emb_w),
                embed_ln_b=copy_tensor(emb_b),
                W_token_type=_token_types(m),
            )
        return GlobalWeights(
            W_E=copy_tensor(m.W_E),
            W_U=copy_tensor(m.W_U),
            b_U=copy_tensor(m.b_U),
            W_pos=copy_tensor(W_pos),
            ln_final_w=copy_tensor(w),
            ln_final_b=copy_tensor(b),
            **extra,
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        s = self.spec
        block = self._model.blocks[layer]
        if layer not in s.attention_layers:
            return self._read_mixer_layer(layer)
        attn, mlp = block.attn, block._modules.get("mlp")
        block_norms = _block_norms(block, self._family)
        ln1_w, ln1_b = _norm(block_norms.get("ln1"), s.norm_type)
        ln2_w, ln2_b = _norm(block_norms.get("ln2"), s.norm_type)
        ln1_w, ln2_w = self._gain(ln1_w), self._gain(ln2_w)
        post = dict(ln1_post_w=None, ln2_post_w=None)
        if self._family.post_norms:
            post = {
                f"{n}_w": self._gain(_norm(block_norms[n], s.norm_type)[0])
                for n in ("ln1_post", "ln2_post")
            }
        if self._family.shared_norm:
            if "ln2" in block_norms:
                raise UnsupportedModelError(
                    f"{s.architecture}: family {s.family!r} declares one shared norm per block "
                    f"but blocks[{layer}] has an ln2"
                )
            # One convention on both backends (HookedTransformer copies the shared norm to ln2).
            ln2_w, ln2_b = ln1_w, ln1_b
        q_norm_w = k_norm_w = None
        if s.qk_norm:
            q_norm_w = _qk_gain(s, "q", self._gain(_norm(attn.q_norm, "RMS")[0]), layer)
            k_norm_w = _qk_gain(s, "k", self._gain(_norm(attn.k_norm, "RMS")[0]), layer)
        mlp_part = self._mlp_part(layer, mlp)
        written: dict[str, Any] = dict(W_O=attn.W_O, b_O=attn.b_O)
        if s.residual_multiplier != 1.0:
            written, mlp_part = _residual_scaled(written, mlp_part, s.residual_multiplier)
        return make_layer(
            layer,
            W_Q=attn.W_Q,
            W_K_grouped=attn.W_K,
            W_V_grouped=attn.W_V,
            b_Q=attn.b_Q,
            b_K_grouped=attn.b_K,
            b_V_grouped=attn.b_V,
            W_O=written["W_O"],
            b_O=written["b_O"],
            **mlp_part,
            ln1_w=ln1_w,
            ln1_b=ln1_b,
            ln2_w=ln2_w,
            ln2_b=ln2_b,
            q_norm_w=q_norm_w,
            k_norm_w=k_norm_w,
            **post,
        )

    def _read_mixer_layer(self, layer: int) -> LayerWeights:
        """A hybrid's layer without attention: its norms and MLP; attention fields refused."""
        s = self.spec
        block = self._model.blocks[layer]
        mlp = block._modules.get("mlp")
        norms = _block_norms(block, self._family)
        ln1_w, ln1_b = _norm(norms.get("ln1"), s.norm_type)
        ln2_w, ln2_b = _norm(norms.get("ln2"), s.norm_type)
        kind = s.mixers[layer]
        why = (
            f"{s.architecture}: blocks[{layer}] is a {kind} layer ({MIXER_KINDS[kind]}), so it "
            f"has no W_Q/W_K/W_V/W_O in the paper's sense; its MLP is read as usual. Attention "
            f"layers of this model: {list(s.attention_layers)}"
        )
        mlp_part = self._mlp_part(layer, mlp)
        if s.residual_multiplier != 1.0:
            _, mlp_part = _residual_scaled({}, mlp_part, s.residual_multiplier)
        return make_mixer_layer(
            layer,
            why,
            n_heads=s.n_heads,
            n_kv_heads=s.n_kv_heads,
            d_model=s.d_model,
            **mlp_part,
            ln1_w=self._gain(ln1_w),
            ln1_b=ln1_b,
            ln2_w=self._gain(ln2_w),
            ln2_b=ln2_b,
        )

    def _mlp_part(self, layer: int, mlp: Any) -> dict[str, Any]:
        """A layer's MLP fields: a sparse-MoE layer's experts and router, or a dense MLP's."""
        s = self.spec
        if layer in s.moe_layers and self._family.moe is not None:
            part = dict(**mlp_fields(None, False), b_gate=None)
            part.update(_moe_fields(mlp, self._family.moe, s, layer))
            return part
        return dict(
            **mlp_fields(mlp, s.gated_mlp),
            # The bridge's gated MLP aliases gate_proj.bias (set when TransformerLens folds
            # a LayerNorm bias into the gate, e.g. processed StableLM/OLMo).
            b_gate=mlp.b_gate if mlp is not None and s.gated_mlp else None,
        )

    def _gain(self, w: Any) -> Any:
        """A norm's effective gain: Gemma's norms multiply by ``1 + w`` (``spec.norm_offset``)."""
        # Also once processed: TransformerLens then sets folded norm weights to 0, not 1.
        if w is None or not self.spec.norm_offset:
            return w
        return w.detach() + self.spec.norm_offset


# The config's names for layers whose mixer is attention (TransformerLens's cfg.layer_types).
_ATTENTION_LAYER_TYPES = ("full_attention", "sliding_attention", "attention")


def _layer_mixers(model: Any, family: Family, architecture: str) -> tuple[str, ...]:
    """Per block, ``"attention"`` or the kind of the family's declared non-attention mixer.

    Read from the block's modules (``attn``, or one of ``family.mixers``) and checked against
    the config's ``layer_types`` where TransformerLens records them.

    Raises:
        UnsupportedModelError: For a block with no attention and no declared mixer, with both
            (attention and a state-space mixer side by side), or disagreeing with the config.
    """
    declared = dict(family.mixers)
    kinds = []
    for layer, block in enumerate(model.blocks):
        present = [n for n in declared if block._modules.get(n) is not None]
        has_attn = block._modules.get("attn") is not None
        if has_attn and present:
            raise UnsupportedModelError(
                f"{architecture}: blocks[{layer}] runs attention and {present[0]!r} side by "
                "side; attention's W_O alone is not what the block writes, so this layout is "
                "not supported"
            )
        if not has_attn and len(present) != 1:
            mixers = sorted(n for n in block._modules if not n.startswith(("hook_", "ln")))
            raise UnsupportedModelError(
                f"{architecture}: blocks[{layer}] has no attention and no token mixer that "
                f"family {family.name!r} reads (its modules: {mixers}); a recurrent or "
                "state-space layer this adapter does not know, so the model is not supported"
            )
        kinds.append("attention" if has_attn else declared[present[0]])
    types = getattr(model.cfg, "layer_types", None)
    if family.mixers and types is not None and len(types) == len(kinds):
        for layer, (kind, typ) in enumerate(zip(kinds, types, strict=True)):
            if (kind == "attention") != (typ in _ATTENTION_LAYER_TYPES):
                raise UnsupportedModelError(
                    f"{architecture}: blocks[{layer}] has a {kind} mixer but the config's "
                    f"layer_types[{layer}] is {typ!r}; this layout is not supported"
                )
    return tuple(kinds)


def _logit_scale(model: Any, family: Family, architecture: str) -> float:
    """The factor the model still multiplies its logits by after ``W_U`` (Cohere), else 1.0.

    Read from the Hugging Face model's own ``logit_scale`` attribute, the one its forward pass
    uses: TransformerLens's processing folds the scale into ``W_U`` and sets it to 1.0 there.

    Raises:
        UnsupportedModelError: For a scale that is not a positive number (a negative one would
            reverse every ranking read through ``W_U``).
    """
    if not family.logit_scale:
        return 1.0
    value = getattr(model.original_model, "logit_scale", None)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise UnsupportedModelError(
            f"architecture={architecture!r}: logit_scale={value!r} is not a positive number, "
            "so projections through W_U would not rank tokens as the model's logits do"
        )
    return float(value)


def _qkv_clip(model: Any) -> float | None:
    """The clamp the model applies to q, k and v after their projections (OLMo), or None."""
    value = getattr(getattr(model.original_model, "config", None), "clip_qkv", None)
    return None if value is None else float(value)


def _tl_folds_norms(model: Any) -> bool:
    """Whether TransformerLens's processing folds this bridge's norms (``fold_ln``).

    Adapters whose norms cannot be folded weight-preservingly (OLMo-2's post-sublayer norms,
    GLM, Phi-3) declare ``supports_fold_ln = False``; their processed weights keep every norm
    weight, the final norm's included.
    """
    return bool(getattr(getattr(model, "adapter", None), "supports_fold_ln", True))


def _sublayer_norm_hook_names(names: HookNames) -> HookNames:
    """Hook names of a model without pre-sublayer norms (OLMo-2): sublayers read the residual.

    Attention reads ``hook_resid_pre`` and the MLP ``hook_resid_mid`` as they are (no norm
    weights to apply, so ``norm_after`` is empty).
    """
    return replace(
        names,
        attn_in="blocks.{layer}.hook_resid_pre",
        mlp_in="blocks.{layer}.hook_resid_mid",
        norm_after=(),
    )


# The Hugging Face modules of a "sublayer" family's post-sublayer norms (OLMo-2/3, EXAONE-4).
_HF_POST_NORMS = {"ln1": "post_attention_layernorm", "ln2": "post_feedforward_layernorm"}


def _block_norms(block: Any, family: Family) -> dict[str, Any]:
    """A block's norms by role: ``ln1``/``ln2`` (before a sublayer), ``ln1_post``/``ln2_post``.

    TransformerLens 4.x names OLMo-2's post-sublayer norms ``ln1_post``/``ln2_post``; 3.x names
    them ``ln1``/``ln2`` although nothing normalises before the sublayers. For a "sublayer"
    family, ``ln1``/``ln2`` that are exactly the layer's Hugging Face post-sublayer norms
    (checked by identity: the bridge puts its norm modules in place of the Hugging Face ones)
    are read as the post-norms they are.
    """
    names = ("ln1", "ln2", "ln1_post", "ln2_post")
    norms = {n: block._modules[n] for n in names if block._modules.get(n) is not None}
    hf_layer = getattr(block, "original_component", None)
    if family.norm_placement == "sublayer" and "ln1_post" not in norms and hf_layer is not None:
        if all(
            n in norms and norms[n] is getattr(hf_layer, hf, None)
            for n, hf in _HF_POST_NORMS.items()
        ):
            norms = {"ln1_post": norms.pop("ln1"), "ln2_post": norms.pop("ln2"), **norms}
    return norms


def _check_pre_norms(spec: ModelSpec, family: Family, norms: dict[str, Any], layer: int) -> None:
    """Refuse a block whose pre-sublayer norms do not match the family's norm placement.

    A "sublayer" family (OLMo-2) must have neither ``ln1`` nor ``ln2``; any other decoder has
    an ``ln1`` (the parallel families' shared norm included). ``norms``: ``_block_norms``.
    """
    pre = sorted(n for n in ("ln1", "ln2") if n in norms)
    if family.norm_placement == "sublayer" and pre:
        raise UnsupportedModelError(
            f"{spec.architecture}: blocks[{layer}] has pre-sublayer norms {pre} but family "
            f"{spec.family!r} declares norm_placement='sublayer' (no norm before attention or "
            "the MLP); this layout is not supported"
        )
    if family.norm_placement != "sublayer" and "ln1" not in pre:
        raise UnsupportedModelError(
            f"{spec.architecture}: blocks[{layer}] has no ln1 but family {spec.family!r} "
            f"declares norm_placement={family.norm_placement!r}; this layout is not supported"
        )


def _qk_gain(spec: ModelSpec, which: str, gain: Tensor | None, layer: int) -> Tensor | None:
    """A q/k-norm gain in the view's layout, after checking its length against the scope.

    Per-head norms (``qk_norm_scope="head"``) have one ``[d_head]`` gain shared by every head;
    whole-projection norms (OLMo-2) one gain per projection output, read per head as
    ``[n_heads, d_head]`` (queries) or grouped ``[n_kv_heads, d_head]`` (keys), in the order
    of the projection's heads (the order ``W_Q``/``W_K`` use). A norm without a weight
    (NanoChat) has no gain: None.
    """
    if gain is None:
        return None
    heads = spec.n_heads if which == "q" else spec.n_kv_heads
    per_head = spec.qk_norm_scope == "head"
    expected = (spec.d_head,) if per_head else (heads * spec.d_head,)
    if tuple(gain.shape) != expected:
        raise UnsupportedModelError(
            f"{spec.architecture}: blocks[{layer}].attn.{which}_norm has {tuple(gain.shape)} "
            f"weights, expected {expected} for qk_norm_scope={spec.qk_norm_scope!r} "
            f"(n_heads={spec.n_heads}, n_key_value_heads={spec.n_kv_heads}, "
            f"d_head={spec.d_head}); this q/k-norm layout is not supported"
        )
    return gain if per_head else gain.reshape(heads, spec.d_head)
