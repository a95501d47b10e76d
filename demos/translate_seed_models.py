"""Carry an SST-2 classifier from one seed model to the other through the vocabulary.

A logistic head is trained on model A's hidden states (the residual stream after block ``l``,
mean-pooled over a sentence's tokens; ``l = 0`` is the token embeddings) and used on model B,
whose residual basis is unrelated (another seed), by rewriting the head to read B's space:

* ``vocabulary``: ``h_A ≈ h_B · E_B · pinv(E_A)`` (``tl_embspace.apps.vocabulary_map``, basis
  ``E = W_U`` of the folded models, explicit) — no activations, no labels: the paper's
  zero-pass stitching;
* ``vocabulary_seen``: the same formula over the tokens seen in training only
  (``vocabulary_map_from_bases`` on those columns; the others are only trained down, and
  otherwise keep their random initial embeddings);
* ``vocabulary_deflated``: the same formula with each model's top principal direction of ``W_U``
  over tokens projected out of its basis (beyond the paper; see ``align_seed_models.py``);
* baselines: ``chance`` (the training sample's majority class), ``identity`` (A's head on B's
  raw coordinates), and ``procrustes`` / ``least_squares`` maps B -> A fitted on a small
  *unlabelled* sample of paired hidden states (the same sentences through both models): the
  yardsticks that use activations;
* references: ``A_on_A`` (the head on its own model) and ``B_trained`` (a head trained on B
  directly, the ceiling).

Every figure is test accuracy on SST-2's labelled ``test.tsv`` (872 sentences), mean ± sd over
``--seeds`` draws of the classifier's training sample and of the paired sample. Writes
``translate_seed_models.json`` (and a PNG of accuracy per layer) into ``--out``.

Usage (from the repository root, after ``train_seed_models.py``)::

    python demos/translate_seed_models.py --out translate-seed-out
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_models import (  # noqa: E402
    data_dir,
    deflated_basis,
    encode_lines,
    load_seed_model,
    models_dir,
)

METHODS = (
    "chance",
    "identity",
    "vocabulary",
    "vocabulary_seen",
    "vocabulary_deflated",
    "procrustes",
    "least_squares",
    "A_on_A",
    "B_trained",
)


def read_sst2(path: Path) -> tuple[list[str], torch.Tensor]:
    """Sentences and labels of an SST-2 TSV file (``sentence<TAB>label`` with a header)."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    rows = [r for r in rows if len(r) == 2 and r[0].strip()]
    return [r[0] for r in rows], torch.tensor([int(r[1]) for r in rows])


@torch.no_grad()
def pooled_states(folder: Path, ids: list[list[int]], batch: int = 64) -> torch.Tensor:
    """``[n_layers + 1, n_sentences, d_model]``: each block's output, mean-pooled per sentence.

    Index 0 is the embedding output. Runs the saved Hugging Face model with forward hooks on the
    embedding and on each decoder layer (removed afterwards); right padding, pooled with the
    mask (the model is causal, so padding never changes earlier positions).
    """
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()
    captured: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def grab(module: Any, inputs: Any, output: Any) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output

        return grab

    modules = [model.model.embed_tokens, *model.model.layers]
    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    out = []
    try:
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            width = max(len(s) for s in chunk)
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width)
            for r, s in enumerate(chunk):
                x[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            model.model(input_ids=x, attention_mask=mask.long())
            w = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1)
            out.append(torch.stack([(captured[i] * w).sum(1) for i in range(len(modules))]))
    finally:
        for h in handles:
            h.remove()
    return torch.cat(out, 1)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-class logistic head ``[d, 2]`` and bias, by L-BFGS on standardised features.

    The standardisation is folded back into the head, so it reads the raw features.
    """
    x = x.double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], 2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w / sd[:, None]).detach()
    return w_raw, (b - mu @ w_raw).detach()


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> float:
    """Share of rows of ``x`` whose argmax logit is the label."""
    logits = x.double() @ w.double() + (0 if b is None else b.double())
    return float((logits.argmax(1) == y).double().mean())


def main(argv: list[str] | None = None) -> int:
    """Run the demo (see the module docstring); 0 on success."""
    from tl_embspace import adapt
    from tl_embspace.apps import (
        LinearMap,
        identity_map,
        least_squares_map,
        procrustes_map,
        vocabulary_map,
        vocabulary_map_from_bases,
    )

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models",
        type=Path,
        nargs=2,
        help="model A and model B folders (default: "
        "<cache>/seed-models/wt2-llama4-seed0 and -seed1)",
    )
    p.add_argument(
        "--data",
        help="folder holding sst2/ and wikitext-2/ (default: "
        "$TL_EMBSPACE_DATA, else ../shared/data)",
    )
    p.add_argument("--layers", type=int, nargs="+", help="stitching layers (default: all, 0..L)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pool", type=int, default=6000, help="SST-2 train sentences to draw from")
    p.add_argument("--n-train", type=int, default=2000, help="labelled sentences for the head")
    p.add_argument(
        "--n-pairs",
        type=int,
        default=500,
        help="unlabelled paired sentences for the fitted baselines",
    )
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=Path("translate-seed-out"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folders = args.models or [models_dir() / f"wt2-llama4-seed{s}" for s in (0, 1)]
    for f in folders:
        if not (f / "config.json").is_file():
            raise SystemExit(f"no model in {f}; run demos/train_seed_models.py first")
    root = data_dir(args.data)
    views = [adapt(load_seed_model(f)).folded() for f in folders]
    tokenizer = views[0].tokenizer
    train_text, train_y = read_sst2(root / "sst2" / "train.tsv")
    test_text, test_y = read_sst2(root / "sst2" / "test.tsv")
    pick = torch.randperm(len(train_text), generator=torch.Generator().manual_seed(1234))
    pick = pick[: args.pool]
    pool_text, pool_y = [train_text[i] for i in pick.tolist()], train_y[pick]
    if args.n_train + args.n_pairs > len(pool_text):
        raise SystemExit("--n-train + --n-pairs exceed the pool; raise --pool")

    def ids_of(texts: list[str]) -> list[list[int]]:
        # encode_lines drops blank lines; read_sst2 kept none, so rows stay aligned.
        return [s or [0] for s in encode_lines(tokenizer, texts)]

    # The seen-token mask: tokens of the training text (wikitext-2 test split).
    wiki = (root / "wikitext-2" / "test.txt").read_text(encoding="utf-8").splitlines()
    seen = torch.zeros(views[0].spec.d_vocab, dtype=torch.bool)
    seen[torch.tensor([i for s in encode_lines(tokenizer, wiki) for i in s])] = True

    states = {}
    for which, folder in zip("AB", folders, strict=True):
        states[which] = (
            pooled_states(folder, ids_of(pool_text)),
            pooled_states(folder, ids_of(test_text)),
        )
    n_layers = views[0].spec.n_layers
    layers = args.layers if args.layers is not None else list(range(n_layers + 1))

    # Maps B -> A through the vocabulary: independent of the layer and of the seed.
    vocab_map = vocabulary_map(views[1], views[0], basis="W_U")
    ub, ua = views[1].W_U.float(), views[0].W_U.float()
    vocab_seen = LinearMap(
        vocabulary_map_from_bases(ub[:, seen], ua[:, seen]),
        method="vocabulary",
        provenance={"basis": "W_U (folded), seen-token columns", "n_tokens": int(seen.sum())},
    )
    vocab_deflated = LinearMap(
        vocabulary_map_from_bases(deflated_basis(views[1], 1)[0], deflated_basis(views[0], 1)[0]),
        method="vocabulary",
        provenance={"basis": "W_U (folded), top direction over tokens projected out"},
    )
    d_a, d_b = views[0].spec.d_model, views[1].spec.d_model
    table: dict[str, dict[str, list[float]]] = {}
    for layer in layers:
        per: dict[str, list[float]] = {m: [] for m in METHODS}
        pool_a, test_a = states["A"][0][layer], states["A"][1][layer]
        pool_b, test_b = states["B"][0][layer], states["B"][1][layer]
        for seed in range(args.seeds):
            order = torch.randperm(len(pool_text), generator=torch.Generator().manual_seed(seed))
            tr = order[: args.n_train]
            pr = order[args.n_train : args.n_train + args.n_pairs]
            y = pool_y[tr]
            w, b = fit_logistic(pool_a[tr], y, args.l2)
            majority = int(y.float().mean() >= 0.5)
            per["chance"].append(float((test_y == majority).double().mean()))
            per["A_on_A"].append(accuracy(test_a, test_y, w, b))
            wb, bb = fit_logistic(pool_b[tr], y, args.l2)
            per["B_trained"].append(accuracy(test_b, test_y, wb, bb))
            maps = {
                "vocabulary": vocab_map,
                "vocabulary_seen": vocab_seen,
                "vocabulary_deflated": vocab_deflated,
                "procrustes": procrustes_map(pool_b[pr], pool_a[pr]),
                "least_squares": least_squares_map(pool_b[pr], pool_a[pr]),
            }
            if d_a == d_b:
                maps["identity"] = identity_map(d_b, d_a)
            for name, m in maps.items():
                w2, b2 = m.carry_head(w.float(), b.float())
                per[name].append(accuracy(test_b, test_y, w2, b2))
        table[str(layer)] = per

    summary = {
        layer: {
            m: {
                "mean": float(np.mean(v)),
                "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                "runs": v,
            }
            for m, v in per.items()
            if v
        }
        for layer, per in table.items()
    }
    data = {
        "models": {"A": str(folders[0]), "B": str(folders[1])},
        "features": "residual stream after block l (l=0: embeddings), mean-pooled per sentence",
        "test": f"sst2/test.tsv ({len(test_text)} labelled sentences)",
        "seeds": args.seeds,
        "n_train": args.n_train,
        "n_pairs": args.n_pairs,
        "vocabulary_map": vocab_map.provenance,
        "vocabulary_seen_map": vocab_seen.provenance,
        "vocabulary_deflated_map": vocab_deflated.provenance,
        "accuracy": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "translate_seed_models.json").write_text(json.dumps(data, indent=1))
    plot(summary, args.out / "translate_seed_models.png")
    print(
        f"SST-2 test accuracy of model A's head used on model B (mean ± sd over {args.seeds} "
        f"seeds; {args.n_train} training sentences, {args.n_pairs} unlabelled pairs)"
    )
    present = [m for m in METHODS if m in next(iter(summary.values()))]
    print("layer " + " ".join(f"{m:>15s}" for m in present))
    for layer, res in summary.items():
        print(
            f"{layer:>5s} " + " ".join(f"{res[m]['mean']:8.3f}±{res[m]['sd']:.3f}" for m in present)
        )
    print(f"wrote {args.out / 'translate_seed_models.json'}")
    return 0


def plot(summary: dict[str, Any], path: Path) -> None:
    """Accuracy per stitching layer, one line per method (error bars: sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [int(x) for x in summary]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m in summary[str(layers[0])]:
        means = np.array([summary[str(i)][m]["mean"] for i in layers])
        sds = np.array([summary[str(i)][m]["sd"] for i in layers])
        ax.errorbar(layers, means, yerr=sds, label=m, marker="o", capsize=2)
    ax.set_xlabel("stitching layer (0 = embeddings)")
    ax.set_ylabel("SST-2 test accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
