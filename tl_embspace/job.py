"""The main job: interpret every parameter of a model and write the results to a folder.

Layout of the output folder::

    manifest.json        provenance, model spec, options, timings, file index, copying scores
    vocab.json           display string of every token id (whitespace made visible)
    L{layer:02d}.npz     per interpreter ``{name}.top_ids/top_scores/bottom_ids/bottom_scores``
                         ([n, k] arrays) and ``{name}.extra.{key}`` columns
    L{layer:02d}.json    per interpreter its row labels and note; the QK/OV token pairs of every
                         head (already small, so stored whole)
    index.html           a first human-readable page (see ``tl_embspace.report``)

Everything is written to a temporary folder first and moved into place at the end, so an
interrupted run never leaves a half-written result behind.
"""

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adapters import adapt
from .analysis import copying_scores
from .interpreters import interpret
from .interpreters._base import display_vocab
from .results import PairProjection, Provenance, VectorProjection
from .space import EmbeddingSpace
from .tokens import TokenFilter

VECTOR_INTERPRETERS = ("ff_key", "ff_gate", "ff_value", "q", "k", "v", "o")
SVD_INTERPRETERS = ("svd_ov", "svd_qk", "svd_in", "svd_out")


def _layer_results(space: EmbeddingSpace, layer: int, *, k: int, pair_k: int, svd_components: int,
                   token_filter: TokenFilter | None, tick) -> tuple[dict[str, VectorProjection], list[PairProjection]]:
    spec = space.view.spec
    vectors: dict[str, VectorProjection] = {}
    lw = space.view.layer(layer)
    for name in VECTOR_INTERPRETERS:
        if (name == "ff_gate" and lw.W_gate is None) or (name.startswith("ff_") and lw.W_in is None):
            continue  # non-gated MLP, or an attention-only layer
        vectors[name] = interpret(name, space, layer=layer, k=k, token_filter=token_filter)
        tick()
    comps = list(range(min(svd_components, spec.d_head)))
    per_head = [interpret(f, space, layer=layer, head=h, k=k, components=comps, token_filter=token_filter)
                for f in ("svd_ov", "svd_qk") for h in range(spec.n_heads)]
    for name in ("svd_ov", "svd_qk"):
        parts = [p for p in per_head if p.interpreter == name]
        vectors[name] = _concat(parts)
    if lw.W_in is not None:
        mlp_comps = list(range(min(svd_components, spec.d_model, spec.d_mlp)))
        for name in ("svd_in", "svd_out"):
            vectors[name] = interpret(name, space, layer=layer, k=k, components=mlp_comps, token_filter=token_filter)
    tick()
    pairs = []
    for h in range(spec.n_heads):
        for name in ("qk_pairs", "ov_pairs"):
            pairs.append(interpret(name, space, layer=layer, head=h, k=pair_k, token_filter=token_filter))
        tick()
    return vectors, pairs


def _concat(parts: list[VectorProjection]) -> VectorProjection:
    """One VectorProjection of the rows of several (same interpreter, per-head calls)."""
    first = parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    extras = {key: sum((p.extras[key] for p in parts), []) for key in first.extras}
    return replace(first, labels=sum((p.labels for p in parts), ()), top_ids=cat("top_ids"),
                   top_scores=cat("top_scores"), bottom_ids=cat("bottom_ids"),
                   bottom_scores=cat("bottom_scores"), extras=extras)


def _save_layer(folder: Path, layer: int, vectors: dict[str, VectorProjection], pairs: list[PairProjection]) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"layer": layer, "vectors": {}, "pairs": []}
    for name, r in vectors.items():
        arrays[f"{name}.top_ids"] = r.top_ids.numpy().astype(np.int32)
        arrays[f"{name}.top_scores"] = r.top_scores.numpy()
        arrays[f"{name}.bottom_ids"] = r.bottom_ids.numpy().astype(np.int32)
        arrays[f"{name}.bottom_scores"] = r.bottom_scores.numpy()
        for key, col in r.extras.items():
            arrays[f"{name}.extra.{key}"] = np.asarray(col)
        meta["vectors"][name] = {"labels": list(r.labels), "side": r.side, "basis": r.basis, "note": r.note}
    for p in pairs:
        d = p.to_dict()
        d.pop("provenance")
        meta["pairs"].append(d)
    np.savez_compressed(folder / f"L{layer:02d}.npz", **arrays)
    (folder / f"L{layer:02d}.json").write_text(json.dumps(meta, ensure_ascii=False))


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
        out: Output folder; must not exist unless ``overwrite=True``.
        weights: "raw" (the weights as loaded), "folded" (norm weights folded in on the fly, so
            ``W_U`` includes the final norm's gain, as the model applies it) or "auto": folded
            for pre-norm models, raw for post-norm encoders (which cannot be folded).
        read, write: Basis names (see ``tl_embspace.space``).
        layers: Only these layers (default all).

    Returns:
        The output folder.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass overwrite=True (--overwrite)")
    if weights not in ("raw", "folded", "auto"):
        raise ValueError(f"weights must be 'raw', 'folded' or 'auto', got {weights!r}")
    view = adapt(model)
    if weights == "auto":
        weights = "folded" if view.spec.norm_placement == "pre" else "raw"
    if weights == "folded":
        view = view.folded()
    space = EmbeddingSpace(view, read=read, write=write, tokenizer=model.tokenizer)
    spec = view.spec
    layers = list(range(spec.n_layers)) if layers is None else [l % spec.n_layers for l in layers]
    steps_per_layer = len(VECTOR_INTERPRETERS) + 1 + spec.n_heads
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(layers) * steps_per_layer, desc=f"interpreting {spec.model_name}", disable=not progress, unit="step")
        layer_seconds = {}
        for done, layer in enumerate(layers, start=1):
            t0 = time.perf_counter()
            bar.set_postfix(layer=layer)
            vectors, pairs = _layer_results(space, layer, k=k, pair_k=pair_k, svd_components=svd_components,
                                            token_filter=token_filter, tick=lambda: bar.update(1))
            _save_layer(tmp, layer, vectors, pairs)
            layer_seconds[layer] = round(time.perf_counter() - t0, 2)
            bar.n = done * steps_per_layer  # layers without a gate/MLP tick fewer times
            bar.refresh()
        bar.close()
        t0 = time.perf_counter()
        copying = copying_scores(space, layers=layers, n_tokens=copying_tokens)
        copy_seconds = round(time.perf_counter() - t0, 2)
        vocab = display_vocab(space, space.write.matrix.shape[1])
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        manifest = {
            "format": "tl_embspace.job/1",
            "provenance": asdict(Provenance.of(space)),
            "spec": asdict(spec),
            "options": {"k": k, "pair_k": pair_k, "svd_components": svd_components, "layers": layers,
                        "weights": weights, "read": read, "write": write,
                        "token_filter": None if token_filter is None else asdict(token_filter),
                        "copying_tokens": copying_tokens},
            "copying_scores": {"layers": layers, "scores": copying.tolist(), "n_tokens": copying_tokens,
                               "definition": "fraction of sampled tokens t whose top promoted token under the head's OV circuit is t"},
            "timings_s": {"layers": layer_seconds, "copying_scores": copy_seconds,
                          "total": round(time.perf_counter() - started, 2)},
            "files": sorted([p.name for p in tmp.iterdir()] + ["manifest.json", "index.html"]),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        from .report import render_job

        (tmp / "index.html").write_text(render_job(tmp), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_layer(folder: "str | os.PathLike[str]", layer: int) -> dict[str, Any]:
    """Read back one layer of a job folder: ``{"arrays": {...}, "meta": {...}, "vocab": [...]}``."""
    folder = Path(folder)
    with np.load(folder / f"L{layer:02d}.npz") as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads((folder / f"L{layer:02d}.json").read_text())
    vocab = json.loads((folder / "vocab.json").read_text())
    return {"arrays": arrays, "meta": meta, "vocab": vocab}
