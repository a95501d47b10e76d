"""Whole-head statistics read off the weights alone."""

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ._base import Source, as_space, require_finite, require_positive_int, select


def copying_scores(
    source: Source,
    *,
    layers: "Sequence[int] | None" = None,
    n_tokens: int = 2048,
    seed: int = 0,
    chunk: int = 512,
    **basis: Any,
) -> Float[Tensor, "n_layers n_heads"]:
    """Copying score of every OV head: how often attending to token t promotes t itself most.

    For a seeded sample of ``n_tokens`` token ids t (all of them when the vocabulary is
    smaller), the row ``(Bᵣᵀ W_V W_O B_w)[t, :]`` is scored exactly against the whole vocabulary
    and the score is the fraction of sampled t whose argmax is t. A copying head (induction,
    duplicate-token) scores near 1; a random head about ``1 / d_vocab``.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layers: The layers to score; None for every attention layer (all of them, except in a
            hybrid model, whose state-space/convolution layers have no OV circuit: asking for
            one raises ``UnsupportedLayerError``).
        n_tokens: How many token ids to sample.
        seed: Seed of the sample.
        chunk: Tokens scored per matrix product (memory bound).
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).

    Returns:
        ``[n_layers_selected, n_heads]`` float tensor of scores in [0, 1].
    """
    n_tokens = require_positive_int("n_tokens", n_tokens)
    chunk = require_positive_int("chunk", chunk)
    space = as_space(source, **basis)
    view, spec = space.view, space.view.spec
    d_vocab = space.read.matrix.shape[1]
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randperm(d_vocab, generator=gen)[: min(n_tokens, d_vocab)].sort().values
    # Drawn on the CPU (the same ids on every device), then used where the weights are.
    tokens = tokens.to(space.read.matrix.device)
    # Every attention layer by default (a hybrid's mixer layers have no OV circuit); a mixer
    # layer asked for by name is refused by the view (UnsupportedLayerError).
    wanted = list(spec.attention_layers) if layers is None else list(layers)
    layer_ids = select(wanted, spec.n_layers, "layers")
    out = torch.zeros(len(layer_ids), spec.n_heads)
    # Every chunk's scores go into one reused block: a fresh [chunk, d_vocab] block per
    # product (~100 MB for SmolLM2) costs about as much again in page faults as the product.
    block: Tensor | None = None
    for li, layer in enumerate(layer_ids):
        lw = view.layer(layer)
        for h in range(spec.n_heads):
            # left [n, d_head], right [d_vocab, d_head]
            left = space.vocab_factor(lw.W_V[h], "read", layer, tokens, purpose="copying_scores")
            right = space.vocab_factor(
                lw.W_O_written[h].T, "write", layer, purpose="copying_scores"
            )
            # An argmax over NaN scores returns an ordinary-looking id: refuse instead.
            require_finite(
                f"the OV circuit of layer {layer} head {h} in vocabulary space", left, right
            )
            if block is None:
                block = left.new_empty(min(chunk, len(tokens)), right.shape[0])
            hits = 0
            for start in range(0, len(tokens), chunk):
                rows = left[start : start + chunk]
                scores = torch.matmul(rows, right.T, out=block[: rows.shape[0]])
                best = scores.argmax(-1)
                hits += int((best == tokens[start : start + chunk]).sum())
            out[li, h] = hits / len(tokens)
    return out


__all__ = ["copying_scores"]
