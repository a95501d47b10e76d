"""Adapter for ``TransformerBridge`` (TransformerLens 3.x and 4.x), decoders and BERT encoders.

The bridge wraps a Hugging Face model and exposes TransformerLens-layout weights per block
(``blocks[l].attn.W_Q`` ...). Unlike ``HookedTransformer`` its ``W_K``/``W_V`` stay *grouped*
for GQA models; we expand them once, in ``make_layer``.
"""

from dataclasses import replace
from typing import Any

from ..errors import UnsupportedModelError
from ._common import accept, build_spec
from .families import Family
from .hooks import HookNames, bridge_hook_names
from .spec import ModelFacts
from .view import WeightView
from .weights import GlobalWeights, LayerWeights, copy_tensor, make_layer, mlp_fields


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
        self._positions = _position_module(model, family)
        positional: dict[str, Any] = {}
        if self._positions is not None:
            positional["position_offset"] = _position_offset(self._positions, family, architecture)
        if family.position_table is not None:
            positional["positional"] = "sinusoidal"
        spec = build_spec(
            model,
            cfg,
            family,
            facts,
            backend="TransformerBridge",
            architecture=architecture,
            ln_folded=processed and not is_encoder,
            weights_processed=processed,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
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
        if self._family.post_norms:
            # The sublayers' own outputs, before their post-norms (the block aliases fire after).
            names = replace(
                names,
                attn_out="blocks.{layer}.attn.hook_out",
                mlp_out="blocks.{layer}.mlp.hook_out",
            )
        return names

    def _check_layout(self) -> None:
        """Refuse a bridge whose per-head tensors do not have the configured shapes, on every layer.

        Every block must have attention with the configured shapes (a hybrid's recurrent
        layers have none), and q/k norms exactly when the family reads them.
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
        has_embed_ln = "embed_ln" in self._model._modules
        if has_embed_ln != (s.is_encoder or s.embed_norm):
            raise UnsupportedModelError(
                f"{s.architecture}: the bridge {'has' if has_embed_ln else 'has no'} embedding "
                f"norm (embed_ln) but family {s.family!r} declares embed_norm={s.embed_norm}; "
                "W_E would not be the residual's basis, so this layout is not supported"
            )
        expected = {
            "W_Q": (s.n_heads, s.d_model, s.d_head),
            "W_K": (s.n_kv_heads, s.d_model, s.d_head),
            "W_V": (s.n_kv_heads, s.d_model, s.d_head),
            "W_O": (s.n_heads, s.d_head, s.d_model),
        }
        for layer, block in enumerate(self._model.blocks):
            attn = block._modules.get("attn")
            if attn is None:
                raise UnsupportedModelError(
                    f"{s.architecture}: blocks[{layer}] has no attention (a recurrent or "
                    "state-space layer); this architecture's layout is not supported"
                )
            for name, shape in expected.items():
                got = tuple(getattr(attn, name).shape)
                if got != shape:
                    raise UnsupportedModelError(
                        f"{s.architecture}: blocks[{layer}].attn.{name} has shape {got}, "
                        f"expected {shape} from the config (n_heads={s.n_heads}, "
                        f"n_key_value_heads={s.n_kv_heads}, d_head={s.d_head}); this "
                        "architecture's bridge layout is not supported"
                    )
            posts = {n for n in ("ln1_post", "ln2_post") if n in block._modules}
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
        if s.embed_norm:
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
        attn, mlp = block.attn, block._modules.get("mlp")
        ln1_w, ln1_b = _norm(block.ln1, s.norm_type)
        ln2_w, ln2_b = _norm(block._modules.get("ln2"), s.norm_type)
        ln1_w, ln2_w = self._gain(ln1_w), self._gain(ln2_w)
        post = dict(ln1_post_w=None, ln2_post_w=None)
        if self._family.post_norms:
            post = {
                f"{n}_w": self._gain(_norm(block._modules[n], s.norm_type)[0])
                for n in ("ln1_post", "ln2_post")
            }
        if self._family.shared_norm:
            if "ln2" in block._modules:
                raise UnsupportedModelError(
                    f"{s.architecture}: family {s.family!r} declares one shared norm per block "
                    f"but blocks[{layer}] has an ln2"
                )
            # One convention on both backends (HookedTransformer copies the shared norm to ln2).
            ln2_w, ln2_b = ln1_w, ln1_b
        q_norm_w = k_norm_w = None
        if s.qk_norm:
            q_norm_w = self._gain(attn.q_norm.weight)
            k_norm_w = self._gain(attn.k_norm.weight)
        return make_layer(
            layer,
            W_Q=attn.W_Q,
            W_K_grouped=attn.W_K,
            W_V_grouped=attn.W_V,
            W_O=attn.W_O,
            b_Q=attn.b_Q,
            b_K_grouped=attn.b_K,
            b_V_grouped=attn.b_V,
            b_O=attn.b_O,
            **mlp_fields(mlp, s.gated_mlp),
            # The bridge's gated MLP aliases gate_proj.bias (set when TransformerLens folds a
            # LayerNorm bias into the gate, e.g. processed StableLM/OLMo).
            b_gate=mlp.b_gate if mlp is not None and s.gated_mlp else None,
            ln1_w=ln1_w,
            ln1_b=ln1_b,
            ln2_w=ln2_w,
            ln2_b=ln2_b,
            q_norm_w=q_norm_w,
            k_norm_w=k_norm_w,
            **post,
        )

    def _gain(self, w: Any) -> Any:
        """A norm's effective gain: Gemma's norms multiply by ``1 + w`` (``spec.norm_offset``)."""
        # Also once processed: TransformerLens then sets folded norm weights to 0, not 1.
        if w is None or not self.spec.norm_offset:
            return w
        return w.detach() + self.spec.norm_offset
