"""GLM and GLM-4 decoders: RMSNorm, fused ``gate_up_proj`` SwiGLU, partial interleaved rotary.

GLM-4 adds "sandwich" norms: besides the norm before each sublayer, each sublayer's output is
RMS-normalised and scaled before the residual add (``ln1_post_w``/``ln2_post_w``, as Gemma-2's
but without the ``1 + w`` offset). The bridge splits the fused ``gate_up_proj`` into ``W_gate``
and ``W_in``. Rotary covers only part of each head and pairs adjacent dimensions (positions
only: QK pairs are content-only).
"""

from . import Family, add

GLM = add(
    Family(
        name="glm",
        architectures=frozenset({"GlmForCausalLM"}),
        notes=(
            "As Llama (RMSNorm before each sublayer, SwiGLU from a fused gate_up_proj split "
            "into W_gate/W_in); partial interleaved rotary (positions only)."
        ),
    )
)

GLM4 = add(
    Family(
        name="glm4",
        architectures=frozenset({"Glm4ForCausalLM"}),
        post_norms=True,
        notes=(
            "As GLM, plus post-sublayer (sandwich) RMSNorms: each sublayer's output is "
            "normalised and scaled (ln1_post_w/ln2_post_w, in W_O_written/W_out_written) "
            "before the residual add."
        ),
    )
)
