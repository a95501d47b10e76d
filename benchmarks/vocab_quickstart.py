"""The README quick start before and after hygiene: share of top-10 slots seen in WikiText-2.

For the quick start's calls on the offline SmolLM2-135M-Instruct (FF values 1 and 4 of layer 15,
the OV pairs and first three OV singular directions of L5.H1), prints the top-10 tokens in the
raw view and under the job's hygiene default, and the share of those slots held by tokens that
occur in WikiText-2 (valid+test; ``--data`` or ``$TL_EMBSPACE_DATA``).

Usage::

    TL_EMBSPACE_DATA=../shared/data python benchmarks/vocab_quickstart.py
"""

import argparse
import os

import torch

import tl_embspace as te
from tl_embspace import vocab, zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get(vocab.corpus.DATA_ENV))
    args = parser.parse_args()
    model = zoo.load("smollm2-135m-instruct", "bridge", device="cpu")
    raw = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    seen = vocab.wikitext2_counts(model.tokenizer, args.data).seen(raw.write.matrix.shape[1])
    clean = vocab.choose_vocabulary(raw, "hygiene")
    views = {"raw": (raw, None), "hygiene": (clean.space, clean.token_filter)}
    calls = {
        "ff_value L15 [1, 4]": ("ff_value", dict(layer=15, neurons=[1, 4])),
        "svd_ov L5.H1 [0, 1, 2]": ("svd_ov", dict(layer=5, head=1, components=[0, 1, 2])),
        "ov_pairs L5.H1": ("ov_pairs", dict(layer=5, head=1)),
    }
    print("| call | raw: seen in WikiText-2 | hygiene: seen in WikiText-2 |")
    print("|---|---:|---:|")
    examples = []
    for label, (name, options) in calls.items():
        cells = []
        for view, (space, flt) in views.items():
            res = te.interpret(name, space, k=10, token_filter=flt, **options)
            if name == "ov_pairs":
                ids = torch.cat([res.top[1], res.top[2]])
                shown = ", ".join(f"({a} → {b})" for a, b, _ in res.pairs()[:5])
            else:
                ids = res.top_ids.flatten()
                shown = " ".join(res.top_tokens(0)[:8])
            cells.append(f"{float(seen[ids].float().mean()):.0%}")
            examples.append(f"- {label}, {view}: {shown}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(examples))


if __name__ == "__main__":
    main()
