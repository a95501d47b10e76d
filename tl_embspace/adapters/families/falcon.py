"""Falcon: parallel attention and MLP reading one shared LayerNorm, multi-query attention.

Falcon-7B's layout (``parallel_attn=True``, ``new_decoder_architecture=False``): one
``input_layernorm`` feeds both attention and the MLP (reported as ``ln1`` and ``ln2``, as for
GPT-J), rotary positions, one key/value head (MQA), no biases. Other variants are refused by
name through ``hf_config``: Falcon-40B/180B's ``new_decoder_architecture`` (two norms per
block, grouped K/V), Falcon-RW's sequential blocks with ALiBi and biases. TransformerLens's
own processing of this layout changes the model's outputs (it folds the LayerNorm bias into MLP
and attention biases the model does not have), so ``folded = TL processed`` has no reference.
"""

from . import Family, add

FALCON = add(
    Family(
        name="falcon",
        architectures=frozenset({"FalconForCausalLM"}),
        understands=frozenset({"parallel_attn_mlp"}),
        shared_norm=True,
        # TransformerLens's config says relu; the model runs config.activation (exact GELU).
        act_fn="gelu",
        hf_config=(
            ("activation", "gelu"),
            ("new_decoder_architecture", False),
            ("parallel_attn", True),
            ("alibi", False),
            ("bias", False),
        ),
        notes=(
            "Parallel attention and MLP reading one shared LayerNorm (as GPT-J), multi-query "
            "attention (K/V heads expanded), rotary (positions only)."
        ),
    )
)
