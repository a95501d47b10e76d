"""``tl-embspace translate SOURCE TARGET --head HEAD.pt``: carry a classifier head between models.

A thin shell over :func:`tl_embspace.apps.vocabulary_map` (Dar et al. §6 (b)). The head was
trained on SOURCE's hidden states (``logits = h_source @ weight + bias``); the command writes the
head that reads TARGET's hidden states instead, through the vocabulary:
``h_source ≈ h_target · E_target · pinv(E_source)``, so ``weight' = E_t pinv(E_s) weight``.
SOURCE and TARGET are named as :func:`tl_embspace.zoo.load` takes them (zoo name, hub id, or a
``save_pretrained`` folder). HEAD is a ``torch.save`` file holding a dict with ``weight``
``[d_source, n_classes]`` and optionally ``bias`` ``[n_classes]`` (``demos/finetune_sst2.py``
writes one).

Writes into ``--out``: ``head.pt`` (the carried head, same format), ``translate.json`` (the
map's provenance: basis, tokens used; each class direction's top and bottom tokens in both
models and the correlation of its vocabulary scores across the two over the shared tokens) and
``translate.png`` (when matplotlib is installed: those scores, source against target). The map is
judged on data by ``demos/translate_sst2.py``, against chance and fitted baselines; this command
makes no accuracy claim. Existing files are replaced only with ``--overwrite``.
"""

import argparse
import hashlib
import json
from pathlib import Path

import torch

from .. import zoo
from ..errors import InvalidArgumentError
from ..space import BASIS_NAMES
from ._plot import pyplot, refuse_existing
from .finetune_diff import check_model_name, load_model
from .run import positive_int

FILES = ("head.pt", "translate.json", "translate.png")


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``translate`` and its options."""
    p = subparsers.add_parser(
        "translate",
        help="carry a classifier head from one model's hidden states to another's",
        description="Rewrite a linear head trained on SOURCE's hidden states to read TARGET's, "
        "through the vocabulary (E_target pinv(E_source), Dar et al. §6). SOURCE, TARGET: zoo "
        "name, hub id or save_pretrained folder.",
    )
    d = " (default: %(default)s)"
    p.add_argument("source", help="the model the head was trained on")
    p.add_argument("target", help="the model the carried head will read")
    p.add_argument("--head", required=True, type=Path, help="torch file: {weight, bias}")
    p.add_argument("--backend", default="bridge", choices=zoo.BACKENDS, help="backend" + d)
    p.add_argument(
        "--basis",
        default="W_U",
        choices=[b for b in BASIS_NAMES if b != "readout"],
        help="E in both models (W_U: the paper's; W_E for models without a trained unembedding, "
        "such as MiniLM)" + d,
    )
    p.add_argument(
        "--weights",
        default="raw",
        choices=("raw", "folded"),
        help="raw (a head on final-normed states) or norms folded into the bases" + d,
    )
    p.add_argument(
        "--shared-tokens",
        action="store_true",
        help="allow different vocabularies: map through the tokens both share by decoded text",
    )
    p.add_argument("--k", type=positive_int, default=15, help="tokens listed per direction" + d)
    p.add_argument("--out", type=Path, default=Path("translate-out"), help="output folder" + d)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def read_head(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight [d, n], bias [n] or None)`` from a ``torch.save`` file, checked."""
    if not path.is_file():
        raise InvalidArgumentError(f"--head {path} is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: pickle, zip or torch errors alike
        raise InvalidArgumentError(
            f"--head {path} is not a readable torch file ({error})"
        ) from None
    weight = data.get("weight") if isinstance(data, dict) else None
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise InvalidArgumentError(
            f"--head {path} must hold a dict with 'weight' [d_model, n_classes] (and optionally "
            "'bias' [n_classes])"
        )
    bias = data.get("bias")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[1:]):
        raise InvalidArgumentError(
            f"--head {path}: 'bias' must be a tensor of shape [{weight.shape[1]}]"
        )
    return weight.float(), None if bias is None else bias.float()


def class_directions(weight: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Directions ``[n, d]`` whose score differences decide the class, with labels.

    Two classes: ``w_1 - w_0`` (raises class 1 over class 0). More: each class column minus the
    mean column (softmax ignores what all classes share).
    """
    if weight.shape[1] == 2:
        return (weight[:, 1] - weight[:, 0])[None], ["class 1 - class 0"]
    centred = weight - weight.mean(1, keepdim=True)
    return centred.T, [f"class {i} - mean" for i in range(weight.shape[1])]


def plot(source: torch.Tensor, target: torch.Tensor, label: str, path: Path) -> bool:
    """Scatter of a direction's vocabulary scores, source against target (shared tokens)."""
    plt = pyplot()
    if plt is None:
        return False
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(source), generator=gen)[:5000]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(source[idx].numpy(), target[idx].numpy(), s=2, alpha=0.4)
    ax.set_xlabel("score in the source model")
    ax.set_ylabel("score of the carried head in the target model")
    ax.set_title(f"{label}: vocabulary scores, shared tokens", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float((x @ y) / (x.norm() * y.norm()).clamp(min=1e-300))


def run(args: argparse.Namespace) -> int:
    """Load both models and the head, carry it, read it, write the files."""
    from ..adapters import adapt
    from ..apps import shared_token_ids, vocabulary_map
    from ..interpreters._base import project_vectors
    from ..space import EmbeddingSpace

    targets = [args.out / f for f in FILES]
    refuse_existing(targets, args.overwrite)
    if args.out.exists() and not args.out.is_dir():
        raise InvalidArgumentError(f"--out {args.out} is a file, not a folder")
    for name in (args.source, args.target):  # before the slow loads: bad inputs fail at once
        check_model_name(name)
    weight, bias = read_head(args.head)
    views = []
    for name in (args.source, args.target):
        view = adapt(load_model(name, args.backend))
        views.append(view.folded() if args.weights == "folded" else view)
    source, target = (EmbeddingSpace(v, read=args.basis, write=args.basis) for v in views)
    if weight.shape[0] != source.view.spec.d_model:
        raise InvalidArgumentError(
            f"the head reads width {weight.shape[0]}, but {args.source} has d_model "
            f"{source.view.spec.d_model}; was it trained on another model?"
        )
    mapping = vocabulary_map(target, source, basis=args.basis, shared_tokens=args.shared_tokens)
    new_weight, new_bias = mapping.carry_head(weight, bias)

    directions, labels = class_directions(weight)
    carried, _ = class_directions(new_weight)
    if args.shared_tokens:
        ids_s, ids_t = shared_token_ids(source, target)
    else:
        ids_s = ids_t = torch.arange(source.read.matrix.shape[1])
    scores_s = directions @ source.read.matrix[:, ids_s].float()
    scores_t = carried @ target.read.matrix[:, ids_t].float()
    readings = []
    for i, label in enumerate(labels):
        read_s = project_vectors(
            source,
            directions[i : i + 1],
            side="read",
            interpreter="head",
            labels=[label],
            layer=None,
            k=args.k,
        )
        read_t = project_vectors(
            target,
            carried[i : i + 1],
            side="read",
            interpreter="head",
            labels=[label],
            layer=None,
            k=args.k,
        )
        readings.append(
            {
                "direction": label,
                "source_top": read_s.top_tokens(0),
                "source_bottom": read_s.bottom_tokens(0),
                "target_top": read_t.top_tokens(0),
                "target_bottom": read_t.bottom_tokens(0),
                "score_correlation_shared_tokens": _pearson(scores_s[i], scores_t[i]),
            }
        )
    data = {
        "map": {
            **mapping.provenance,
            "method": mapping.method,
            "shape": list(mapping.matrix.shape),
        },
        "head": {
            "file": str(args.head),
            "sha256": hashlib.sha256(args.head.read_bytes()).hexdigest(),
            "shape": list(weight.shape),
            "bias": bias is not None,
        },
        "carried_head_shape": list(new_weight.shape),
        "readings": readings,
        "provenance": {
            "source": args.source,
            "target": args.target,
            "backend": args.backend,
            "weights": args.weights,
            "basis": args.basis,
            "shared_tokens": args.shared_tokens,
            "meaning": "the carried head reads the target's hidden states at the place the "
            "source head read the source's (e.g. the final-normed output)",
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": new_weight.contiguous(), "bias": new_bias}, targets[0])
    (args.out / "translate.json").write_text(
        json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    png = plot(scores_s[0], scores_t[0], labels[0], targets[2])
    if not png:
        targets[2].unlink(missing_ok=True)  # an earlier run's plot (only with --overwrite)
    for r in readings:
        corr = r["score_correlation_shared_tokens"]
        print(f"{r['direction']}: correlation of vocabulary scores {corr:.3f}")
        print(f"  source top: {' '.join(r['source_top'][:8])}")
        print(f"  target top: {' '.join(r['target_top'][:8])}")
    print(
        f"mapped through {mapping.provenance['n_tokens']} tokens, basis {args.basis}; wrote "
        + ", ".join(str(t) for t in targets if t.exists())
        + ("" if png else " (no plot: matplotlib not installed)")
    )
    return 0
