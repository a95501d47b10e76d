"""GPT-2: LayerNorm before each sublayer, learned absolute positions, GELU MLP, biases."""

from . import Family, add

GPT2 = add(
    Family(
        name="gpt2",
        architectures=frozenset({"GPT2LMHeadModel"}),
        notes="LayerNorm, learned absolute positions (W_pos), GELU MLP with biases.",
    )
)
