"""GPT-1 (OpenAI GPT): a post-norm decoder with learned positions and no final norm.

Like BERT's blocks, each LayerNorm follows a residual add (``ln1`` after attention, ``ln2``
after the MLP), so the norm's output *is* the residual stream and nothing can be folded. There
is no final norm: the last block's ``ln2`` output goes straight to ``W_U``, so the readout is
``x @ W_U`` (``view.final_norm`` is the identity for a post-norm decoder).
"""

from . import Family, add

OPENAI_GPT = add(
    Family(
        name="openai-gpt",
        architectures=frozenset({"OpenAIGPTLMHeadModel"}),
        norm_placement="post",
        # HF's "gelu" here is gelu_new (tanh approximation); TransformerLens's config says relu.
        act_fn="gelu_new",
        hf_config=(("afn", "gelu"),),
        notes=(
            "Post-norm decoder (LayerNorm after each residual add, as BERT), learned positions; "
            "no final norm, so the readout is the residual times W_U; folding is refused."
        ),
    )
)
