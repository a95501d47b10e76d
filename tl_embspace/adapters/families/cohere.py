"""Cohere (Command-R) and Cohere2 (Command-A): parallel blocks, one LayerNorm, scaled logits.

Attention and the SwiGLU MLP read the same residual through one shared LayerNorm without bias
(reported as ``ln1`` and ``ln2``, as for GPT-J). The model multiplies its logits by
``config.logit_scale``: the view records the factor in ``spec.logit_scale``, ``view.logits``
applies it, and ``folded()`` folds it into ``W_U`` as TransformerLens's processing does. A
positive factor changes no ranking, so projections through the raw ``W_U`` read the same
tokens (scores scaled by the factor). Rotary pairs adjacent dimensions; Cohere2's global layers
have none (positions only: QK pairs are content-only). Per-head q/k LayerNorms
(``use_qk_norm``) centre each head's query, which the view does not model: refused by the
layout check (q/k norms not declared).
"""

from . import Family, add

COHERE = add(
    Family(
        name="cohere",
        architectures=frozenset({"CohereForCausalLM", "Cohere2ForCausalLM"}),
        understands=frozenset({"parallel_attn_mlp"}),
        shared_norm=True,
        logit_scale=True,
        notes=(
            "Parallel attention and MLP reading one shared LayerNorm (no bias; reported as ln1 "
            "and ln2); logits times config.logit_scale (spec.logit_scale, applied by "
            "view.logits, folded into W_U by folded(); rankings through the raw W_U are "
            "unchanged)."
        ),
    )
)
