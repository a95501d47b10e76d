"""Tiny, seeded, offline models for the dense-reference tests.

Each case is a small Hugging Face model built in memory (random weights), saved to a temporary
folder with a small word-level tokenizer, and loaded into TransformerLens:

* ``bridge``: ``TransformerBridge.boot_transformers(folder)`` (TransformerLens 3.x and 4.x),
* ``hooked``: ``HookedTransformer``/``HookedEncoder`` (3.x only) from the *same* weights, through
  TransformerLens's own config and weight converters.

Vocabularies are small enough that dense vocab x vocab references are cheap.
"""

import functools
import os
import tempfile
from dataclasses import dataclass

import torch

# Every folder a tiny model is saved to lives under one temporary root, removed when the test
# process exits (the models are cached per process, so their folders must outlive each test).
_ROOT = tempfile.TemporaryDirectory(prefix="tl-embspace-tests-")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

D_VOCAB = 96


@dataclass(frozen=True)
class Case:
    """One tiny architecture."""

    name: str
    family: str  # "llama" | "gpt2" | "neox" | "bert"
    n_heads: int = 4
    n_kv_heads: int = 4
    tied: bool = False

    @property
    def attention(self) -> str:
        return (
            "MHA" if self.n_kv_heads == self.n_heads else ("MQA" if self.n_kv_heads == 1 else "GQA")
        )


CASES = {
    c.name: c
    for c in [
        Case("llama-gqa-untied", "llama", 4, 2, tied=False),  # RMS, gated, rotary, GQA, untied
        Case("llama-mqa-tied", "llama", 4, 1, tied=True),  # MQA, tied
        Case("llama-mha-untied", "llama", 4, 4, tied=False),
        Case("gpt2-mha-tied", "gpt2", 4, 4, tied=True),  # LN, absolute positions, biases, gelu
        Case("neox-parallel", "neox", 4, 4, tied=False),  # parallel attention/MLP, partial rotary
        Case("bert-encoder", "bert", 4, 4, tied=True),  # post-LN encoder with MLM head
    ]
}


def tl_major() -> int:
    from importlib.metadata import version

    return int(version("transformer-lens").split(".")[0])


def has_hooked() -> bool:
    return tl_major() < 4


@functools.cache
def _tokenizer_dir() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(D_VOCAB - 8)]
    words += [" space", "tab\t", "new\nline", "ümlaut"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    d = tempfile.mkdtemp(prefix="tok-", dir=_ROOT.name)
    tok.save_pretrained(d)
    return d


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tokenizer_dir())


@functools.cache
def hf_dir(case_name: str) -> str:
    """Build the case's HF model (seeded) and save it with the tokenizer; return the folder."""
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    case = CASES[case_name]
    torch.manual_seed(sum(map(ord, case_name)))
    common = dict(vocab_size=D_VOCAB)
    if case.family == "llama":
        cfg = LlamaConfig(
            **common,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=case.n_heads,
            num_key_value_heads=case.n_kv_heads,
            max_position_embeddings=64,
            tie_word_embeddings=case.tied,
            rms_norm_eps=1e-5,
        )
        model = LlamaForCausalLM(cfg)
    elif case.family == "neox":
        cfg = GPTNeoXConfig(
            **common,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=case.n_heads,
            intermediate_size=48,
            max_position_embeddings=64,
            use_parallel_residual=True,
            rotary_pct=0.5,
            tie_word_embeddings=False,
        )
        model = GPTNeoXForCausalLM(cfg)
    elif case.family == "gpt2":
        cfg = GPT2Config(
            **common, n_embd=32, n_layer=2, n_head=case.n_heads, n_positions=64, n_ctx=64
        )
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = BertConfig(
            **common,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=case.n_heads,
            intermediate_size=48,
            max_position_embeddings=64,
        )
        model = BertForMaskedLM(cfg)
    # Random init leaves norm weights at exactly 1 and biases at 0, which would hide folding
    # bugs; perturb every parameter so each one matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if case.tied:
        model.tie_weights()
    d = tempfile.mkdtemp(prefix=f"{case.name.replace('llama', 'dec')}-", dir=_ROOT.name)
    model.eval().save_pretrained(d)
    tokenizer().save_pretrained(d)
    return d


def hf_model(case_name: str):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if CASES[case_name].family == "bert" else AutoModelForCausalLM
    return auto.from_pretrained(hf_dir(case_name), attn_implementation="eager").eval()


def bridge(case_name: str, processed: bool = False):
    from transformer_lens.model_bridge import TransformerBridge

    b = TransformerBridge.boot_transformers(hf_dir(case_name), tokenizer=tokenizer())
    if processed:
        b.enable_compatibility_mode(disable_warnings=True)
    return b


def hooked(case_name: str, processed: bool = False):
    """The same weights as a HookedTransformer / HookedEncoder (TransformerLens 3.x only)."""
    from transformer_lens import HookedEncoder, HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading
    from transformer_lens.pretrained.weight_conversions import (
        convert_bert_weights,
        convert_gpt2_weights,
        convert_llama_weights,
        convert_neox_weights,
    )

    case = CASES[case_name]
    d = hf_dir(case_name)
    cfg_dict = loading.convert_hf_model_config(d)
    fields = HookedTransformerConfig.__dataclass_fields__
    cfg = HookedTransformerConfig(**{k: v for k, v in cfg_dict.items() if k in fields})
    convert = {
        "llama": convert_llama_weights,
        "gpt2": convert_gpt2_weights,
        "neox": convert_neox_weights,
        "bert": convert_bert_weights,
    }
    if case.family == "bert":
        # TransformerLens's BERT converter also wants the pooler and NSP head; BertForPreTraining
        # has them (random, unused here) and shares every other weight with the saved model.
        from transformers import BertForPreTraining

        torch.manual_seed(0)
        source = BertForPreTraining.from_pretrained(d).eval()
    else:
        source = hf_model(case_name)
    sd = convert[case.family](source, cfg)
    if case.family == "bert":
        model = HookedEncoder(cfg)
        model.load_state_dict(sd, strict=False)
    else:
        model = HookedTransformer(cfg)
        model.load_and_process_state_dict(
            sd,
            fold_ln=processed,
            center_writing_weights=processed,
            center_unembed=processed,
            fold_value_biases=processed,
        )
    if case.family == "bert":
        model.tokenizer = tokenizer()
    else:
        model.set_tokenizer(tokenizer())
    return model.eval()


def load(case_name: str, backend: str, processed: bool = False):
    return bridge(case_name, processed) if backend == "bridge" else hooked(case_name, processed)


def backends() -> list[str]:
    return ["bridge", "hooked"] if has_hooked() else ["bridge"]


# -- any architecture, from its transformers config class (bridge only) -----------------------
# Small enough for dense references; every parameter perturbed (norm gains of exactly 1 would
# hide a missing gain).
ARCH_DEFAULTS = dict(
    vocab_size=D_VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
)


@functools.cache
def arch_dir(architecture: str, **overrides) -> str:
    """Build a tiny seeded ``architecture`` (e.g. "Qwen3ForCausalLM"); save it with a tokenizer."""
    import transformers

    config_cls = getattr(transformers, architecture.replace("ForCausalLM", "Config"))
    torch.manual_seed(sum(map(ord, architecture)))
    model = getattr(transformers, architecture)(config_cls(**{**ARCH_DEFAULTS, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    d = tempfile.mkdtemp(prefix=f"{architecture}-", dir=_ROOT.name)
    model.eval().save_pretrained(d)
    tokenizer().save_pretrained(d)
    return d


def arch_bridge(architecture: str, **overrides):
    """A TransformerBridge of a tiny ``architecture`` (see ``arch_dir``)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(
        arch_dir(architecture, **overrides), tokenizer=tokenizer()
    )


def arch_hf(architecture: str, **overrides):
    """The Hugging Face model behind ``arch_bridge`` (same weights)."""
    import transformers

    cls = getattr(transformers, architecture)
    return cls.from_pretrained(arch_dir(architecture, **overrides), attn_implementation="eager")
