"""Train two small decoders that differ only in the seed (the two-seed demos' models).

Each model is a Llama-architecture decoder (RMSNorm, rotary, gated MLP, tied embedding) with the
SmolLM2 tokenizer (49,152 tokens), trained on WikiText-2 as plain next-token prediction. WikiText-2
here has only its ``test`` and ``valid`` splits: the models train on ``test.txt`` and are
evaluated on ``valid.txt``. Everything that differs between the two models is the seed: it draws
the initial weights and the order of the training batches.

The tied embedding keeps the 49k-token vocabulary to one ``[49152, d_model]`` matrix; on a
2-core CPU the output softmax dominates the cost. The softmax runs over the whole vocabulary,
although the training text contains only 13,618 of its tokens: the others never occur, but the
full normaliser trains their logits down, and without it (``--softmax seen``, ~3x cheaper per
step) they keep their random initial embeddings and the model does worse than the unigram
baseline over the whole vocabulary. Each model is saved with ``save_pretrained``
(weights, config and tokenizer) into ``<cache>/seed-models/<name>-seed<seed>``
(``$TL_EMBSPACE_CACHE`` or ``~/.cache/tl_embspace``; never the repository), with a
``metrics.json`` holding its validation loss and perplexity next to a unigram baseline (the
training set's smoothed token frequencies), so a reader can tell it learned something.
``seed_models.load_seed_model(folder)`` reloads it as a TransformerLens model.

Usage (from the repository root; measured 19 and 17 minutes for seeds 0 and 1, one after the
other on one thread, with the CPU's other core busy with other jobs)::

    python demos/train_seed_models.py                      # seeds 0 and 1, the README's numbers
    python demos/train_seed_models.py --data ../shared/data --seeds 0 1 --steps 400
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_models import data_dir, encode_lines, load_tokenizer, models_dir  # noqa: E402


def blocks(tokenizer, path: Path, seq_len: int, max_tokens: int | None) -> torch.Tensor:
    """The file's non-blank lines, tokenised and concatenated, cut into ``[n, seq_len]`` blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    ids = [i for seq in encode_lines(tokenizer, lines) for i in seq]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n = len(ids) // seq_len
    if n == 0:
        raise SystemExit(f"{path} has fewer than {seq_len} tokens")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def unigram_loss(
    train: torch.Tensor, val: torch.Tensor, vocab: int, active: torch.Tensor | None = None
) -> float:
    """Cross-entropy (nats) on ``val`` of the train set's add-one smoothed unigram frequencies.

    With ``active``, over those tokens only (targets outside them are skipped).
    """
    counts = torch.bincount(train.reshape(-1), minlength=vocab).double() + 1.0
    targets = val.reshape(-1)
    if active is not None:
        counts = counts[active]
        targets = _positions(active, vocab)[targets]
        targets = targets[targets >= 0]
    logp = (counts / counts.sum()).log()
    return float(-logp[targets].mean())


def _positions(active: torch.Tensor, vocab: int) -> torch.Tensor:
    """Each token's index among ``active`` (-1 for tokens outside it)."""
    position = torch.full((vocab,), -1, dtype=torch.long)
    position[active] = torch.arange(len(active))
    return position


@torch.no_grad()
def evaluate(model, val: torch.Tensor, batch: int, active: torch.Tensor | None = None) -> float:
    """Mean next-token cross-entropy (nats) over the validation blocks.

    With ``active``, the softmax runs over those tokens (the training vocabulary, as in
    training) and targets outside them are skipped; without, over the whole vocabulary.
    """
    model.eval()
    total, count = 0.0, 0
    vocab = model.config.vocab_size
    position = None if active is None else _positions(active, vocab)
    for start in range(0, len(val), batch):
        x = val[start : start + batch]
        logits = model(input_ids=x).logits[:, :-1].reshape(-1, vocab)
        targets = x[:, 1:].reshape(-1)
        if position is not None:
            logits, targets = logits[:, active], position[targets]
            keep = targets >= 0
            logits, targets = logits[keep], targets[keep]
        total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += targets.numel()
    model.train()
    return total / count


def make_model(args, vocab: int, seed: int):
    """A freshly initialised ``LlamaForCausalLM`` (tied embedding) drawn with ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=args.d_model,
        intermediate_size=args.d_mlp,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_heads,
        max_position_embeddings=args.seq_len,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(config)


@torch.no_grad()
def embedding_drift(model, seed: int, active: torch.Tensor) -> dict:
    """How far training moved the tied embedding from its initial draw, seen vs unseen tokens.

    The initial embedding is drawn again (same config, same seed: the same draws). Returns the
    mean cosine of each row with its initial value, for the training text's tokens and for the
    others, and for the others how shared their change is: the norm of their mean change over
    the mean norm of their changes (1 when every unseen row moved by the same vector).
    """
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    init = LlamaForCausalLM(model.config).get_input_embeddings().weight
    final = model.get_input_embeddings().weight
    unseen = torch.ones(len(final), dtype=torch.bool)
    unseen[active] = False
    cosine = torch.nn.functional.cosine_similarity(final.double(), init.double(), dim=1)
    change = (final - init)[unseen].double()
    return {
        "init_cosine_seen": float(cosine[~unseen].mean()),
        "init_cosine_unseen": float(cosine[unseen].mean()),
        "unseen_change_shared": float(change.mean(0).norm() / change.norm(dim=1).mean()),
    }


def train_one(args, tokenizer, train: torch.Tensor, val: torch.Tensor, seed: int) -> dict:
    """Train, evaluate and save one model; return its metrics."""
    vocab = len(tokenizer)
    model = make_model(args, vocab, seed)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # The softmax runs over the whole vocabulary by default, so that the logits of tokens the
    # training text never contains are trained down too (they sit in every normaliser). With
    # ``--softmax seen`` it runs over the tokens the training text contains only (about 3x
    # cheaper per step), which leaves the others at their random initial embeddings: the model
    # then does worse than the unigram baseline over the whole vocabulary.
    active = torch.unique(train)
    if args.softmax == "seen":
        columns = active
        position = torch.full((vocab,), -100, dtype=torch.long)
        position[active] = torch.arange(len(active))
    else:
        columns, position = None, torch.arange(vocab)
    start = time.perf_counter()
    perm = torch.randperm(len(train), generator=order)
    cursor = 0
    model.train()
    for step in range(args.steps):
        if cursor + args.batch > len(perm):
            perm, cursor = torch.randperm(len(train), generator=order), 0
        x = train[perm[cursor : cursor + args.batch]]
        cursor += args.batch
        hidden = model.model(input_ids=x).last_hidden_state[:, :-1]
        unembed = model.lm_head.weight if columns is None else model.lm_head.weight[columns]
        logits = hidden @ unembed.T
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, unembed.shape[0]), position[x[:, 1:]].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(
                f"  seed {seed} step {step:4d} loss {loss.item():.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    train_s = time.perf_counter() - start
    val_loss = evaluate(model, val, args.batch)
    val_loss_active = evaluate(model, val, args.batch, active)
    folder = args.out / f"{args.name}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        "seed": seed,
        "folder": str(folder),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "val_loss_training_vocab": val_loss_active,
        "val_perplexity_training_vocab": math.exp(val_loss_active),
        "train_seconds": round(train_s, 1),
        "active_vocab": len(active),
        "tokens_seen": args.steps * args.batch * args.seq_len,
        **embedding_drift(model, seed, active),
    }


def main(argv: list[str] | None = None) -> int:
    """Train and save one model per seed (see the module docstring); 0 on success."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        help="folder holding wikitext-2/ (default: $TL_EMBSPACE_DATA, "
        "else ../shared/data relative to the repository root)",
    )
    p.add_argument(
        "--tokenizer", default="smollm2", help="'smollm2' (offline zoo) or a saved tokenizer folder"
    )
    p.add_argument("--out", type=Path, help="where models go (default: <cache>/seed-models)")
    p.add_argument("--name", default="wt2-llama4", help="model folder prefix")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--softmax",
        default="full",
        choices=["full", "seen"],
        help="normalise over the whole vocabulary (default) or over the training text's tokens",
    )
    p.add_argument("--max-train-tokens", type=int, help="cap on training tokens (default: all)")
    p.add_argument("--max-val-tokens", type=int, default=16384)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: 1)")
    p.add_argument(
        "--evaluate-only", action="store_true", help="re-evaluate saved models, do not train"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out = args.out or models_dir()
    wikitext = data_dir(args.data) / "wikitext-2"
    tokenizer = load_tokenizer(args.tokenizer)
    train = blocks(tokenizer, wikitext / "test.txt", args.seq_len, args.max_train_tokens)
    val = blocks(tokenizer, wikitext / "valid.txt", args.seq_len, args.max_val_tokens)
    active = torch.unique(train)
    baseline = unigram_loss(train, val, len(tokenizer))
    baseline_active = unigram_loss(train, val, len(tokenizer), active)
    outside = float((_positions(active, len(tokenizer))[val[:, 1:]] < 0).double().mean())
    print(
        f"train {train.numel():,} tokens, validation {val.numel():,}; unigram baseline "
        f"loss {baseline:.3f} (perplexity {math.exp(baseline):.1f}); over the training "
        f"vocabulary ({len(active):,} tokens; {outside:.1%} of validation targets outside it) "
        f"{baseline_active:.3f} ({math.exp(baseline_active):.1f})",
        flush=True,
    )
    if args.evaluate_only:
        from transformers import LlamaForCausalLM

        results = []
        for seed in args.seeds:
            folder = args.out / f"{args.name}-seed{seed}"
            old = json.loads((folder / "metrics.json").read_text())["model"]
            model = LlamaForCausalLM.from_pretrained(folder, local_files_only=True)
            loss, loss_active = (
                evaluate(model, val, args.batch),
                evaluate(model, val, args.batch, active),
            )
            results.append(
                {
                    **old,
                    "val_loss": loss,
                    "val_perplexity": math.exp(loss),
                    "val_loss_training_vocab": loss_active,
                    "val_perplexity_training_vocab": math.exp(loss_active),
                    **embedding_drift(model, seed, active),
                }
            )
    else:
        results = [train_one(args, tokenizer, train, val, seed) for seed in args.seeds]
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_tokens": train.numel(),
        "val_tokens": val.numel(),
        "unigram_val_loss": baseline,
        "unigram_val_perplexity": math.exp(baseline),
        "training_vocab": len(active),
        "val_targets_outside_training_vocab": outside,
        "unigram_val_loss_training_vocab": baseline_active,
        "unigram_val_perplexity_training_vocab": math.exp(baseline_active),
        "models": results,
    }
    for r in results:
        (Path(r["folder"]) / "metrics.json").write_text(json.dumps({**summary, "model": r}))
        print(
            f"seed {r['seed']}: validation loss {r['val_loss']:.3f} (perplexity "
            f"{r['val_perplexity']:.1f}) vs unigram {baseline:.3f} "
            f"({math.exp(baseline):.1f}); over the training vocabulary "
            f"{r['val_loss_training_vocab']:.3f} ({r['val_perplexity_training_vocab']:.1f}) vs "
            f"unigram {baseline_active:.3f} ({math.exp(baseline_active):.1f}); trained "
            f"{r['train_seconds']} s -> {r['folder']}; embedding rows' cosine with their "
            f"initial value: seen tokens {r['init_cosine_seen']:.3f}, unseen "
            f"{r['init_cosine_unseen']:.3f} (unseen change shared {r['unseen_change_shared']:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
