"""Do the directions an SST-2 fine-tune moved name sentiment words? Measured against VADER.

Reads the fine-tune written by ``demos/finetune_sst2.py`` with ``tl_embspace.apps.finetune_diff``
(the ranking by relative Frobenius change; top and bottom tokens of the most-changed FF key,
gate, value and Q/K/V/O sub-head deltas; singular directions of the QK/OV circuit deltas) and
scores every reading against the VADER sentiment lexicon (Hutto & Gilbert 2014, MIT licence,
shipped in the ``vaderSentiment`` package: ``pip install vaderSentiment``):

* **lexicon share**: the share of a reading's top-k and bottom-k tokens that are VADER words
  (a token is its decoded text, stripped and lower-cased; emoticons and multi-word entries are
  left out). Baselines, read the same way with the same bases: the *same* parameters in the base
  model, *random* parameters of the same groups and layers in the base model, random Gaussian
  directions, and the share of the whole vocabulary that is VADER words (the prior);
* **sign agreement** (FF value and O sub-head deltas, and the classifier head): each delta is
  oriented so that adding it raises the positive-class logit (through the final norm's gain
  and the head: ``sign((g ⊙ v) · (w_pos - w_neg))``); then the
  share of VADER words among its top tokens that are positive and among its bottom tokens that
  are negative. 0.5 is chance; the prior balance of positive words is printed beside it.

    python demos/read_sst2_finetune.py                  # after demos/finetune_sst2.py
    python demos/read_sst2_finetune.py --tuned FOLDER --base smollm2-135m-instruct

Writes ``read.json`` next to the fine-tune (or ``--out``) and prints the tables.
"""

import argparse
import importlib.util
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import torch
from sst2_common import SMOLLM2, cache_root

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = " (default: %(default)s)"
    p.add_argument("--base", default=SMOLLM2, help="zoo name or save_pretrained folder" + d)
    p.add_argument("--tuned", type=Path, help="the fine-tune folder (default: the demo's)")
    p.add_argument("--out", type=Path, help="JSON file (default: TUNED/read.json)")
    p.add_argument("--top-n", type=int, default=20, help="most-changed vectors per group" + d)
    p.add_argument("--k", type=int, default=30, help="top and bottom tokens per reading" + d)
    p.add_argument("--seed", type=int, default=0, help="random baselines' seed" + d)
    p.add_argument("--lexicon", type=Path, help="a VADER-format lexicon file (default: VADER's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p.parse_args(argv)


def read_lexicon(path: Path | None) -> dict[str, float]:
    """Single-word entries of a VADER-format lexicon (``word<TAB>valence<TAB>...``), lower-cased.

    A word starts with a letter and holds letters, digits, apostrophes or hyphens: VADER's
    emoticons (``:)``, ``</3``) are left out.
    """
    if path is None:
        spec = importlib.util.find_spec("vaderSentiment")
        if spec is None or spec.origin is None:
            raise SystemExit(
                "error: the VADER lexicon is needed: pip install vaderSentiment (or pip install "
                "'tl-embspace[demos]'), or pass --lexicon FILE"
            )
        path = Path(spec.origin).parent / "vader_lexicon.txt"
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, rest = line.partition("\t")
        if _WORD.fullmatch(word) and rest:
            out[word.lower()] = float(rest.split("\t")[0])
    return out


class Scorer:
    """Token ids -> VADER valence (or None), through each token's decoded text."""

    def __init__(self, tokenizer: Any, lexicon: dict[str, float], d_vocab: int) -> None:
        self.valence: list[float | None] = []
        for i in range(d_vocab):
            text = tokenizer.decode([i]).strip().lower() if i < len(tokenizer) else ""
            self.valence.append(lexicon.get(text))
        known = [v for v in self.valence if v is not None]
        self.prior = len(known) / d_vocab
        self.prior_positive = sum(v > 0 for v in known) / max(1, len(known))

    def share(self, ids: list[int]) -> float:
        """The share of ``ids`` that are lexicon words."""
        return sum(self.valence[i] is not None for i in ids) / max(1, len(ids))

    def signs(self, top: list[int], bottom: list[int]) -> tuple[int, int]:
        """``(agreeing, lexicon words)``: positive words on top, negative ones at the bottom."""
        agree = total = 0
        for ids, want in ((top, 1), (bottom, -1)):
            for i in ids:
                v = self.valence[i]
                if v is not None and v != 0:
                    total += 1
                    agree += (v > 0) == (want > 0)
        return agree, total


def projection_ids(projection: Any) -> list[tuple[list[int], list[int]]]:
    """``(top ids, bottom ids)`` per row of a ``VectorProjection``."""
    return [
        (projection.top_ids[i].tolist(), projection.bottom_ids[i].tolist())
        for i in range(len(projection.labels))
    ]


def main(argv: list[str] | None = None) -> int:
    """Diff, read, score against the lexicon and the baselines; print and write the tables."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lexicon = read_lexicon(args.lexicon)
    from tl_embspace import EmbeddingSpace, adapt
    from tl_embspace.apps import finetune_diff
    from tl_embspace.apps.finetune import _vector_groups
    from tl_embspace.cli.finetune_diff import load_model
    from tl_embspace.interpreters._base import project_vectors

    tuned_dir = args.tuned or cache_root() / f"{Path(args.base).name}-blocks2-seed0"
    if not (tuned_dir / "head.pt").is_file():
        raise SystemExit(f"error: {tuned_dir} holds no fine-tune; run demos/finetune_sst2.py")
    base_model, tuned_model = load_model(args.base, "bridge"), load_model(str(tuned_dir), "bridge")
    base, tuned = adapt(base_model).folded(), adapt(tuned_model).folded()
    space = EmbeddingSpace(base, read="W_E", write="W_U")
    head = torch.load(tuned_dir / "head.pt", weights_only=True)
    w_pos = head["weight"][:, 1] - head["weight"][:, 0]  # reads the final-normed state
    gain = adapt(base_model).globals.ln_final_w
    direction = w_pos * (gain if gain is not None else 1.0)  # what a residual write feeds it
    scorer = Scorer(base.tokenizer, lexicon, space.write.matrix.shape[1])
    t_load = time.perf_counter() - t0

    diff = finetune_diff(tuned, space, top_n=args.top_n, k=args.k)
    gen = random.Random(args.seed)
    rows = []
    for key, reading in diff.readings.items():
        layer_s, group = key.split(".", 1)
        layer = int(layer_s[1:])
        side = reading.side
        ids = projection_ids(reading)
        shares = [scorer.share(t + b) for t, b in ids]
        row: dict[str, Any] = {"reading": key, "side": side, "n": len(ids)}
        row["delta"] = sum(shares) / len(shares)
        if group in ("ff_key", "ff_gate", "ff_value", "q", "k", "v", "o"):
            _, vectors, labels = _vector_groups(base.layer(layer))[group]
            assert vectors is not None
            where = {label: i for i, label in enumerate(labels)}
            same = [where[label] for label in reading.labels]
            others = gen.sample(range(len(labels)), len(same))
            for name, idx in (("base_same", same), ("base_random", others)):
                p = project_vectors(
                    space,
                    vectors[idx].float(),
                    side=side,
                    interpreter=name,
                    labels=[labels[i] for i in idx],
                    layer=layer,
                    k=args.k,
                )
                row[name] = sum(scorer.share(t + b) for t, b in projection_ids(p)) / len(idx)
        noise = torch.randn(
            len(ids), direction.shape[0], generator=torch.Generator().manual_seed(args.seed)
        )
        p = project_vectors(
            space,
            noise,
            side=side,
            interpreter="noise",
            labels=[""] * len(ids),
            layer=layer,
            k=args.k,
        )
        row["gaussian"] = sum(scorer.share(t + b) for t, b in projection_ids(p)) / len(ids)
        if group in ("ff_value", "o"):
            # Orient each delta so that it raises the positive logit, then count sign agreement.
            vectors = _delta_rows(tuned, base, layer, group, reading.labels)
            agree = total = 0
            for (top, bottom), v in zip(ids, vectors, strict=True):
                raises = float(v @ direction.float())
                a, n = scorer.signs(top, bottom) if raises >= 0 else scorer.signs(bottom, top)
                agree, total = agree + a, total + n
            row["sign_agreement"] = agree / total if total else None
            row["sign_words"] = total
        rows.append(row)

    # The classifier head itself, read with the unembedding (it reads the final-normed state).
    raw = EmbeddingSpace(adapt(base_model), read="W_U", write="W_U")
    hp = project_vectors(
        raw,
        w_pos[None].float(),
        side="write",
        interpreter="head",
        labels=["head: positive - negative"],
        layer=None,
        k=args.k,
    )
    ((top, bottom),) = projection_ids(hp)
    agree, total = scorer.signs(top, bottom)
    head_row = {
        "top": hp.top_tokens(0),
        "bottom": hp.bottom_tokens(0),
        "lexicon_share": scorer.share(top + bottom),
        "sign_agreement": agree / total if total else None,
        "sign_words": total,
    }
    summary = _summarise(rows)
    result = {
        "tuned": str(tuned_dir),
        "base": args.base,
        "k": args.k,
        "top_n": args.top_n,
        "vocabulary_prior": scorer.prior,
        "prior_positive_among_lexicon_tokens": scorer.prior_positive,
        "lexicon_words": len(lexicon),
        "changes_top10": [c.__dict__ for c in diff.changes[:10]],
        "head": head_row,
        "by_group": summary,
        "rows": rows,
        "seconds": {"load": round(t_load, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    out = args.out or tuned_dir / "read.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    _print(result)
    print(f"wrote {out}")
    return 0


def _delta_rows(tuned, base, layer, group, labels) -> list:
    """The delta vectors (tuned - base) behind a reading of FF values or O sub-heads."""
    from tl_embspace.apps.finetune import _vector_groups

    _, vt, lt = _vector_groups(tuned.layer(layer))[group]
    _, vb, _ = _vector_groups(base.layer(layer))[group]
    assert vt is not None and vb is not None
    where = {label: i for i, label in enumerate(lt)}
    return [(vt[where[x]] - vb[where[x]]).float() for x in labels]


def _summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["reading"].split(".", 1)[1], []).append(r)
    out = {}
    for g, rs in sorted(groups.items()):
        n = sum(r["n"] for r in rs)
        entry: dict[str, Any] = {"readings": n}
        for col in ("delta", "base_same", "base_random", "gaussian"):
            have = [r for r in rs if col in r]
            if have:
                entry[col] = sum(r[col] * r["n"] for r in have) / sum(r["n"] for r in have)
        signed = [r for r in rs if r.get("sign_words")]
        if signed:
            words = sum(r["sign_words"] for r in signed)
            entry["sign_agreement"] = (
                sum(r["sign_agreement"] * r["sign_words"] for r in signed) / words
            )
            entry["sign_words"] = words
        out[g] = entry
    return out


def _print(result: dict[str, Any]) -> None:
    print(
        "most moved: "
        + ", ".join(f"{c['name']} {c['relative']:.3g}" for c in result["changes_top10"])
    )
    h = result["head"]
    print(f"head (positive - negative), top: {' '.join(h['top'][:15])}")
    print(f"  bottom: {' '.join(h['bottom'][:15])}")
    print(
        f"  lexicon share {h['lexicon_share']:.3f}, sign agreement {h['sign_agreement']} "
        f"over {h['sign_words']} words"
    )
    print(
        "vocabulary prior (share of tokens that are VADER words): "
        f"{result['vocabulary_prior']:.4f}; "
        f"positive among them {result['prior_positive_among_lexicon_tokens']:.3f}"
    )
    cols = ("delta", "base_same", "base_random", "gaussian", "sign_agreement")
    print("group        readings  " + "  ".join(f"{c:>14}" for c in cols) + "  sign words")
    for g, e in result["by_group"].items():
        cells = [f"{e[c]:14.4f}" if e.get(c) is not None else f"{'-':>14}" for c in cols]
        print(f"{g:<12} {e['readings']:>8}  " + "  ".join(cells) + f"  {e.get('sign_words', '-')}")


if __name__ == "__main__":
    raise SystemExit(main())
