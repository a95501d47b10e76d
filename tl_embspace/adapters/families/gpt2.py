"""GPT-2: LayerNorm before each sublayer, learned absolute positions, GELU MLP, biases."""

from . import Family, add

GPT2 = add(
    Family(
        name="gpt2",
        architectures=frozenset(
            {
                "GPT2LMHeadModel",
                "GPTBigCodeForCausalLM",
                "GPTNeoForCausalLM",
                "Jais2ForCausalLM",
            }
        ),
        notes=(
            "LayerNorm; learned absolute positions (W_pos) where the model has them (GPT-Neo, "
            "BigCode MQA, Jais-2); plain (non-gated) MLP."
        ),
    )
)
