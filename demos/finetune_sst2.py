"""Fine-tune a sentiment classifier on SST-2 on top of SmolLM2: a head plus the last blocks.

As Dar et al. did with GPT-2 (last 3 blocks and a head, on IMDB), on this machine's budget: the
frozen model runs once over the sampled training sentences and the test set, and its residual
stream entering the first trained block is cached; the last ``--train-blocks`` blocks (a copy)
and a linear head on the mean-pooled, final-normed output are then trained on those cached
activations. The final norm and everything below the trained blocks stay frozen.

Writes ``<cache>/sst2/<name>/`` (``$TL_EMBSPACE_CACHE`` or ``~/.cache/tl_embspace``; never the
repository): the tuned model as a Hugging Face folder (``save_pretrained`` plus the tokenizer:
``tl-embspace finetune-diff smollm2-135m-instruct FOLDER`` loads it), ``head.pt`` (``weight
[d_model, 2]``, ``bias [2]``: logits = mean-pooled final-normed state @ weight + bias) and
``result.json`` (test accuracy, the majority-class baseline, settings, timings).

    python demos/finetune_sst2.py --threads 1          # SmolLM2, 400 sentences, 2 blocks
    python demos/finetune_sst2.py --train-blocks 0     # a head on the frozen model
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from sst2_common import (
    SMOLLM2,
    batches,
    cache_root,
    data_dir,
    hidden_batches,
    load_base,
    mean_pool,
    read_sst2,
    sample,
)
from torch import Tensor


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = " (default: %(default)s)"
    p.add_argument("--base", default=SMOLLM2, help="zoo name or saved HF causal-LM folder" + d)
    p.add_argument("--data", help="folder holding sst2/ (default: $TL_EMBSPACE_DATA, ../shared)")
    p.add_argument("--out", type=Path, help="output folder (default: <cache>/sst2/<name>)")
    p.add_argument("--name", help="output folder name (default: from base and blocks)")
    p.add_argument("--n-train", type=int, default=400, help="training sentences sampled" + d)
    p.add_argument("--n-test", type=int, default=400, help="test sentences (0: all 872)" + d)
    p.add_argument("--min-words", type=int, default=4, help="shortest training sentence" + d)
    p.add_argument("--train-blocks", type=int, default=2, help="last blocks trained" + d)
    p.add_argument("--epochs", type=int, default=4, help=d)
    p.add_argument("--batch-size", type=int, default=32, help=d)
    p.add_argument("--max-len", type=int, default=32, help="tokens per sentence, at most" + d)
    p.add_argument("--lr-blocks", type=float, default=5e-5, help=d)
    p.add_argument("--lr-head", type=float, default=2e-3, help=d)
    p.add_argument("--seed", type=int, default=0, help="sampling and initialisation seed" + d)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p.parse_args(argv)


class TopAndHead(torch.nn.Module):
    """The trained part: the last blocks (a copy of the base's), its final norm, a linear head."""

    def __init__(self, hf_model: Any, first: int) -> None:
        super().__init__()
        top = copy.deepcopy(hf_model.model)
        top.embed_tokens = None  # fed the cached residual stream as inputs_embeds
        top.layers = torch.nn.ModuleList(top.layers[first:])
        top.config = copy.deepcopy(top.config)
        top.config.num_hidden_layers = len(top.layers)
        self.top = top
        self.head = torch.nn.Linear(hf_model.config.hidden_size, 2)
        for p in top.norm.parameters():
            p.requires_grad_(False)

    def forward(self, resid: Tensor, mask: Tensor) -> Tensor:
        """Logits ``[b, 2]`` from the residual stream entering the first trained block."""
        if len(self.top.layers):
            final = self.top(inputs_embeds=resid, attention_mask=mask, use_cache=False)
            final = final.last_hidden_state
        else:
            final = resid  # no trained block: the cache already holds the final-normed output
        return self.head(mean_pool(final, mask))


def accuracy(model: TopAndHead, cached: list[tuple[Tensor, Tensor, Tensor]]) -> float:
    """Accuracy over cached batches ``(resid, mask, labels)``."""
    model.eval()
    right = total = 0
    with torch.no_grad():
        for resid, mask, y in cached:
            right += int((model(resid, mask).argmax(-1) == y).sum())
            total += len(y)
    return right / total


def cache(hf_model: Any, tokenizer: Any, sentences, labels, layer, args) -> tuple[list, Tensor]:
    """The training inputs of one split, computed once by the frozen model.

    Returns ``(resid, mask, labels)`` per batch (the stream entering ``layer``) and the
    mean-pooled final output per sentence, in the input order.
    """
    batched = batches(tokenizer, sentences, args.batch_size, args.max_len)
    out, pooled = [], torch.zeros(len(sentences), hf_model.config.hidden_size)
    for (rows, _, mask), (resid, final) in zip(
        batched, hidden_batches(hf_model, batched, layer), strict=True
    ):
        out.append((resid, mask, torch.tensor([labels[i] for i in rows])))
        pooled[rows] = final
    return out, pooled


def tuned_model(hf_model: Any, trained: TopAndHead, first: int) -> Any:
    """A copy of the base with its last blocks replaced by the trained ones.

    SmolLM2 comes dequantised from a GGUF file, and transformers refuses to save a model it
    believes quantised; the weights are plain floats, so the copy drops that mark.
    """
    tuned = copy.deepcopy(hf_model)
    tuned.hf_quantizer = None
    if hasattr(tuned.config, "quantization_config"):
        del tuned.config.quantization_config
    for i, block in enumerate(trained.top.layers):
        tuned.model.layers[first + i].load_state_dict(block.state_dict())
    return tuned


def main(argv: list[str] | None = None) -> int:
    """Sample, cache, train, evaluate, save; print the test accuracy and the baseline."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    folder = data_dir(args.data)
    train_s, train_y = read_sst2(folder, "train")
    test_s, test_y = read_sst2(folder, "test")
    train_s, train_y = sample(train_s, train_y, args.n_train, args.seed, args.min_words)
    if args.n_test:
        test_s, test_y = sample(test_s, test_y, args.n_test, args.seed)
    hf_model, tokenizer = load_base(args.base)
    n_layers = hf_model.config.num_hidden_layers
    if not 0 <= args.train_blocks <= n_layers:
        raise SystemExit(f"error: --train-blocks must be in 0..{n_layers}")
    first = n_layers - args.train_blocks
    t_load = time.perf_counter() - t0
    train, train_pooled = cache(hf_model, tokenizer, train_s, train_y, first, args)
    test, test_pooled = cache(hf_model, tokenizer, test_s, test_y, first, args)
    t_cache = time.perf_counter() - t0 - t_load
    model = TopAndHead(hf_model, first)
    optimiser = torch.optim.AdamW(
        [
            {"params": [p for p in model.top.layers.parameters()], "lr": args.lr_blocks},
            {"params": model.head.parameters(), "lr": args.lr_head},
        ],
        weight_decay=0.0,
    )
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for b in torch.randperm(len(train), generator=generator).tolist():
            resid, mask, y = train[b]
            loss = torch.nn.functional.cross_entropy(model(resid, mask), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(y)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / len(train_s),
                "train_accuracy": accuracy(model, train),
            }
        )
        print(f"epoch {epoch + 1}: {history[-1]}", flush=True)
    t_train = time.perf_counter() - t0 - t_load - t_cache
    test_acc = accuracy(model, test)
    majority = max(sum(test_y), len(test_y) - sum(test_y)) / len(test_y)

    tuned = tuned_model(hf_model, model, first)
    # The saved model must compute what was trained: rerun the first test batch end to end.
    resid, mask, _ = test[0]
    ids = batches(tokenizer, test_s, args.batch_size, args.max_len)[0][1]
    with torch.no_grad():
        final = tuned.model(input_ids=ids, attention_mask=mask).last_hidden_state
        drift = float((model.head(mean_pool(final, mask)) - model(resid, mask)).abs().max())
    if drift > 1e-3:
        raise SystemExit(f"error: the saved model's logits differ from the trained ones ({drift})")

    name = args.name or f"{Path(args.base).name}-blocks{args.train_blocks}-seed{args.seed}"
    out = args.out or cache_root() / name
    out.mkdir(parents=True, exist_ok=True)
    # The trained part first: should saving the whole model fail, the training is kept.
    torch.save(model.state_dict(), out / "trained_top_and_head.pt")
    tuned.save_pretrained(out)
    tokenizer.save_pretrained(out)
    torch.save(
        {"weight": model.head.weight.detach().T.contiguous(), "bias": model.head.bias.detach()},
        out / "head.pt",
    )
    # The frozen base's pooled final states, for demos/translate_sst2.py (saves it a pass).
    torch.save(
        {
            "train_sentences": train_s,
            "train_labels": train_y,
            "train_pooled": train_pooled,
            "test_sentences": test_s,
            "test_labels": test_y,
            "test_pooled": test_pooled,
            "max_len": args.max_len,
        },
        out / "base_features.pt",
    )
    result = {
        "test_accuracy": test_acc,
        "majority_baseline": majority,
        "n_train": len(train_s),
        "n_test": len(test_s),
        "history": history,
        "trained_blocks": list(range(first, n_layers)),
        "head": "linear on the mean over real tokens of the final-normed output",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {
            "train": str(folder / "sst2" / "train.tsv"),
            "test": str(folder / "sst2" / "test.tsv"),
        },
        "seconds": {
            "load": round(t_load, 1),
            "cache_activations": round(t_cache, 1),
            "train": round(t_train, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "logit_check_max_abs_diff": drift,
        "command": "python demos/finetune_sst2.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(
        f"test accuracy {test_acc:.4f} on {len(test_s)} sentences (majority class {majority:.4f}); "
        f"trained blocks {first}..{n_layers - 1} + head on {len(train_s)} sentences; "
        f"saved to {out} ({result['seconds']['total']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
