"""IBM Granite (dense) and Granite-MoE: Llama-style blocks scaled by muP multipliers.

The multipliers come from the Hugging Face config and are recorded in ``ModelSpec``:

* ``embedding_multiplier`` -> ``spec.embed_scale``: token embeddings enter the residual times
  it; ``W_E`` in the view is the unscaled table (read-side scores are a constant apart).
* ``residual_multiplier`` -> ``spec.residual_multiplier``: every sublayer's output is multiplied
  by it before the residual add. The view folds it into what the sublayers write (``W_O``,
  ``b_O``, ``W_out``, ``b_out``, each expert's ``W_out``), so an OV circuit, an FF value or a
  logit-lens reading of them is exactly the residual's share.
* ``attention_multiplier`` -> ``spec.attn_scale``: replaces ``1 / sqrt(d_head)``; QK scores
  are unscaled (the order of pairs is unchanged).
* ``logits_scaling`` -> ``spec.logit_scale = 1 / logits_scaling``: ``view.logits`` divides as
  the model does; projection scores through ``W_U`` are unscaled logits (same order).
"""

from . import Family, MoELayout, add

_MUP = (
    "muP multipliers recorded in the spec: the residual multiplier is folded into W_O/b_O/W_out/"
    "b_out (what the residual receives), the logit lens divides by logits_scaling "
    "(spec.logit_scale); W_E is the unscaled table (spec.embed_scale) and QK scores are "
    "unscaled (spec.attn_scale): constant factors that leave every ranking unchanged."
)

GRANITE = add(
    Family(
        name="granite",
        architectures=frozenset({"GraniteForCausalLM"}),
        mup_multipliers=True,
        notes=f"As Llama, with {_MUP}",
    )
)

GRANITE_MOE = add(
    Family(
        name="granite_moe",
        architectures=frozenset({"GraniteMoeForCausalLM"}),
        understands=frozenset({"num_experts"}),
        mup_multipliers=True,
        # The router takes the top-k logits and softmaxes them: the renormalised top-k softmax.
        moe=MoELayout(router="router", norm_topk_prob=True),
        notes=(
            "As Granite, with a sparse MoE MLP (softmax over the top-k router logits, i.e. the "
            "renormalised top-k softmax); each expert's neurons are FF keys/values of their own "
            f"(labelled by expert). {_MUP}"
        ),
    )
)
