"""Vocabulary hygiene on the offline SmolLM2-135M-Instruct, measured against WikiText-2 counts.

Prints, as markdown tables for the README:

1. the detector against the corpus: for each mask of ``tl_embspace.vocab.detect_tokens``, how
   many tokens it flags, the share of them that never occur in WikiText-2 (valid+test, "precision")
   and the share of never-occurring tokens it flags ("recall");
2. per parameter kind (every kind the job writes: rows of FF keys/gates/values and Q/K/V/O
   sub-heads, the first 8 SVD directions of each head's OV and QK circuits and of the MLP
   matrices, and both tokens of the top-10 QK and OV pairs of the ``--pair-heads``), the share
   of top-10 token slots held by tokens that never occur in WikiText-2, averaged over the layers
   in the raw view and under each part of the job's hygiene default (mask only, standardisation
   only, both; pairs: raw and both), then per layer, raw and hygiene;
3. before/after examples: the README quick start's head and neurons and a few more.

WikiText-2 is read from ``--data`` or ``$TL_EMBSPACE_DATA`` (the folder holding ``wikitext-2/``);
token counts are cached under ``$TL_EMBSPACE_CACHE`` (default ``~/.cache/tl_embspace``).

Usage::

    TL_EMBSPACE_DATA=../shared/data python benchmarks/vocab_hygiene.py
    python benchmarks/vocab_hygiene.py --data ../shared/data --layers 5 15 20 25 --pair-heads 1 4
    python benchmarks/vocab_hygiene.py --layers 5 20 --parts rows --threads 1
    python benchmarks/vocab_hygiene.py --layers 5 20 --parts svd pairs --pair-heads 1 --threads 1
"""

import argparse
import os
import time

import torch

import tl_embspace as te
from tl_embspace import vocab, zoo
from tl_embspace.job import job_interpreters

K = 10
PARTS = ("rows", "svd", "pairs", "examples")


def detector_table(report: vocab.TokenReport, seen: torch.Tensor) -> None:
    unseen = ~seen
    print(f"\nWikiText-2 occurrences: {int(seen.sum())} of {seen.numel()} ids seen")
    print("\n| mask | flagged | never in WikiText-2 (precision) | of never-seen flagged (recall) |")
    print("|---|---:|---:|---:|")
    for name in ("special", "unreachable", "partial_utf8", "undertrained", "fragment", "flagged"):
        m = getattr(report, name)
        n = int(m.sum())
        precision = float(unseen[m].float().mean()) if n else float("nan")
        recall = float((m & unseen).sum()) / float(unseen.sum())
        print(f"| {name} | {n} | {precision:.1%} | {recall:.2%} |")
    print(f"| (any token, base rate) | {seen.numel()} | {float(unseen.float().mean()):.1%} | |")


def unseen_share(ids: torch.Tensor, seen: torch.Tensor) -> float:
    return float((~seen[ids.flatten()]).float().mean())


def vector_results(space, flt, layer: int, parts: list[str]) -> dict:
    chosen = job_interpreters(space.view.layer(layer))
    out = {}
    if "rows" in parts:
        for interp in chosen["rows"]:
            out[interp.name] = interp(space, layer=layer, k=K, token_filter=flt).top_ids
    if "svd" not in parts:
        return out
    spec = space.view.spec
    for interp in chosen["head_vectors"]:
        out[interp.name] = torch.cat(
            [
                interp(
                    space, layer=layer, head=h, k=K, components=list(range(8)), token_filter=flt
                ).top_ids
                for h in range(spec.n_heads)
            ]
        )
    for interp in chosen["components"]:
        out[interp.name] = interp(
            space, layer=layer, k=K, components=list(range(8)), token_filter=flt
        ).top_ids
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get(vocab.corpus.DATA_ENV))
    parser.add_argument("--layers", type=int, nargs="+", default=[5, 15, 20, 25])
    parser.add_argument("--pair-heads", type=int, nargs="*", default=[1])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="rows: FF keys/gates/values and Q/K/V/O sub-heads; svd: the first 8 SVD directions "
        "of each head's OV/QK and of the MLP matrices; pairs: QK/OV pairs of --pair-heads; "
        "examples: the before/after lists (default: all)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (a shared machine: 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = zoo.load("smollm2-135m-instruct", "bridge", device="cpu")
    raw = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    d_vocab = raw.write.matrix.shape[1]
    counts = vocab.wikitext2_counts(model.tokenizer, args.data)
    seen = counts.seen(d_vocab)
    print(f"# {counts.name}: {counts.n_tokens} tokens")
    report = vocab.detect_tokens(raw.view)
    detector_table(report, seen)

    choice = vocab.choose_vocabulary(raw, "hygiene")
    mask_filter = choice.token_filter
    allowed = mask_filter.mask(model.tokenizer, d_vocab) if mask_filter is not None else None
    assert allowed is not None
    print(f"\nhygiene filter: {choice.record['filter']['label']}")
    print(f"normalisation: {choice.record['normalisation']}")
    print(
        f"base rate among allowed tokens: {float((~seen[allowed]).float().mean()):.1%} never in "
        "WikiText-2"
    )
    variants = {
        "raw": (raw, None),
        "mask only": (raw, mask_filter),
        "standardised only": (choice.space, None),
        "hygiene (both)": (choice.space, mask_filter),
    }
    shares: dict[str, dict[str, list[float]]] = {}
    for layer in args.layers:
        for variant, (space, flt) in variants.items():
            for kind, ids in vector_results(space, flt, layer, args.parts).items():
                shares.setdefault(kind, {}).setdefault(variant, []).append(unseen_share(ids, seen))
        for h in args.pair_heads if "pairs" in args.parts else []:
            for kind in ("qk_pairs", "ov_pairs"):
                for variant in ("raw", "hygiene (both)"):
                    space, flt = variants[variant]
                    res = te.interpret(kind, space, layer=layer, head=h, k=K, token_filter=flt)
                    ids = torch.cat([res.top[1], res.top[2]])
                    shares.setdefault(kind, {}).setdefault(variant, []).append(
                        unseen_share(ids, seen)
                    )
        print(f"(layer {layer} done, {time.perf_counter() - t0:.0f}s)", flush=True)
    heads = ",".join(map(str, args.pair_heads))
    print(
        f"\nShare of top-{K} token slots never seen in WikiText-2, mean over layers {args.layers} "
        f"(pairs: both tokens of the top-{K} pairs of head(s) {heads}):\n"
    )
    names = list(variants)
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for kind, by_variant in shares.items():
        cells = [f"{sum(v) / len(v):.0%}" if (v := by_variant.get(n)) else "–" for n in names]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nPer layer, raw → hygiene (both):\n")
    print("| kind | " + " | ".join(f"L{layer}" for layer in args.layers) + " |")
    print("|---|" + "---:|" * len(args.layers))
    for kind, by_variant in shares.items():
        pairs = zip(by_variant["raw"], by_variant["hygiene (both)"], strict=True)
        print(f"| {kind} | " + " | ".join(f"{a:.0%} → {b:.0%}" for a, b in pairs) + " |")

    if "examples" not in args.parts:
        print(f"\ntotal {time.perf_counter() - t0:.0f}s")
        return
    print("\nBefore / after (raw | hygiene), top 6:\n")
    clean_space, flt = variants["hygiene (both)"]
    fmt = lambda ps: ", ".join(f"({a} → {b})" for a, b, _ in ps)  # noqa: E731
    before = te.interpret("ov_pairs", raw, layer=5, head=1, k=6).pairs()
    after = te.interpret("ov_pairs", clean_space, layer=5, head=1, k=6, token_filter=flt).pairs()
    print(f"- L5.H1 ov_pairs: {fmt(before)}  |  {fmt(after)}")
    for layer, head in ((5, 1), (15, 4), (20, 2)):
        opts = dict(layer=layer, head=head, k=6, components=[0])
        before = te.interpret("svd_ov", raw, **opts)
        after = te.interpret("svd_ov", clean_space, token_filter=flt, **opts)
        print(
            f"- L{layer}.H{head} svd_ov[0]: {' '.join(before.top_tokens(0))}  |  "
            f"{' '.join(after.top_tokens(0))}"
        )
    for layer, neuron in ((15, 1), (15, 4), (20, 100)):
        before = te.interpret("ff_value", raw, layer=layer, neurons=[neuron], k=6)
        after = te.interpret(
            "ff_value", clean_space, layer=layer, neurons=[neuron], k=6, token_filter=flt
        )
        print(
            f"- L{layer} ff_value[{neuron}]: {' '.join(before.top_tokens(0))}  |  "
            f"{' '.join(after.top_tokens(0))}"
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
