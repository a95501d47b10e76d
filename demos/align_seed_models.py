"""Align the two seed models in embedding space and in raw feature space (the baseline).

Two decoders trained by ``train_seed_models.py`` differ only in the seed, so their residual
streams have unrelated bases: raw coordinates cannot line up, while projections onto the shared
vocabulary can (Dar et al. §6 (a)). This script runs ``tl_embspace.apps.align`` on their folded
weights in

* ``embedding``: the paper's method, correlations over the whole vocabulary (``W_E`` reads,
  ``W_U`` writes; tied here, so one matrix);
* ``embedding_seen``: the same with the basis columns of tokens that never occur in the
  training text zeroed (those tokens never occur: the full softmax only trains their logits
  down, along a direction shared by all of them, so what tells them apart is their random
  initial embedding, which differs between seeds and is noise to the correlation);
* ``embedding_deflated``: the whole vocabulary with the basis's top ``--deflate`` principal
  directions over tokens projected out (beyond the paper: in these models one direction, the
  unseen tokens' shared shift, carries ~90% of the basis's variance over tokens and so dominates
  every projection's correlation whatever the layer; removing it is a d x d projection of the
  basis, so the columns stay one per token);
* ``raw``: the same pipeline on raw d_model coordinates (the baseline),

and scores each against what the answer should be:

* **layers**: layer ``i`` of A should match layer ``i`` of B (fraction matched, mean rank of the
  same-index layer in its row, per parameter group and combined);
* **heads and neurons** have no canonical order across seeds, so the reference is *functional*:
  the same text goes through both models, and heads are paired by the correlation of their
  attention patterns, neurons by the correlation of their activations (Hungarian matching within
  each same-index layer pair). Those quantities are basis-free, so they can be compared across
  seeds directly; the weight-based matching is scored by how often it agrees with them (chance:
  ``1 / n_heads`` and ``1 / d_mlp``). How strongly the reference pairs are correlated is written
  too: when heads do not correspond functionally, no method can match them.

Writes ``align_seed_models.json`` and ``align_seed_models.png`` (layer x layer heatmaps) into
``--out``.

Usage (from the repository root, after ``train_seed_models.py``)::

    python demos/align_seed_models.py --out align-seed-out
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_models import (  # noqa: E402
    data_dir,
    deflated_basis,
    encode_lines,
    load_seed_model,
    models_dir,
)


def corr_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the columns of ``x [n, p]`` with those of ``y [n, q]``."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    x = x / x.norm(dim=0).clamp_min(1e-12)
    y = y / y.norm(dim=0).clamp_min(1e-12)
    return x.T @ y


def hungarian(sim: np.ndarray) -> list[int]:
    """Row i's column in the matching that maximises the total similarity (square ``sim``)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(sim, maximize=True)
    out = [0] * sim.shape[0]
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        out[r] = c
    return out


@torch.no_grad()
def activations(folder: Path, tokens: torch.Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Per layer: attention patterns ``[n_heads, pairs]``, MLP activations ``[tokens, d_mlp]``.

    Runs the saved Hugging Face model (eager attention returns its patterns); the MLP neurons
    are the input of ``down_proj`` (``act(gate) * up``), read by a forward pre-hook that is
    removed afterwards.
    """
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()
    mlp: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for i, layer in enumerate(model.model.layers):

            def grab(module: Any, inputs: tuple, i: int = i) -> None:
                mlp[i] = inputs[0].reshape(-1, inputs[0].shape[-1])

            handles.append(layer.mlp.down_proj.register_forward_pre_hook(grab))
        out = model(input_ids=tokens, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    # Keep only the causal (lower-triangle) entries: the rest are zeros in every head.
    q, k = torch.tril_indices(tokens.shape[1], tokens.shape[1])
    patterns = [a[:, :, q, k].permute(1, 0, 2).reshape(a.shape[1], -1) for a in out.attentions]
    return patterns, [mlp[i] for i in range(len(mlp))]


def reference_matches(folder_a: Path, folder_b: Path, tokens: torch.Tensor) -> dict[str, Any]:
    """Functional head and neuron matching of same-index layers, from activations on ``tokens``."""
    pat_a, mlp_a = activations(folder_a, tokens)
    pat_b, mlp_b = activations(folder_b, tokens)
    heads: dict[int, list[int]] = {}
    neurons: dict[int, list[int]] = {}
    strength: dict[str, list[dict[str, float]]] = {"heads": [], "neurons": []}
    for layer in range(len(pat_a)):
        for kind, xa, xb, store in (
            ("heads", pat_a[layer].T, pat_b[layer].T, heads),
            ("neurons", mlp_a[layer], mlp_b[layer], neurons),
        ):
            c = corr_matrix(xa, xb).numpy()
            match = hungarian(c)
            store[layer] = match
            strength[kind].append(
                {
                    "matched_mean_corr": float(np.mean([c[i, j] for i, j in enumerate(match)])),
                    "all_pairs_mean_corr": float(c.mean()),
                }
            )
    return {"heads": heads, "neurons": neurons, "strength": strength}


def seen_token_basis(view: Any, seen: torch.Tensor) -> torch.Tensor:
    """``W_U`` (``[d_model, d_vocab]``) with the columns of unseen tokens zeroed."""
    return view.W_U.float() * seen.to(torch.float32)


def summarise(result: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """Scores of one alignment: layers against the same index, heads/neurons against activations."""
    score = result.score(expected_heads=ref["heads"], expected_neurons=ref["neurons"])
    n_layers = len(result.layer_match)
    return {
        "layer_match": list(result.layer_match),
        "layers": score["layers"],
        "heads_agree_with_activations": score["heads"],
        "neurons_agree_with_activations": score["neurons"],
        "layers_expected": list(range(n_layers)),
        "similarity_combined": result.similarity["combined"].tolist(),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    """One heatmap of the combined layer similarity per space, matched cells outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        sim = np.array(results[name]["similarity_combined"])
        im = ax.imshow(sim, cmap="viridis")
        for i, j in enumerate(results[name]["layer_match"]):
            if j is not None:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        frac = results[name]["layers"]["combined"]["fraction_matched"]
        ax.set_title(f"{name}: layers matched {frac:.2f}", fontsize=9)
        ax.set_xlabel("layer of model B")
        ax.set_ylabel("layer of model A")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("combined layer similarity (red: Hungarian matching)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the demo (see the module docstring); 0 on success."""
    from tl_embspace import adapt
    from tl_embspace.apps import AGGREGATES, align
    from tl_embspace.space import EmbeddingSpace

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models",
        type=Path,
        nargs=2,
        help="the two model folders (default: <cache>/seed-models/wt2-llama4-seed0 and -seed1)",
    )
    p.add_argument(
        "--data",
        help="folder holding wikitext-2/ (default: $TL_EMBSPACE_DATA, else ../shared/data)",
    )
    p.add_argument("--aggregate", default="mean_abs", choices=AGGREGATES)
    p.add_argument(
        "--ref-seqs", type=int, default=32, help="validation sequences for the activation reference"
    )
    p.add_argument("--ref-len", type=int, default=64, help="their length in tokens")
    p.add_argument(
        "--deflate",
        type=int,
        default=1,
        help="principal directions projected out of the basis for 'embedding_deflated'",
    )
    p.add_argument("--out", type=Path, default=Path("align-seed-out"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folders = args.models or [models_dir() / f"wt2-llama4-seed{s}" for s in (0, 1)]
    for f in folders:
        if not (f / "config.json").is_file():
            raise SystemExit(f"no model in {f}; run demos/train_seed_models.py first")
    torch.manual_seed(0)
    views = [adapt(load_seed_model(f)).folded() for f in folders]
    tokenizer = views[0].tokenizer
    wikitext = data_dir(args.data) / "wikitext-2"
    train_ids = [
        i
        for s in encode_lines(
            tokenizer, (wikitext / "test.txt").read_text(encoding="utf-8").splitlines()
        )
        for i in s
    ]
    val_ids = [
        i
        for s in encode_lines(
            tokenizer, (wikitext / "valid.txt").read_text(encoding="utf-8").splitlines()
        )
        for i in s
    ]
    d_vocab = views[0].spec.d_vocab
    seen = torch.zeros(d_vocab, dtype=torch.bool)
    seen[torch.tensor(train_ids)] = True
    n_ref = args.ref_seqs * args.ref_len
    if len(val_ids) < n_ref:
        raise SystemExit(f"the validation text has {len(val_ids)} tokens, fewer than {n_ref}")
    ref_tokens = torch.tensor(val_ids[:n_ref]).view(args.ref_seqs, args.ref_len)
    ref = reference_matches(folders[0], folders[1], ref_tokens)

    spaces = {
        "embedding": [EmbeddingSpace(v) for v in views],
        "embedding_seen": [
            EmbeddingSpace(v, read=seen_token_basis(v, seen), write=seen_token_basis(v, seen))
            for v in views
        ],
    }
    deflated = [deflated_basis(v, args.deflate) for v in views]
    spaces["embedding_deflated"] = [
        EmbeddingSpace(v, read=basis, write=basis)
        for v, (basis, _, _) in zip(views, deflated, strict=True)
    ]
    # What the top direction is: |cosine| with the unseen tokens' mean row minus the seen ones'.
    unseen_shift = (
        [
            abs(
                float(
                    torch.nn.functional.cosine_similarity(
                        top[:, 0],
                        v.W_U.float()[:, ~seen].mean(1) - v.W_U.float()[:, seen].mean(1),
                        dim=0,
                    )
                )
            )
            for v, (_, _, top) in zip(views, deflated, strict=True)
        ]
        if args.deflate > 0 and not bool(seen.all())
        else []
    )
    results: dict[str, Any] = {}
    for name, (sa, sb) in spaces.items():
        results[name] = summarise(align(sa, sb, aggregate=args.aggregate), ref)
    results["raw"] = summarise(
        align(views[0], views[1], space="raw", aggregate=args.aggregate), ref
    )

    spec = views[0].spec
    data = {
        "models": [str(f) for f in folders],
        "aggregate": args.aggregate,
        "n_layers": spec.n_layers,
        "n_heads": spec.n_heads,
        "d_mlp": spec.d_mlp,
        "tokens_seen_in_training": int(seen.sum()),
        "deflated_directions_variance_share": [share for _, share, _ in deflated],
        "top_direction_abs_cosine_with_unseen_minus_seen_mean": unseen_shift,
        "d_vocab": d_vocab,
        "chance": {
            "heads": 1 / spec.n_heads,
            "neurons": 1 / spec.d_mlp,
            "layers": 1 / spec.n_layers,
            "mean_rank": (spec.n_layers + 1) / 2,
        },
        "activation_reference": {
            "tokens": n_ref,
            "heads": {str(k): v for k, v in ref["heads"].items()},
            "neurons_first_16": {str(k): v[:16] for k, v in ref["neurons"].items()},
            "strength": ref["strength"],
        },
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "align_seed_models.json").write_text(json.dumps(data, indent=1))
    plot(results, args.out / "align_seed_models.png")

    print(
        f"{spec.n_layers} layers, {spec.n_heads} heads, {spec.d_mlp} neurons per layer; "
        f"{int(seen.sum()):,} of {d_vocab:,} tokens seen in training; aggregate {args.aggregate}"
    )
    print(
        f"deflated: the top {args.deflate} direction(s) of W_U over tokens carried "
        + " and ".join(", ".join(f"{x:.1%}" for x in share) for _, share, _ in deflated)
        + " of its variance (A, B); |cosine| of the top one with the unseen tokens' mean row "
        + "minus the seen ones': "
        + ", ".join(f"{x:.4f}" for x in unseen_shift)
    )
    for kind in ("heads", "neurons"):
        s = ref["strength"][kind]
        print(
            f"activation reference, {kind}: matched pairs' mean corr "
            + ", ".join(f"{x['matched_mean_corr']:.2f}" for x in s)
            + " (all pairs: "
            + ", ".join(f"{x['all_pairs_mean_corr']:.2f}" for x in s)
            + ")"
        )
    print(
        f"{'space':18s} {'layers':>7s} {'rank':>5s} {'heads':>6s} {'neurons':>8s}  per group "
        "(fraction matched / mean rank)"
    )
    for name, r in results.items():
        comb = r["layers"]["combined"]
        groups = "; ".join(
            f"{g} {v['fraction_matched']:.2f}/{v['mean_rank']:.2f}"
            for g, v in r["layers"].items()
            if g != "combined"
        )
        print(
            f"{name:18s} {comb['fraction_matched']:7.2f} {comb['mean_rank']:5.2f} "
            f"{r['heads_agree_with_activations']:6.3f} {r['neurons_agree_with_activations']:8.3f}"
            f"  {groups}"
        )
    print(
        f"chance: layers {1 / spec.n_layers:.2f}, mean rank {(spec.n_layers + 1) / 2:.2f}, heads "
        f"{1 / spec.n_heads:.3f}, neurons {1 / spec.d_mlp:.4f}"
    )
    print(f"wrote {args.out / 'align_seed_models.json'} and {args.out / 'align_seed_models.png'}")
    finite = all(math.isfinite(r["layers"]["combined"]["mean_rank"]) for r in results.values())
    return 0 if finite else 1


if __name__ == "__main__":
    raise SystemExit(main())
