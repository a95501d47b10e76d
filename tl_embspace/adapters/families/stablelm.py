"""StableLM: LayerNorm (with bias) before each sublayer, a SwiGLU MLP, partial rotary.

A LayerNorm bias folded into a gated MLP reaches the gate too: ``folded()`` writes it to
``b_gate`` (``act(x W_gate + b_gate) * (x W_in + b_in)``), as TransformerLens's processing does.
Rotary covers a quarter of each head (positions only: QK pairs are content-only). The
parallel-residual variant (``use_parallel_residual``) and per-head q/k LayerNorms
(``qk_layernorm``) are refused (by the configuration and layout checks).
"""

from . import Family, add

STABLELM = add(
    Family(
        name="stablelm",
        architectures=frozenset({"StableLmForCausalLM"}),
        notes=(
            "LayerNorm with a gated MLP (a folded LayerNorm bias lands in b_gate); q/k/v "
            "biases; partial rotary (positions only)."
        ),
    )
)
