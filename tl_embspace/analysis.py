"""Whole-head statistics read off the weights alone."""

import torch

from .space import EmbeddingSpace


def copying_scores(
    space: EmbeddingSpace,
    *,
    layers: "list[int] | None" = None,
    n_tokens: int = 2048,
    seed: int = 0,
    chunk: int = 512,
) -> torch.Tensor:
    """Copying score of every OV head: how often attending to token t promotes t itself most.

    For a seeded sample of ``n_tokens`` token ids t (all of them when the vocabulary is
    smaller), the row ``(Bᵣᵀ W_V W_O B_w)[t, :]`` is scored exactly against the whole vocabulary
    and the score is the fraction of sampled t whose argmax is t. A copying head (induction,
    duplicate-token) scores near 1; a random head about ``1 / d_vocab``.

    Returns:
        ``[n_layers_selected, n_heads]`` float tensor of scores in [0, 1].
    """
    view, spec = space.view, space.view.spec
    d_vocab = space.read.matrix.shape[1]
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randperm(d_vocab, generator=gen)[: min(n_tokens, d_vocab)].sort().values
    layers = list(range(spec.n_layers)) if layers is None else layers
    out = torch.zeros(len(layers), spec.n_heads)
    for li, layer in enumerate(layers):
        lw = view.layer(layer)
        for h in range(spec.n_heads):
            left = space.vocab_factor(lw.W_V[h], "read", layer, tokens, purpose="copying_scores")  # [n, d_head]
            right = space.vocab_factor(lw.W_O[h].T, "write", layer, purpose="copying_scores")  # [d_vocab, d_head]
            hits = 0
            for start in range(0, len(tokens), chunk):
                best = (left[start : start + chunk] @ right.T).argmax(-1)
                hits += int((best == tokens[start : start + chunk]).sum())
            out[li, h] = hits / len(tokens)
    return out
