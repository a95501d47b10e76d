"""Nemotron: LayerNorm1P (LayerNorm scaling by ``1 + weight``), a relu² MLP, partial rotary.

The view's norm weights include the 1 (``spec.norm_offset`` = 1.0), as for Gemma's RMSNorm, so
``x_hat * ln_w + ln_b`` is what each sublayer reads; ``folded()`` folds those effective weights
(and the biases) into the readers. The MLP is not gated: ``relu(x W_in + b_in)² W_out``.
"""

from . import Family, add

NEMOTRON = add(
    Family(
        name="nemotron",
        architectures=frozenset({"NemotronForCausalLM"}),
        understands=frozenset({"rmsnorm_uses_offset"}),
        norm_offset=1.0,
        notes=(
            "LayerNorm1P: norm weights are 1 + w (the view's include the 1), with biases; "
            "relu² MLP (not gated); partial rotary (positions only)."
        ),
    )
)
