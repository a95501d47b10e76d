"""GPT-NeoX (Pythia): parallel attention and MLP, each with its own LayerNorm; partial rotary."""

from . import Family, add

NEOX = add(
    Family(
        name="neox",
        architectures=frozenset({"GPTNeoXForCausalLM"}),
        understands=frozenset({"parallel_attn_mlp"}),
        notes=(
            "Parallel attention and MLP (each reads the block's input through its own norm); "
            "partial rotary (positions only: QK pairs are content-only)."
        ),
    )
)

PARALLEL_SHARED_NORM = add(
    Family(
        name="parallel-shared-norm",
        architectures=frozenset(
            {
                "GPTJForCausalLM",
                "PhiForCausalLM",
            }
        ),
        understands=frozenset({"parallel_attn_mlp"}),
        shared_norm=True,
        notes=(
            "Parallel attention and MLP reading one shared norm (reported as both ln1 and ln2, "
            "as HookedTransformer does); partial rotary (positions only)."
        ),
    )
)
