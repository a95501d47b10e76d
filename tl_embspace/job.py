"""The main job: interpret every parameter of a model and write the results as an atlas.

The folder's format, and the safe replacement of an existing one, belong to
``tl_embspace.atlas`` (read the result back with ``tl_embspace.atlas.Atlas.open(folder)``).
"""

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from .adapters import adapt
from .analysis import copying_scores
from .atlas import AtlasWriter, unembedding_hash
from .errors import InvalidArgumentError
from .interpreters import interpret
from .interpreters._base import display_vocab
from .results import PairProjection, Provenance, VectorProjection
from .space import EmbeddingSpace
from .tokens import TokenFilter

# What the job runs in every layer: the one place to switch to the interpreter registry's specs.
#: One row per FF neuron (key, gate, value) and per Q/K/V/O sub-head.
VECTOR_INTERPRETERS = ("ff_key", "ff_gate", "ff_value", "q", "k", "v", "o")
#: Singular directions: of each head's OV and QK circuit (run per head), of W_in and W_out.
HEAD_SVD_INTERPRETERS = ("svd_ov", "svd_qk")
MLP_SVD_INTERPRETERS = ("svd_in", "svd_out")
SVD_INTERPRETERS = HEAD_SVD_INTERPRETERS + MLP_SVD_INTERPRETERS
#: Top and bottom token pairs of each head's QK and OV circuit.
PAIR_INTERPRETERS = ("qk_pairs", "ov_pairs")


def _layer_results(
    space: EmbeddingSpace,
    layer: int,
    *,
    k: int,
    pair_k: int,
    svd_components: int,
    token_filter: TokenFilter | None,
    tick,
) -> tuple[dict[str, VectorProjection], list[PairProjection]]:
    spec = space.view.spec
    vectors: dict[str, VectorProjection] = {}
    lw = space.view.layer(layer)
    for name in VECTOR_INTERPRETERS:
        if (name == "ff_gate" and lw.W_gate is None) or (
            name.startswith("ff_") and lw.W_in is None
        ):
            continue  # non-gated MLP, or an attention-only layer
        vectors[name] = interpret(name, space, layer=layer, k=k, token_filter=token_filter)
        tick()
    comps = list(range(min(svd_components, spec.d_head)))
    per_head = [
        interpret(f, space, layer=layer, head=h, k=k, components=comps, token_filter=token_filter)
        for f in HEAD_SVD_INTERPRETERS
        for h in range(spec.n_heads)
    ]
    for name in HEAD_SVD_INTERPRETERS:
        parts = [p for p in per_head if p.interpreter == name]
        vectors[name] = _concat(parts)
    if lw.W_in is not None:
        mlp_comps = list(range(min(svd_components, spec.d_model, spec.d_mlp)))
        for name in MLP_SVD_INTERPRETERS:
            vectors[name] = interpret(
                name, space, layer=layer, k=k, components=mlp_comps, token_filter=token_filter
            )
    tick()
    pairs = []
    for h in range(spec.n_heads):
        for name in PAIR_INTERPRETERS:
            pairs.append(
                interpret(name, space, layer=layer, head=h, k=pair_k, token_filter=token_filter)
            )
        tick()
    return vectors, pairs


def _concat(parts: list[VectorProjection]) -> VectorProjection:
    """One VectorProjection of the rows of several (same interpreter, per-head calls)."""
    first = parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    extras = {key: sum((p.extras[key] for p in parts), []) for key in first.extras}
    return replace(
        first,
        labels=sum((p.labels for p in parts), ()),
        top_ids=cat("top_ids"),
        top_scores=cat("top_scores"),
        bottom_ids=cat("bottom_ids"),
        bottom_scores=cat("bottom_scores"),
        extras=extras,
    )


def interpret_model(
    model: Any,
    out: "str | os.PathLike[str]",
    *,
    k: int = 20,
    pair_k: int = 50,
    svd_components: int = 8,
    layers: "list[int] | None" = None,
    weights: str = "auto",
    read: str = "W_E",
    write: str = "W_U",
    token_filter: TokenFilter | None = None,
    copying_tokens: int = 2048,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Interpret every parameter of ``model`` and write the results to the folder ``out``.

    Per layer: top/bottom ``k`` tokens of every FF key, gate and value and every Q/K/V/O
    sub-head; the top/bottom ``pair_k`` QK and OV token pairs of every head; the first
    ``svd_components`` singular directions of each head's OV (output side) and QK (query side)
    and of W_in and W_out. Plus the copying score of every OV head.

    Args:
        model: A TransformerLens model (with a tokenizer).
        out: Output folder: a new path, or (with ``overwrite=True``) an empty folder or one
            that holds an atlas and nothing else, which is then replaced atomically.
        k: Top/bottom tokens kept per vector.
        pair_k: Top/bottom token pairs kept per head circuit.
        svd_components: Singular directions kept per head circuit and MLP matrix.
        weights: "raw" (the weights as loaded), "folded" (norm weights folded in on the fly, so
            ``W_U`` includes the final norm's gain, as the model applies it) or "auto": folded
            for pre-norm models, raw for post-norm encoders (which cannot be folded).
        read: Read-side basis name (see ``tl_embspace.space``).
        write: Write-side basis name.
        layers: Only these layers (default all).
        token_filter: Tokens to leave out of every top/bottom list (None: keep all).
        copying_tokens: Tokens sampled for each OV head's copying score.
        overwrite: Replace the atlas at ``out``. Anything else at ``out`` is refused.
        progress: Show a progress bar.

    Returns:
        The output folder (read it with ``tl_embspace.atlas.Atlas.open``).

    Raises:
        OutputFolderError: ``out`` may not be written (see
            ``tl_embspace.atlas.check_output_folder``); raised before any work.
        InvalidArgumentError: ``weights`` is not one of the three names.
    """
    if weights not in ("raw", "folded", "auto"):
        raise InvalidArgumentError(f"weights must be 'raw', 'folded' or 'auto', got {weights!r}")
    writer = AtlasWriter(out, overwrite=overwrite)  # refuses a folder it must not replace, now
    view = adapt(model)
    if weights == "auto":
        weights = "folded" if view.spec.norm_placement == "pre" else "raw"
    if weights == "folded":
        view = view.folded()
    space = EmbeddingSpace(view, read=read, write=write, tokenizer=model.tokenizer)
    spec = view.spec
    layers = list(range(spec.n_layers)) if layers is None else [i % spec.n_layers for i in layers]
    steps_per_layer = len(VECTOR_INTERPRETERS) + 1 + spec.n_heads
    started = time.perf_counter()
    from tqdm.auto import tqdm

    from .report import render_job

    with writer:
        bar = tqdm(
            total=len(layers) * steps_per_layer,
            desc=f"interpreting {spec.model_name}",
            disable=not progress,
            unit="step",
        )
        layer_seconds = {}
        for done, layer in enumerate(layers, start=1):
            t0 = time.perf_counter()
            bar.set_postfix(layer=layer)
            vectors, pairs = _layer_results(
                space,
                layer,
                k=k,
                pair_k=pair_k,
                svd_components=svd_components,
                token_filter=token_filter,
                tick=lambda: bar.update(1),
            )
            writer.write_layer(layer, vectors, pairs)
            layer_seconds[layer] = round(time.perf_counter() - t0, 2)
            bar.n = done * steps_per_layer  # layers without a gate/MLP tick fewer times
            bar.refresh()
        bar.close()
        t0 = time.perf_counter()
        copying = copying_scores(space, layers=layers, n_tokens=copying_tokens)
        copy_seconds = round(time.perf_counter() - t0, 2)
        writer.finish(
            vocab=display_vocab(space, space.write.matrix.shape[1]),
            provenance=asdict(Provenance.of(space)),
            spec=asdict(spec),
            options={
                "k": k,
                "pair_k": pair_k,
                "svd_components": svd_components,
                "layers": layers,
                "weights": weights,
                "read": read,
                "write": write,
                "token_filter": None if token_filter is None else asdict(token_filter),
                "copying_tokens": copying_tokens,
            },
            copying_scores=(layers, copying.numpy(), copying_tokens),
            timings={
                "layers": layer_seconds,
                "copying_scores": copy_seconds,
                "total": round(time.perf_counter() - started, 2),
            },
            unembedding_hash=unembedding_hash(space.write.matrix, space.write.bias),
            report=render_job,
        )
    return writer.out
