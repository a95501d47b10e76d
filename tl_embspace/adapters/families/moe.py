"""Sparse mixture-of-experts decoders: Llama-style blocks whose MLP is a routed set of experts.

Each expert is a gated MLP of its own (``LayerWeights.experts``: ``W_in``/``W_gate``/``W_out``
per expert), read as FF keys and values labelled by expert; the router (``W_router [d_model,
n_experts]``) is read in embedding space too: column ``e`` projected to the vocabulary says which
tokens' directions raise expert ``e``'s routing logit. A shared expert (Qwen2-MoE, Ernie-4.5) is
one more MLP on every token (``LayerWeights.shared_expert``), with its sigmoid gate
(``W_shared_gate``) where it has one. The routing rule every family here uses is spelt out in
``MoELayout``; the hook checks rebuild each MoE layer through it.
"""

from . import Family, MoELayout, add

_MOE_NOTE = (
    "Each expert's neurons are FF keys/values of their own (labelled by expert); a key's score "
    "says what the expert's neuron reads, not how often the expert is routed to (the router "
    "column does, read with the 'router' interpreter)."
)

MIXTRAL = add(
    Family(
        name="mixtral",
        architectures=frozenset({"MixtralForCausalLM"}),
        understands=frozenset({"num_experts"}),
        moe=MoELayout(norm_topk_prob=True),
        notes=f"As Llama, with a sparse MoE MLP (softmax top-k, renormalised). {_MOE_NOTE}",
    )
)

QWEN2_MOE = add(
    Family(
        name="qwen2_moe",
        architectures=frozenset({"Qwen2MoeForCausalLM"}),
        understands=frozenset({"num_experts"}),
        moe=MoELayout(
            expert_width="moe_intermediate_size",
            shared_expert="shared_expert",
            shared_gate="shared_expert_gate",
        ),
        notes=(
            "As Qwen2, with a sparse MoE MLP (softmax top-k, renormalised when the config's "
            "norm_topk_prob says so) plus a shared expert on every token scaled by "
            "sigmoid(x W_shared_gate): the shared expert's neurons are read like a dense MLP's, "
            f"its gate as one more router column. {_MOE_NOTE}"
        ),
    )
)

QWEN3_MOE = add(
    Family(
        name="qwen3_moe",
        architectures=frozenset({"Qwen3MoeForCausalLM"}),
        understands=frozenset({"num_experts", "use_qk_norm"}),
        qk_norm=True,
        moe=MoELayout(expert_width="moe_intermediate_size"),
        notes=(
            "As Qwen3 (per-head q/k RMSNorm gains in the QK circuit), with a sparse MoE MLP "
            f"(softmax top-k, renormalised per norm_topk_prob). {_MOE_NOTE}"
        ),
    )
)

ERNIE_MOE = add(
    Family(
        name="ernie4_5_moe",
        architectures=frozenset({"Ernie4_5_MoeForCausalLM"}),
        understands=frozenset({"num_experts"}),
        moe=MoELayout(
            norm_topk_prob=True,
            expert_width="moe_intermediate_size",
            shared_expert="shared_experts",
            selection_bias="moe_statics.e_score_correction_bias",
            renorm_floor="moe_norm_min",
        ),
        notes=(
            "As Ernie-4.5, with sparse MoE MLPs from moe_layer_start_index on (earlier layers "
            "dense; spec.moe_layers): experts are selected by softmax probability plus a "
            "correction bias (router_selection_bias; it selects, it does not weight), weighted "
            "by their renormalised probabilities, plus an ungated shared expert on every token. "
            f"{_MOE_NOTE}"
        ),
    )
)

OLMOE = add(
    Family(
        name="olmoe",
        architectures=frozenset({"OlmoeForCausalLM"}),
        understands=frozenset({"num_experts", "use_qk_norm"}),
        qk_norm=True,
        qk_norm_scope="projection",
        moe=MoELayout(),
        notes=(
            "Pre-norm, with q/k RMSNorms over the whole projection (gains read per head into "
            "W_Q_qk/W_K_qk, as OLMo-2) and a sparse MoE MLP (softmax top-k, renormalised per "
            f"the config's norm_topk_prob). {_MOE_NOTE}"
        ),
    )
)

FLEX_OLMO = add(
    Family(
        name="flex_olmo",
        architectures=frozenset({"FlexOlmoForCausalLM"}),
        understands=frozenset({"num_experts", "use_qk_norm"}),
        norm_placement="sublayer",
        post_norms=True,
        qk_norm=True,
        qk_norm_scope="projection",
        moe=MoELayout(),
        notes=(
            "OLMo-2's block (no norm before attention/MLP; each sublayer's output RMS-normalised "
            "and scaled before the residual add: the experts' values are read as written, times "
            "the post-MLP gain) with a sparse MoE MLP (softmax top-k, norm_topk_prob from the "
            f"config). {_MOE_NOTE}"
        ),
    )
)
