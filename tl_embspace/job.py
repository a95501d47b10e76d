"""The main job: interpret every parameter of a model and write the results as an atlas.

The folder's format, and the safe replacement of an existing one, belong to
``tl_embspace.atlas`` (read the result back with ``tl_embspace.atlas.Atlas.open(folder)``).
"""

import ctypes
import ctypes.util
import functools
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from .adapters import adapt
from .atlas import AtlasWriter, unembedding_hash
from .errors import InvalidArgumentError
from .interpreters import InterpreterSpec, copying_scores, interpreters
from .interpreters._base import display_vocab, require_positive_int, select
from .results import PairProjection, Provenance, VectorProjection
from .space import EmbeddingSpace
from .tokens import TokenFilter
from .vocab import VOCAB_MODES, CorpusCounts, choose_vocabulary, describe_filter

#: The per-row interpreters the job runs in every layer (FF neurons, Q/K/V/O sub-heads, and on
#: sparse-MoE layers every expert's neurons, labelled by expert, and the router's columns); the
#: others it runs are the registry's head-scope ones (SVDs of each head's circuits, QK/OV pairs)
#: and its per-component ones (singular directions of W_in and W_out, dense layers only).
ROW_INDEX = ("neuron", "head", "kv_head", "expert")


def job_interpreters(lw: Any) -> dict[str, list[InterpreterSpec]]:
    """What the job runs on a layer, selected from the interpreter registry in its stable order.

    Args:
        lw: The layer's ``LayerWeights``: interpreters that need what the layer lacks (a gate, an
            MLP) are left out.

    Returns:
        ``rows`` (one call per layer, a row per neuron or sub-head), ``head_vectors`` (one call
        per head, rows concatenated), ``components`` (SVD directions of the MLP matrices) and
        ``pairs`` (one call per head).
    """
    select = interpreters.select
    return {
        "rows": select(produces="vectors", scope="layer", indexed_by=ROW_INDEX, applies_to=lw),
        "head_vectors": select(produces="vectors", scope="head", applies_to=lw),
        "components": select(
            produces="vectors", scope="layer", indexed_by="component", applies_to=lw
        ),
        "pairs": select(produces="pairs", scope="head", applies_to=lw),
    }


def _layer_results(
    space: EmbeddingSpace,
    layer: int,
    *,
    k: int,
    pair_k: int,
    svd_components: int,
    token_filter: TokenFilter | None,
    tick,
    seconds: dict[str, float],
) -> tuple[dict[str, VectorProjection], list[PairProjection]]:
    """One layer's results; ``seconds`` receives the time of each stage (rows, svd, pairs)."""
    spec = space.view.spec
    vectors: dict[str, VectorProjection] = {}
    chosen = job_interpreters(space.view.layer(layer))
    t0 = time.perf_counter()
    for interp in chosen["rows"]:
        vectors[interp.name] = interp(space, layer=layer, k=k, token_filter=token_filter)
        tick()
    t1 = time.perf_counter()
    comps = list(range(min(svd_components, spec.d_head)))
    for interp in chosen["head_vectors"]:
        vectors[interp.name] = _concat(
            [
                interp(space, layer=layer, head=h, k=k, components=comps, token_filter=token_filter)
                for h in range(spec.n_heads)
            ]
        )
    mlp_comps = list(range(min(svd_components, spec.d_model, spec.d_mlp)))
    for interp in chosen["components"]:
        vectors[interp.name] = interp(
            space, layer=layer, k=k, components=mlp_comps, token_filter=token_filter
        )
    tick()
    t2 = time.perf_counter()
    pairs = []
    for h in range(spec.n_heads):
        for interp in chosen["pairs"]:
            pairs.append(interp(space, layer=layer, head=h, k=pair_k, token_filter=token_filter))
        tick()
    t3 = time.perf_counter()
    seconds.update(rows=round(t1 - t0, 3), svd=round(t2 - t1, 3), pairs=round(t3 - t2, 3))
    return vectors, pairs


@functools.cache
def _malloc_trim() -> Any:
    """The C library's ``malloc_trim``, or None where it is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _return_freed_memory() -> None:
    """Hand the pages a finished layer freed back to the OS (glibc only; elsewhere nothing).

    A layer's score blocks and factors are freed when it ends, but glibc keeps freed heap pages
    mapped for reuse, so they stay in the resident set. On SmolLM2 (10 layers, one thread) the
    trim lowered the resident set between layers by ~0.2 GiB and the peak by ~0.1 GiB.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


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
    vocab: str = "hygiene",
    corpus: CorpusCounts | None = None,
    min_count: int = 1,
    copying_tokens: int = 2048,
    overwrite: bool = False,
    progress: bool = True,
    search_index: bool = True,
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
        vocab: ``"hygiene"`` (default): leave out special, unreachable, illegible, under-trained
            and fragment tokens and standardise scores over random directions; ``"raw"``: the
            paper's view (see ``tl_embspace.vocab.defaults``). Recorded in the manifest's
            ``options["vocab"]`` and in every result's basis names.
        corpus: Under ``"hygiene"``, also leave out tokens seen fewer than ``min_count`` times
            in these counts (``tl_embspace.vocab.count_tokens``).
        min_count: See ``corpus``.
        copying_tokens: Tokens sampled for each OV head's copying score.
        overwrite: Replace the atlas at ``out``. Anything else at ``out`` is refused.
        progress: Show a progress bar.
        search_index: Also write ``index.sqlite`` (see ``tl_embspace.atlas.search``); it can be
            built later with ``tl-embspace atlas FOLDER --index``.

    Returns:
        The output folder (read it with ``tl_embspace.atlas.Atlas.open``).

    Raises:
        OutputFolderError: ``out`` may not be written (see
            ``tl_embspace.atlas.check_output_folder``); raised before any work.
        InvalidArgumentError: ``weights`` is not one of the three names, ``vocab`` not one of
            ``"hygiene"``, ``"raw"``, or a count is below 1.
        OptionError: a count is not an int.
        BasisError: ``read`` or ``write`` is not linear (the job scores token pairs).
    """
    if weights not in ("raw", "folded", "auto"):
        raise InvalidArgumentError(f"weights must be 'raw', 'folded' or 'auto', got {weights!r}")
    if vocab not in VOCAB_MODES:
        raise InvalidArgumentError(f"vocab must be one of {VOCAB_MODES}, got {vocab!r}")
    counts = dict(k=k, pair_k=pair_k, svd_components=svd_components, copying_tokens=copying_tokens)
    for name, value in counts.items():  # refused now, not after the first layers' work
        require_positive_int(name, value)
    writer = AtlasWriter(out, overwrite=overwrite)  # refuses a folder it must not replace, now
    view = adapt(model)
    if weights == "auto":
        weights = "raw" if view.spec.residual_normalised_in_place else "folded"
    if weights == "folded":
        view = view.folded()
    raw_space = EmbeddingSpace(view, read=read, write=write, tokenizer=model.tokenizer)
    for side in ("read", "write"):  # refused now, not at the first pair search
        raw_space.basis(side).require_linear("the whole-model job (QK/OV pairs, copying scores)")
    chosen_vocab = choose_vocabulary(
        raw_space, vocab, token_filter=token_filter, corpus=corpus, min_count=min_count
    )
    space = chosen_vocab.space
    spec = view.spec
    # The interpreters' own selection rules: out-of-range ids, bools and duplicates are refused.
    layers = select(layers, spec.n_layers, "layers")
    # An upper bound per layer (a layer without a gate or an MLP ticks fewer times).
    rows = interpreters.select(produces="vectors", scope="layer", indexed_by=ROW_INDEX)
    steps_per_layer = len(rows) + 1 + spec.n_heads
    started = time.perf_counter()
    from tqdm.auto import tqdm

    from .report import write_site

    # The job edits no weight: check the model's version once, not on every weight access.
    with view.pinned(), writer:
        bar = tqdm(
            total=len(layers) * steps_per_layer,
            desc=f"interpreting {spec.model_name}",
            disable=not progress,
            unit="step",
        )
        layer_seconds, stage_seconds = {}, {}
        # Copying scores keep their definition (raw OV scores, every token) under any vocab.
        # A hybrid's state-space/convolution layers have no OV circuit: scored layers only.
        # Scored layer by layer (the same seeded token sample each time), so that each layer's
        # weights are read once and released before the next.
        copying_rows, copy_seconds = [], 0.0
        for done, layer in enumerate(layers, start=1):
            t0 = time.perf_counter()
            bar.set_postfix(layer=layer)
            vectors, pairs = _layer_results(
                space,
                layer,
                k=k,
                pair_k=pair_k,
                svd_components=svd_components,
                token_filter=chosen_vocab.token_filter,
                tick=lambda: bar.update(1),
                seconds=stage_seconds.setdefault(layer, {}),
            )
            writer.write_layer(layer, vectors, pairs)
            layer_seconds[layer] = round(time.perf_counter() - t0, 2)
            if layer in spec.attention_layers:
                t0 = time.perf_counter()
                copying_rows.append(
                    copying_scores(raw_space, layers=[layer], n_tokens=copying_tokens)
                )
                copy_seconds += time.perf_counter() - t0
            view.release(layer)
            _return_freed_memory()
            bar.n = done * steps_per_layer  # layers without a gate/MLP tick fewer times
            bar.refresh()
        bar.close()
        attn_layers = [layer for layer in layers if layer in spec.attention_layers]
        copying = torch.cat(copying_rows) if copying_rows else torch.zeros(0, spec.n_heads)
        copy_seconds = round(copy_seconds, 2)
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
                "token_filter": describe_filter(token_filter),
                "vocab": chosen_vocab.record,
                "copying_tokens": copying_tokens,
                # Layers whose token mixer is not attention (hybrids): their attention
                # interpreters and copying scores were skipped, their MLPs read.
                "attention_skipped": {
                    str(layer): spec.mixers[layer] for layer in layers if layer not in attn_layers
                },
            },
            copying_scores=(attn_layers, copying.numpy(), copying_tokens),
            timings={
                "layers": layer_seconds,
                # Per layer: the row interpreters, the SVD directions, the token-pair searches.
                "stages": stage_seconds,
                "copying_scores": copy_seconds,
                "total": round(time.perf_counter() - started, 2),
            },
            # The model's own unembedding (what Atlas.matches(model) hashes), not the normalised.
            unembedding_hash=unembedding_hash(raw_space.write.matrix, raw_space.write.bias),
            report=write_site,
            search_index=search_index,
        )
    return writer.out


#: Manifest fields every shard of one run shares (``options`` apart from ``layers``, too).
_SHARED_FIELDS = ("format", "provenance", "spec", "unembedding_hash")


def merge_atlases(
    out: "str | os.PathLike[str]",
    shards: "list[str | os.PathLike[str]]",
    *,
    overwrite: bool = False,
    search_index: bool = True,
) -> Path:
    """Merge atlases of the same run over disjoint layers (shards) into one atlas.

    The per-layer work is independent, so a model can be sharded over processes or machines:
    ``tl-embspace run --layers 0 1 ... --out shard0`` and so on, then
    ``tl-embspace merge OUT shard0 shard1 ...``. Layer files are copied byte for byte, the
    copying scores and timings are joined, and the HTML atlas and search index are rebuilt, so
    the result equals, file by file and byte for byte, one run over the union of the layers in
    ascending order (the manifest's ``timings_s`` apart: seconds differ from run to run; here
    they are the shards' own, and ``total`` their sum).

    Args:
        out: The merged atlas's folder (as for :func:`interpret_model`).
        shards: The shard folders, in any order.
        overwrite: Replace an atlas at ``out``.
        search_index: Also write ``index.sqlite``.

    Returns:
        The output folder.

    Raises:
        InvalidArgumentError: Fewer than two shards, shards of different runs (model, weights,
            bases, options, software versions), or shards sharing a layer.
        AtlasError: A shard is not a complete atlas.
        OutputFolderError: ``out`` may not be written.
    """
    from .atlas import Atlas
    from .report import write_site

    if len(shards) < 2:
        raise InvalidArgumentError(f"merging needs at least two shard folders, got {len(shards)}")
    writer = AtlasWriter(out, overwrite=overwrite)  # refuses a folder it must not replace, now
    atlases = [Atlas.open(folder) for folder in shards]
    first = atlases[0]
    if first.unembedding_hash is None:
        raise InvalidArgumentError(
            f"{first.folder} is an atlas of the older format {first.format!r}; re-run the shards "
            "with this version to merge them"
        )

    def shared(atlas: Atlas) -> dict[str, Any]:
        # Which layers a shard holds, and which of them are not attention, differ by shard.
        per_shard = ("layers", "attention_skipped")
        options = {key: v for key, v in atlas.options.items() if key not in per_shard}
        fields = {name: atlas.manifest.get(name) for name in _SHARED_FIELDS}
        copying = {key: v for key, v in atlas.manifest["copying_scores"].items() if key != "scores"}
        del copying["layers"]
        return {**fields, "options": options, "copying_scores": copying}

    for atlas in atlases[1:]:
        a, b = shared(first), shared(atlas)
        differing = sorted(key for key in a if a[key] != b[key])
        if differing or atlas.vocab != first.vocab:
            raise InvalidArgumentError(
                f"{atlas.folder} and {first.folder} are not shards of one run: their "
                f"{', '.join(differing or ['vocab'])} differ; run every shard with the same "
                "model, options and software"
            )
    owner: dict[int, Atlas] = {}
    for atlas in atlases:
        for layer in atlas.layers:
            if layer in owner:
                raise InvalidArgumentError(
                    f"layer {layer} is in both {owner[layer].folder} and {atlas.folder}; "
                    "shards must hold disjoint layers"
                )
            owner[layer] = atlas
    layers = sorted(owner)
    rows, skipped = {}, {}
    for atlas in atlases:
        cs = atlas.manifest["copying_scores"]
        rows.update(zip(cs["layers"], cs["scores"], strict=True))
        skipped.update(atlas.options.get("attention_skipped", {}))
    scored = sorted(rows)  # a hybrid's non-attention layers have no copying scores
    seconds = {str(layer): owner[layer].timings["layers"][str(layer)] for layer in layers}
    stages = {
        str(layer): owner[layer].timings.get("stages", {}).get(str(layer)) for layer in layers
    }
    options = {**first.options, "layers": layers}
    if "attention_skipped" in options:  # a hybrid's non-attention layers, in layer order
        options["attention_skipped"] = dict(sorted(skipped.items(), key=lambda kv: int(kv[0])))
    with writer:
        for layer in layers:
            writer.copy_layer(owner[layer], layer)
        writer.finish(
            vocab=first.vocab,
            provenance=first.provenance,
            spec=first.spec,
            options=options,
            copying_scores=(
                scored,
                [rows[layer] for layer in scored],
                first.copying_scores.n_tokens,
            ),
            timings={
                "layers": seconds,
                "stages": stages,
                "copying_scores": round(sum(a.timings["copying_scores"] for a in atlases), 2),
                "total": round(sum(a.timings["total"] for a in atlases), 2),
                "merged_from": len(atlases),
            },
            unembedding_hash=first.unembedding_hash,
            report=write_site,
            search_index=search_index,
        )
    return writer.out
