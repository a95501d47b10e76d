"""Carry an SST-2 classifier between SmolLM2 and MiniLM through their shared tokens, over seeds.

Beyond the paper (which stitched models sharing one vocabulary): SmolLM2 (byte-level BPE,
49,152 tokens, d=576) and MiniLM (WordPiece, 30,522 tokens, d=384) share only the tokens whose
decoded text both vocabularies have, and ``vocabulary_map(..., basis="W_E",
shared_tokens=True)`` maps through those (``W_E``: MiniLM has no trained unembedding).

Each model's feature is its final hidden state (SmolLM2: after the final norm; MiniLM: the last
layer's output), mean-pooled over the sentence's tokens. Per seed and direction (A -> B): a
logistic-regression head is trained on A's features of ``--n-head`` SST-2 training sentences,
carried to B, and scored on ``--n-test`` test sentences (seeded; 0: all 872) with B's
features. Beside it:

* **chance**: the majority class of the test set;
* **vocabulary map**: ``W_B = E_B pinv(E_A) W_A`` (zero-pass: weights only);
* **vocabulary map, re-centred**: the same after moving B's mean feature onto A's (uses the
  mean of ``--n-pairs`` unlabelled sentences in each model: a little activation data);
* **least squares / Procrustes**: maps fitted on ``--n-pairs`` unlabelled paired features
  (activation baselines, as the issue asks);
* **native**: a head trained on B's own features (the ceiling; not a translation).

Seeds draw the head's training sentences and the unlabelled pairs (disjoint). Reports mean ± sd
over seeds and writes ``translate_sst2.json`` into ``--out`` (default: ``<cache>/sst2/``).

    python demos/translate_sst2.py                       # SmolLM2 <-> MiniLM, 5 seeds
"""

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from sst2_common import SMOLLM2, batches, cache_root, data_dir, mean_pool, read_sst2, sample
from torch import Tensor

MINILM = "all-minilm-l6-v2"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = " (default: %(default)s)"
    p.add_argument("--model-a", default=SMOLLM2, help="zoo name or HF folder" + d)
    p.add_argument("--model-b", default=MINILM, help="zoo name or HF folder" + d)
    p.add_argument("--data", help="folder holding sst2/ (default: $TL_EMBSPACE_DATA, ../shared)")
    p.add_argument("--n-train", type=int, default=400, help="training sentences drawn" + d)
    p.add_argument("--n-test", type=int, default=400, help="test sentences (0: all 872)" + d)
    p.add_argument("--n-head", type=int, default=200, help="sentences a head is trained on" + d)
    p.add_argument("--n-pairs", type=int, default=150, help="unlabelled pairs for baselines" + d)
    p.add_argument("--seeds", type=int, default=5, help=d)
    p.add_argument("--basis", default="W_E", help="E in both models" + d)
    p.add_argument("--max-len", type=int, default=32, help=d)
    p.add_argument("--batch-size", type=int, default=32, help=d)
    p.add_argument("--out", type=Path, help="output folder (default: <cache>/sst2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--features",
        type=Path,
        help="model A's features saved by finetune_sst2.py (base_features.pt), reused when its "
        "sentences are these (default: the SmolLM2 fine-tune's, if present)",
    )
    return p.parse_args(argv)


def load_hf(name: str) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)`` of a zoo name or a saved folder (causal LM or encoder)."""
    if Path(name).is_dir():
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(name, local_files_only=True)
        return model.eval(), AutoTokenizer.from_pretrained(name, local_files_only=True)
    from tl_embspace import zoo

    return zoo.load_hf(name)


@torch.no_grad()
def features(hf_model: Any, tokenizer: Any, sentences: list[str], args) -> Tensor:
    """Mean-pooled final hidden states ``[n, d]`` in the input order."""
    body = getattr(hf_model, "model", None) or getattr(hf_model, "bert", None) or hf_model
    out = torch.zeros(len(sentences), hf_model.config.hidden_size)
    for rows, ids, mask in batches(tokenizer, sentences, args.batch_size, args.max_len):
        out[rows] = mean_pool(body(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
    return out


def cached_features(
    name: str, train_s: list[str], test_s: list[str], args: argparse.Namespace
) -> tuple[Tensor, Tensor]:
    """``(train, test)`` features of a model, from ``<cache>/sst2/features/`` when computed before.

    The file is keyed by the model name, the sentences and ``--max-len``.
    """
    key = hashlib.sha256(json.dumps([name, train_s, test_s, args.max_len]).encode()).hexdigest()
    path = cache_root() / "features" / f"{Path(name).name}-{key[:16]}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return saved["train"], saved["test"]
    hf_model, tokenizer = load_hf(name)
    train = features(hf_model, tokenizer, train_s, args)
    test = features(hf_model, tokenizer, test_s, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"train": train, "test": test}, path)
    return train, test


def fit_head(x: Tensor, y: Tensor, l2: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Logistic regression (2 classes as a [d, 2] head with bias), full-batch L-BFGS.

    Features are standardised for the fit and the standardisation folded back into the head,
    so the head reads the raw features (what a vocabulary map carries).
    """
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = w.detach() / sd[:, None]
    return w_raw, b.detach() - mu @ w_raw


def accuracy(x: Tensor, y: Tensor, w: Tensor, b: Tensor | None) -> float:
    """Accuracy of the head ``(w, b)`` on features ``x``."""
    logits = x @ w + (0 if b is None else b)
    return float((logits.argmax(-1) == y).float().mean())


def main(argv: list[str] | None = None) -> int:
    """Features of both models, heads over seeds, carried four ways; print and save."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    from tl_embspace import EmbeddingSpace, adapt
    from tl_embspace.apps import least_squares_map, procrustes_map, vocabulary_map
    from tl_embspace.cli.finetune_diff import load_model

    folder = data_dir(args.data)
    train_s, train_y = read_sst2(folder, "train")
    test_s, test_y = read_sst2(folder, "test")
    train_s, train_y = sample(train_s, train_y, args.n_train, 0, 4)
    if args.n_test:
        test_s, test_y = sample(test_s, test_y, args.n_test, 0)
    feats, names = {}, (args.model_a, args.model_b)
    saved = args.features or cache_root() / f"{SMOLLM2}-blocks2-seed0" / "base_features.pt"
    if saved.is_file():
        f = torch.load(saved, weights_only=True)
        same = (f["train_sentences"], f["test_sentences"], f["max_len"]) == (
            train_s,
            test_s,
            args.max_len,
        )
        if same and (args.features or args.model_a == SMOLLM2):
            feats[args.model_a] = (f["train_pooled"], f["test_pooled"])
            print(f"features of {args.model_a}: reused {saved}")
    for name in names:
        if name not in feats:
            feats[name] = cached_features(name, train_s, test_s, args)
            print(f"features of {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    ytr, yte = torch.tensor(train_y), torch.tensor(test_y)
    # Both bases explicit: the default W_U would be refused for MiniLM (an untrained head).
    spaces = {
        n: EmbeddingSpace(adapt(load_model(n, "bridge")), read=args.basis, write=args.basis)
        for n in names
    }
    t_features = time.perf_counter() - t0
    chance = max(float(yte.float().mean()), 1 - float(yte.float().mean()))

    results: dict[str, Any] = {}
    for src, dst in (names, names[::-1]):
        vocab = vocabulary_map(spaces[dst], spaces[src], basis=args.basis, shared_tokens=True)
        (xs_tr, xs_te), (xd_tr, xd_te) = feats[src], feats[dst]
        rows: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            order = torch.randperm(len(train_s), generator=torch.Generator().manual_seed(seed))
            head_rows, pair_rows = order[: args.n_head], order[args.n_head :][: args.n_pairs]
            w, b = fit_head(xs_tr[head_rows], ytr[head_rows])
            mu_s, mu_d = xs_tr[pair_rows].mean(0), xd_tr[pair_rows].mean(0)
            wn, bn = fit_head(xd_tr[head_rows], ytr[head_rows])
            maps = {
                "vocabulary map": (vocab.matrix, None),
                "vocabulary map, re-centred": (vocab.matrix, mu_s - mu_d @ vocab.matrix),
            }
            for label, fitted in (
                ("least squares (fitted)", least_squares_map(xd_tr[pair_rows], xs_tr[pair_rows])),
                ("Procrustes (fitted)", procrustes_map(xd_tr[pair_rows], xs_tr[pair_rows])),
            ):
                maps[label] = (fitted.matrix, fitted.bias)
            scores = {"source head on source": accuracy(xs_te, yte, w, b)}
            for label, (matrix, shift) in maps.items():
                w_carried = matrix @ w
                b_carried = b + (0 if shift is None else shift @ w)
                scores[label] = accuracy(xd_te, yte, w_carried, b_carried)
            scores["native head on target"] = accuracy(xd_te, yte, wn, bn)
            for label, value in scores.items():
                rows.setdefault(label, []).append(value)
        results[f"{src} -> {dst}"] = {
            "n_tokens": vocab.provenance["n_tokens"],
            "chance": chance,
            "accuracy": {
                label: {
                    "mean": statistics.mean(v),
                    "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                    "per_seed": v,
                }
                for label, v in rows.items()
            },
        }
    out_dir = args.out or cache_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "results": results,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_test": len(test_s),
        "seconds": {"features": round(t_features, 1), "total": round(time.perf_counter() - t0, 1)},
        "command": "python demos/translate_sst2.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out_dir / "translate_sst2.json").write_text(json.dumps(report, indent=1))
    for direction, r in results.items():
        print(f"\n{direction}: {r['n_tokens']} shared tokens; chance {r['chance']:.4f}")
        for label, a in r["accuracy"].items():
            print(f"  {label:<30} {a['mean']:.4f} ± {a['sd']:.4f}")
    print(f"wrote {out_dir / 'translate_sst2.json'} ({report['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
