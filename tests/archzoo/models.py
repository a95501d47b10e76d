"""Tiny, seeded, offline models of every architecture in TransformerLens's adapter factory.

For each name in ``transformer_lens.factories.architecture_adapter_factory
.SUPPORTED_ARCHITECTURES`` this module says whether it is in scope (a text-only decoder or
encoder language model whose class ``transformers`` has), and for those builds a tiny random
instance from the family's config class: 2-4 layers, ``d_model`` 64, 4 query heads, a 128-token
vocabulary, a few experts, while keeping the family's structural features (the GQA/MQA ratio,
gating, norm type and offsets, parallel blocks, partial rotary, ALiBi, soft-capping, sliding
windows, biases, q/k norms, post-norms, tied or untied embeddings).

Every parameter (norm gains and biases included) is perturbed after initialisation so that a
weight the adapter forgets or misplaces changes the result: with norm weights left at exactly 1
and biases at 0, folding and norm-offset bugs would be invisible.

The model is saved with a small word-level tokenizer to a temporary folder and loaded the way
TransformerLens loads an offline checkpoint: ``TransformerBridge.boot_transformers(folder)``
(TransformerLens 3.x and 4.x) and, on 3.x, ``HookedTransformer``/``HookedEncoder`` from the
same weights through TransformerLens's own config and weight converters.
"""

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

D_VOCAB = 128
D_MODEL = 64
N_HEADS = 4
D_HEAD = 16
MAX_PARAMS = 1_000_000

# -- scope -------------------------------------------------------------------------------------
# Architectures in the factory that are not text-only decoder/encoder language models. Each is
# listed in the coverage table with its reason rather than dropped.
_AUDIO = "audio model"
_VISION = "vision model"
_SEQ2SEQ = "encoder-decoder (seq2seq) model"
_MULTIMODAL = "multimodal wrapper (ConditionalGeneration over a vision/audio tower)"
_DIFFUSION = "diffusion language model"
_REMOTE = "no class in the installed transformers (remote code)"

OUT_OF_SCOPE: dict[str, str] = {
    **dict.fromkeys(
        [
            "ASTForAudioClassification",
            "HubertForCTC",
            "HubertModel",
            "Wav2Vec2ForCTC",
            "Wav2Vec2ForPreTraining",
            "Wav2Vec2Model",
            "GlmAsrForConditionalGeneration",
            "Qwen2AudioForConditionalGeneration",
            "AudioFlamingo3ForConditionalGeneration",
            "MusicFlamingoForConditionalGeneration",
        ],
        _AUDIO,
    ),
    **dict.fromkeys(
        ["DeiTForImageClassification", "DeiTModel", "ViTForImageClassification", "ViTModel"],
        _VISION,
    ),
    **dict.fromkeys(
        [
            "BartForConditionalGeneration",
            "BlenderbotForConditionalGeneration",
            "LEDForConditionalGeneration",
            "LongT5ForConditionalGeneration",
            "M2M100ForConditionalGeneration",
            "MBartForConditionalGeneration",
            "MT5ForConditionalGeneration",
            "MarianMTModel",
            "PegasusForConditionalGeneration",
            "SwitchTransformersForConditionalGeneration",
            "T5ForConditionalGeneration",
            "T5WithLMHeadModel",
            "T5GemmaForConditionalGeneration",
            "T5Gemma2ForConditionalGeneration",
        ],
        _SEQ2SEQ,
    ),
    **dict.fromkeys(
        [
            "Emu3ForConditionalGeneration",
            "Florence2ForConditionalGeneration",
            "Gemma3ForConditionalGeneration",
            "Gemma3nForConditionalGeneration",
            "Gemma4ForConditionalGeneration",
            "Gemma4UnifiedForConditionalGeneration",
            "Glm4vForConditionalGeneration",
            "Idefics3ForConditionalGeneration",
            "Llama4ForConditionalGeneration",
            "LlavaForConditionalGeneration",
            "LlavaNextForConditionalGeneration",
            "LlavaOnevisionForConditionalGeneration",
            "Mistral3ForConditionalGeneration",
            "MuseGlimmerForConditionalGeneration",
            "Qwen2_5_VLForConditionalGeneration",
            "Qwen3VLForConditionalGeneration",
            "Qwen3VLMoeForConditionalGeneration",
            "Qwen3_5ForConditionalGeneration",
            "Qwen3_5MoeForConditionalGeneration",
        ],
        _MULTIMODAL,
    ),
    **dict.fromkeys(
        ["BD3LM", "DreamModel", "GiddForDiffusionLM", "LLaDAModelLM", "LLaDA2MoeModelLM"],
        _DIFFUSION,
    ),
}


def factory_architectures() -> list[str]:
    """Every architecture name TransformerLens's adapter factory knows, sorted."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return sorted(SUPPORTED_ARCHITECTURES)


def scope(name: str) -> str | None:
    """None when ``name`` is an in-scope text architecture, else why it is out of scope."""
    import transformers

    if name in OUT_OF_SCOPE:
        return OUT_OF_SCOPE[name]
    if getattr(transformers, name, None) is None:
        return _REMOTE
    return None


def text_architectures() -> list[str]:
    """The in-scope architectures of the installed TransformerLens, sorted."""
    return [n for n in factory_architectures() if scope(n) is None]


# -- per-family structure ----------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """How to shrink one architecture while keeping its structure.

    Attributes:
        overrides: Config keyword arguments set on top of the generic tiny sizes (structural
            flags a family's real checkpoints use, or sizes the family names differently).
        n_layers: Number of layers (more for hybrids so that every layer kind appears).
        drop: Generic size keys this family must not receive.
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    n_layers: int = 2
    drop: tuple[str, ...] = ()


GQA = dict(num_key_value_heads=2)
_HYBRID = ["sliding_attention", "full_attention"]
_SOFTCAP = dict(final_logit_softcapping=5.0, attn_logit_softcapping=10.0)
_SSM = dict(mamba_n_heads=8, mamba_d_state=16, mamba_chunk_size=16, mamba_expand=2)
_LINEAR_ATTN = dict(
    linear_key_head_dim=16,
    linear_value_head_dim=16,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    layer_types=["linear_attention", "full_attention"],
)

FAMILIES: dict[str, Family] = {
    # Families whose config defaults are MHA but whose released checkpoints use GQA.
    "ApertusForCausalLM": Family(dict(GQA)),
    "ArceeForCausalLM": Family(dict(GQA)),
    # Hybrid sliding/global layers (the global ones without rotary) in both kinds.
    "Exaone4ForCausalLM": Family(dict(GQA, sliding_window=8, layer_types=_HYBRID)),
    "HunYuanDenseV1ForCausalLM": Family(dict(GQA)),
    "LlamaForCausalLM": Family(dict(GQA, attention_bias=False)),
    "MistralForCausalLM": Family(dict(GQA, sliding_window=8)),
    "MixtralForCausalLM": Family(dict(GQA, sliding_window=8)),
    "Qwen2ForCausalLM": Family(dict(GQA)),  # q/k/v biases are built in
    "Qwen3ForCausalLM": Family(dict(GQA)),  # q_norm/k_norm
    "Qwen2MoeForCausalLM": Family(dict(GQA, decoder_sparse_step=1, mlp_only_layers=[])),
    "Qwen3MoeForCausalLM": Family(
        dict(GQA, decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True)
    ),
    "GemmaForCausalLM": Family(dict(GQA)),
    "Gemma2ForCausalLM": Family(dict(GQA, sliding_window=8, **_SOFTCAP)),
    "Gemma3ForCausalLM": Family(dict(GQA, sliding_window=8, sliding_window_pattern=2)),
    "Gemma4ForCausalLM": Family(
        dict(
            GQA,
            sliding_window=8,
            vocab_size_per_layer_input=D_VOCAB,
            hidden_size_per_layer_input=16,
            final_logit_softcapping=5.0,
        )
    ),
    "VaultGemmaForCausalLM": Family(dict(GQA, sliding_window=8, **_SOFTCAP)),
    "GPTNeoXForCausalLM": Family(dict(use_parallel_residual=True, rotary_pct=0.5)),
    # Real GPT-J/CodeGen/GPT-Neo/GPT-2 configs leave the MLP width to the default 4 * d_model
    # (TransformerLens 3.x assumes it) and GPT-2's carry n_ctx.
    "GPTJForCausalLM": Family(dict(rotary_dim=8, n_inner=None)),
    "CodeGenForCausalLM": Family(dict(rotary_dim=8, n_inner=None)),
    "GPT2LMHeadModel": Family(dict(n_ctx=64)),
    "PhiForCausalLM": Family(dict(partial_rotary_factor=0.5)),
    "Phi3ForCausalLM": Family(dict(GQA)),
    "StableLmForCausalLM": Family(dict(partial_rotary_factor=0.25, use_qkv_bias=True)),
    "GPTNeoForCausalLM": Family(
        dict(attention_types=[[["global", "local"], 1]], window_size=8), drop=("intermediate_size",)
    ),
    "GPTBigCodeForCausalLM": Family(dict(multi_query=True)),
    "FalconForCausalLM": Family(
        dict(new_decoder_architecture=False, multi_query=True, parallel_attn=True, alibi=False)
    ),
    # BERT as a causal LM: its checkpoints set is_decoder (a causal mask in every layer).
    "BertLMHeadModel": Family(dict(is_decoder=True)),
    "BloomForCausalLM": Family({}),
    "BloomModel": Family({}),
    "OPTForCausalLM": Family(dict(ffn_dim=96, word_embed_proj_dim=64)),
    "XGLMForCausalLM": Family(dict(ffn_dim=96)),
    "CohereForCausalLM": Family(dict(GQA, logit_scale=0.5)),
    "Cohere2ForCausalLM": Family(dict(GQA, logit_scale=0.5, sliding_window=8, layer_types=_HYBRID)),
    "OlmoForCausalLM": Family(dict(GQA, clip_qkv=None)),
    "Olmo2ForCausalLM": Family(dict(GQA)),
    "Olmo3ForCausalLM": Family(dict(GQA, sliding_window=8, layer_types=_HYBRID)),
    "OlmoeForCausalLM": Family(dict(GQA)),
    "GraniteForCausalLM": Family(
        dict(
            GQA,
            embedding_multiplier=2.0,
            residual_multiplier=0.5,
            logits_scaling=4.0,
            attention_multiplier=0.2,
        )
    ),
    "GraniteMoeForCausalLM": Family(
        dict(
            GQA,
            embedding_multiplier=2.0,
            residual_multiplier=0.5,
            logits_scaling=4.0,
            attention_multiplier=0.2,
        )
    ),
    "GraniteMoeHybridForCausalLM": Family(
        dict(
            GQA,
            embedding_multiplier=2.0,
            residual_multiplier=0.5,
            logits_scaling=4.0,
            attention_multiplier=0.2,
            layer_types=["mamba", "attention"],
            mamba_n_heads=8,
            mamba_d_head=16,
            mamba_d_state=16,
            mamba_chunk_size=16,
            mamba_expand=2,
        )
    ),
    "Starcoder2ForCausalLM": Family(dict(GQA, sliding_window=8)),
    "NemotronForCausalLM": Family(dict(GQA, partial_rotary_factor=0.5)),
    "MptForCausalLM": Family(dict(expansion_ratio=2)),
    # Hybrids: enough layers that every layer kind (attention, state-space/conv, dense and
    # sparse MLPs) appears at least once.
    "BambaForCausalLM": Family(dict(_SSM, attn_layer_indices=[1], mamba_d_head=16), n_layers=2),
    # Falcon-H1 checkpoints scale almost every path (muP multipliers): keep them non-trivial.
    "FalconH1ForCausalLM": Family(
        dict(
            _SSM,
            mamba_d_ssm=128,
            mamba_d_head=16,
            embedding_multiplier=2.0,
            lm_head_multiplier=0.5,
            key_multiplier=0.8,
            attention_in_multiplier=0.7,
            attention_out_multiplier=0.6,
            mlp_multipliers=[0.5, 1.5],
            ssm_in_multiplier=0.9,
            ssm_out_multiplier=1.1,
        )
    ),
    "JambaForCausalLM": Family(
        dict(
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            use_mamba_kernels=False,
            mamba_d_state=16,
        ),
        n_layers=4,
    ),
    "Lfm2ForCausalLM": Family(
        dict(layer_types=["full_attention", "conv", "full_attention"]), n_layers=3
    ),
    "Lfm2MoeForCausalLM": Family(
        dict(layer_types=["full_attention", "conv", "full_attention"], num_dense_layers=1),
        n_layers=3,
    ),
    "NemotronHForCausalLM": Family(
        dict(
            layers_block_type=["mamba", "attention", "mlp", "moe"],
            mamba_num_heads=8,
            mamba_head_dim=16,
            ssm_state_size=16,
            n_groups=1,
            chunk_size=16,
            moe_shared_expert_intermediate_size=32,
            use_mamba_kernels=False,
        ),
        n_layers=4,
    ),
    "Zamba2ForCausalLM": Family(
        dict(
            layers_block_type=["mamba", "hybrid", "mamba"],
            n_mamba_heads=8,
            mamba_d_state=16,
            mamba_ngroups=1,
            num_mem_blocks=1,
            adapter_rank=8,
            chunk_size=16,
            use_mamba_kernels=False,
        ),
        n_layers=3,
    ),
    "RecurrentGemmaForCausalLM": Family(
        dict(block_types=["recurrent", "attention"], attention_window_size=8, lru_width=64)
    ),
    "MambaForCausalLM": Family(dict(state_size=16)),
    "FalconMambaForCausalLM": Family(dict(state_size=16)),
    "Mamba2ForCausalLM": Family(dict(num_heads=8, n_groups=1, state_size=16, chunk_size=16)),
    "Qwen3NextForCausalLM": Family(dict(_LINEAR_ATTN, decoder_sparse_step=1, mlp_only_layers=[])),
    "Qwen3_5ForCausalLM": Family(dict(_LINEAR_ATTN)),
    "Qwen3_5MoeForCausalLM": Family(dict(_LINEAR_ATTN)),
    "DeepseekV4ForCausalLM": Family(
        dict(o_lora_rank=32, o_groups=2, index_n_heads=2, index_head_dim=16, index_topk=8)
    ),
    "DeepseekV2ForCausalLM": Family(
        dict(
            first_k_dense_replace=1,
            n_shared_experts=1,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_group=1,
            topk_group=1,
        )
    ),
    "DeepseekV3ForCausalLM": Family(
        dict(
            first_k_dense_replace=1,
            n_shared_experts=1,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_group=1,
            topk_group=1,
        )
    ),
}

# Generic tiny sizes; a key is set only where the family's default config has it (after the
# config's own attribute_map), so a family never receives an argument it does not understand.
GENERIC: dict[str, Any] = dict(
    vocab_size=D_VOCAB,
    hidden_size=D_MODEL,
    intermediate_size=96,
    num_attention_heads=N_HEADS,
    head_dim=D_HEAD,
    max_position_embeddings=64,
    moe_intermediate_size=32,
    shared_expert_intermediate_size=32,
    num_experts=4,
    num_local_experts=4,
    n_routed_experts=4,
    num_experts_per_tok=2,
    kv_lora_rank=16,
    q_lora_rank=24,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=3,
)


def _config(name: str) -> Any:
    """The tiny config of architecture ``name``."""
    import dataclasses

    import transformers

    config_cls = getattr(transformers, name).config_class
    fam = FAMILIES.get(name, Family())
    # Configs are dataclasses: their fields (and attribute_map aliases) are what the constructor
    # accepts; read-only properties such as Mamba's layer_types are not fields.
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    amap = getattr(config_cls, "attribute_map", {}) or {}

    def key_of(key: str) -> str | None:
        if key in defaults:
            return key
        real = amap.get(key)
        return real if real in defaults else None

    kwargs: dict[str, Any] = {}
    for key, value in GENERIC.items():
        real = key_of(key)
        if real is not None and key not in fam.drop:
            kwargs[real] = value
    kwargs[key_of("num_hidden_layers") or "num_hidden_layers"] = fam.n_layers
    kv_key, heads_key = key_of("num_key_value_heads"), key_of("num_attention_heads")
    if kv_key is not None:
        kv_default = defaults[kv_key]
        heads_default = defaults.get(heads_key) if heads_key else None
        if kv_default == 1:
            kwargs[kv_key] = 1
        elif isinstance(kv_default, int) and isinstance(heads_default, int):
            kwargs[kv_key] = 2 if kv_default < heads_default else N_HEADS
        else:
            kwargs[kv_key] = N_HEADS
    if key_of("layer_types"):
        kwargs[key_of("layer_types")] = None  # recomputed for the tiny depth by the config
    if key_of("sliding_window") and defaults.get("sliding_window"):
        kwargs["sliding_window"] = 8
    for key, value in fam.overrides.items():
        kwargs[key_of(key) or key] = value
    return config_cls(**kwargs)


def _tempdir(prefix: str) -> str:
    """A temporary folder of ours, removed when the process exits."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def _seed(name: str) -> int:
    return sum(map(ord, name))


@functools.cache
def _tokenizer_dir() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(D_VOCAB - 4)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<unk>",
    )
    d = _tempdir("tl-es-tok-")
    tok.save_pretrained(d)
    return d


def tokenizer() -> Any:
    """The shared small word-level tokenizer (``D_VOCAB`` tokens)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tokenizer_dir())


def hf_model(name: str) -> Any:
    """A fresh tiny random instance of architecture ``name`` (seeded, every weight perturbed).

    Raises:
        AssertionError: If the instance has ``MAX_PARAMS`` parameters or more (a size key the
            family names differently was not applied).
    """
    import transformers

    cfg = _config(name)
    torch.manual_seed(_seed(name))
    model = getattr(transformers, name)(cfg)
    count = sum(p.numel() for p in model.parameters())
    if count >= MAX_PARAMS:
        raise AssertionError(
            f"tiny {name} has {count:,} parameters (>= {MAX_PARAMS:,}): a size key was "
            "not applied; add it to its Family overrides"
        )
    # Initialisation leaves norm gains at exactly 1 (0 for Gemma's 1 + w) and biases at 0, which
    # would hide folding and norm-offset bugs; perturb every parameter so each one matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    return model.float().eval()


@functools.cache
def hf_dir(name: str) -> str:
    """Build the tiny model and save it with the tokenizer; return the folder.

    The folder name avoids family words ("llama", "gemma-2-"...) because TransformerLens 3.x
    guesses an architecture from a path's name before reading its config.
    """
    model = hf_model(name)
    d = _tempdir(f"tl-es-arch{_seed(name)}-")
    model.save_pretrained(d)
    tokenizer().save_pretrained(d)
    return d


@functools.cache
def n_params(name: str) -> int:
    """Parameter count of the tiny model."""
    return sum(p.numel() for p in hf_model(name).parameters())


def bridge(name: str, processed: bool = False) -> Any:
    """The tiny model as a ``TransformerBridge`` (raw weights unless ``processed``)."""
    from transformer_lens.model_bridge import TransformerBridge

    b = TransformerBridge.boot_transformers(
        hf_dir(name), tokenizer=tokenizer(), dtype=torch.float32
    )
    if processed:
        b.enable_compatibility_mode(disable_warnings=True)
    return b.eval()


def hooked(name: str, processed: bool = False) -> Any:
    """The same weights as a 3.x ``HookedTransformer``/``HookedEncoder`` (TL's converters)."""
    import transformers
    from transformer_lens import HookedEncoder, HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    d = hf_dir(name)
    cfg_dict = loading.convert_hf_model_config(d)
    # Some converters pin bfloat16 (Mixtral); the bridge runs the same weights in float32, and
    # the two views are compared weight for weight.
    cfg_dict["dtype"] = torch.float32
    fields = HookedTransformerConfig.__dataclass_fields__
    cfg = HookedTransformerConfig(**{k: v for k, v in cfg_dict.items() if k in fields})
    encoder = name.startswith("Bert")
    # TransformerLens's BERT converter wants the pooler and NSP head too: BertForPreTraining has
    # them (random, unused here) and shares every other weight with the saved model.
    source_cls = transformers.BertForPreTraining if encoder else getattr(transformers, name)
    torch.manual_seed(0)
    source = source_cls.from_pretrained(d, dtype=torch.float32).eval()
    state_dict = loading.get_pretrained_state_dict(d, cfg, hf_model=source)
    if encoder:
        model = HookedEncoder(cfg)
        model.load_state_dict(state_dict, strict=False)
        model.tokenizer = tokenizer()
    else:
        model = HookedTransformer(cfg)
        model.load_and_process_state_dict(
            state_dict,
            fold_ln=processed,
            center_writing_weights=processed,
            center_unembed=processed,
            fold_value_biases=processed,
        )
        model.set_tokenizer(tokenizer())
    return model.eval()


def tl_major() -> int:
    """Major version of the installed TransformerLens."""
    from importlib.metadata import version

    return int(version("transformer-lens").split(".")[0])


def describe(name: str) -> str:
    """The tiny model's structural features, read from its config (for the coverage table)."""
    cfg = _config(name)

    def get(*keys: str) -> Any:
        for key in keys:
            value = getattr(cfg, key, None)
            if value is not None:
                return value
        return None

    heads = get("num_attention_heads", "n_head", "n_heads")
    kv = get("num_key_value_heads", "num_kv_heads", "n_kv_heads")
    if getattr(cfg, "multi_query", False):
        kv = 1
    parts = [f"{get('num_hidden_layers', 'n_layer', 'n_layers')} layers"]
    if heads:
        kind = "MHA" if not kv or kv == heads else ("MQA" if kv == 1 else "GQA")
        parts.append(f"{kind} {heads}/{kv or heads}")
    experts = get("num_local_experts", "num_experts", "n_routed_experts")
    if experts and getattr(cfg, "enable_moe_block", True):
        parts.append(f"{experts} experts, top-{get('num_experts_per_tok', 'top_k_experts')}")
    rope = get("rope_parameters") or {}
    partial = get("partial_rotary_factor", "rotary_pct") or rope.get("partial_rotary_factor")
    if partial and partial < 1:
        parts.append(f"partial rotary {partial}")
    if get("alibi") or name.startswith("Bloom") or getattr(cfg, "attn_config", None):
        parts.append("ALiBi" if name.startswith(("Bloom", "Mpt")) or get("alibi") else "")
    caps = [get("final_logit_softcapping"), get("attn_logit_softcapping")]
    if any(caps):
        parts.append("soft-cap " + "/".join(str(c) for c in caps if c))
    if get("sliding_window"):
        parts.append(f"sliding window {get('sliding_window')}")
    if get("use_parallel_residual", "parallel_attn"):
        parts.append("parallel blocks")
    if get("tie_word_embeddings"):
        parts.append("tied")
    layer_types = get("layer_types", "layers_block_type", "block_types")
    if layer_types and len(set(layer_types)) > 1:
        parts.append("layers " + ",".join(str(t) for t in layer_types))
    return "; ".join(p for p in parts if p)
