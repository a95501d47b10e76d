"""``tl-embspace show``: one neuron, sub-head, head's token pairs or SVD direction, by its label.

From an atlas folder (``--atlas``: instant, the stored top/bottom lists) or from a model
(``--model``: computed now, any ``--k``). Labels are the ones the atlas and every result use::

    L3.ff_value[17]   L3.ff_key[17]   L3.ff_gate[17]      FF neuron 17 of layer 3
    L3.H2.q[5]        L3.H2.o[5]      L3.KV1.k[5]          sub-heads (row 5 of a head's matrix)
    L3.H2.ov          L3.H2.qk                             a head's OV / QK token pairs
    L3.H2.ov.output[0]  L3.H2.qk.query[0]  L3.W_in.svd[0]  singular directions
"""

import argparse
import re
from pathlib import Path
from typing import Any

from .. import zoo
from ..atlas import Atlas
from ..errors import InvalidArgumentError
from ..space import BASIS_NAMES
from ._output import print_json, print_table
from .run import WEIGHTS, positive_int

#: label pattern -> (interpreter, the option that selects the label's row, if any)
LABELS: tuple[tuple[str, str, str | None], ...] = (
    (r"L(?P<layer>\d+)\.(?P<name>ff_key|ff_gate|ff_value)\[(?P<row>\d+)\]", "", "neurons"),
    (r"L(?P<layer>\d+)\.H(?P<head>\d+)\.(?P<name>q|o)\[(?P<row>\d+)\]", "", "heads"),
    (r"L(?P<layer>\d+)\.KV(?P<head>\d+)\.(?P<name>k|v)\[(?P<row>\d+)\]", "", "heads"),
    (r"L(?P<layer>\d+)\.H(?P<head>\d+)\.ov\.output\[(?P<row>\d+)\]", "svd_ov", "components"),
    (r"L(?P<layer>\d+)\.H(?P<head>\d+)\.qk\.query\[(?P<row>\d+)\]", "svd_qk", "components"),
    (r"L(?P<layer>\d+)\.W_in\.svd\[(?P<row>\d+)\]", "svd_in", "components"),
    (r"L(?P<layer>\d+)\.W_out\.svd\[(?P<row>\d+)\]", "svd_out", "components"),
    (r"L(?P<layer>\d+)\.H(?P<head>\d+)\.(?P<name>ov|qk)", "", None),
)


def parse_label(label: str) -> dict[str, Any]:
    """``{"interpreter", "layer", "head", "row", "select"}`` of a label, or a one-line error."""
    for pattern, interpreter, select in LABELS:
        m = re.fullmatch(pattern, label)
        if m is None:
            continue
        parts = m.groupdict()
        name = interpreter or parts["name"]
        if select is None:
            name += "_pairs"
        return {
            "interpreter": name,
            "layer": int(parts["layer"]),
            "head": int(parts["head"]) if parts.get("head") is not None else None,
            "row": int(parts["row"]) if parts.get("row") is not None else None,
            "select": select,
        }
    raise InvalidArgumentError(
        f"{label!r} is not a parameter label; examples: L3.ff_value[17], L3.H2.q[5], "
        "L3.KV1.k[5], L3.H2.ov, L3.H2.ov.output[0], L3.W_in.svd[0]"
    )


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``show`` and its options."""
    p = subparsers.add_parser(
        "show",
        help="one neuron, sub-head, head's token pairs or SVD direction",
        description="Show one parameter in embedding space, by label: L3.ff_value[17] (FF "
        "neuron), L3.H2.q[5] / L3.H2.o[5] / L3.KV1.k[5] / L3.KV1.v[5] (sub-heads), L3.H2.ov / "
        "L3.H2.qk (a head's token pairs), L3.H2.ov.output[0] / L3.H2.qk.query[0] / "
        "L3.W_in.svd[0] / L3.W_out.svd[0] (singular directions). From an atlas folder (the "
        "stored lists) or a model (computed now).",
        epilog="examples: tl-embspace show L15.ff_value[4] --atlas embspace-out; "
        "tl-embspace show L5.H1.ov --model smollm2-135m-instruct --k 10 --json",
    )
    default = " (default: %(default)s)"
    p.add_argument("label", help="the parameter's label, e.g. L3.ff_value[17]")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--atlas", type=Path, help="read it from this atlas folder")
    source.add_argument(
        "--model", help="compute it from this model (offline zoo name or TransformerLens name)"
    )
    p.add_argument(
        "--backend",
        default="bridge",
        choices=zoo.BACKENDS,
        help="with --model: TransformerBridge or HookedTransformer" + default,
    )
    p.add_argument(
        "--k",
        type=positive_int,
        default=20,
        help="tokens (or token pairs) shown, top and bottom; from an atlas at most what it "
        "stored" + default,
    )
    p.add_argument(
        "--weights",
        default="auto",
        choices=WEIGHTS,
        help="with --model: raw or folded weights, or auto (folded for pre-norm models)" + default,
    )
    p.add_argument(
        "--read", default="W_E", choices=BASIS_NAMES, help="with --model: read basis" + default
    )
    p.add_argument(
        "--write", default="W_U", choices=BASIS_NAMES, help="with --model: write basis" + default
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args: argparse.Namespace) -> int:
    """Find the label (in the atlas, or by running its interpreter) and print it."""
    where = parse_label(args.label)
    data = _from_atlas(args, where) if args.atlas is not None else _from_model(args, where)
    if args.json:
        print_json(data)
        return 0
    print(f"{data['label']}  ({data['description']})")
    if data.get("note"):
        print(f"note: {data['note']}")
    if data["kind"] == "pairs":
        rows = [
            (which, r, p["token_i"], p["token_j"], p["score"])
            for which in ("top", "bottom")
            for r, p in enumerate(data[which])
        ]
        print_table(("list", "rank", "token i", "token j", "score"), rows)
    else:
        top, bottom = data["top"], data["bottom"]
        rows = [(r, *_cells(top, r), *_cells(bottom, r)) for r in range(max(len(top), len(bottom)))]
        head = ("promoted", "suppressed") if data["side"] == "write" else ("top", "bottom")
        print_table(("rank", head[0], "score", head[1], "score"), rows)
    return 0


def _cells(tokens: list[dict[str, Any]], r: int) -> tuple[Any, Any]:
    return (tokens[r]["token"], tokens[r]["score"]) if r < len(tokens) else ("", "")


def _vector(label: str, side: str, basis: str, note: str, top: Any, bottom: Any) -> dict:
    return {
        "kind": "vector",
        "label": label,
        "side": side,
        "basis": basis,
        "note": note,
        "description": f"{side} side, basis {basis}",
        "top": top,
        "bottom": bottom,
    }


def _from_atlas(args: argparse.Namespace, where: dict[str, Any]) -> dict[str, Any]:
    atlas = Atlas.open(args.atlas)
    record = atlas.layer(where["layer"])  # refuses a layer the atlas lacks
    vocab = atlas.vocab
    if where["select"] is None:
        p = record.pair(args.label)
        return {
            "kind": "pairs",
            "label": p.label,
            "note": p.note,
            "description": f"{p.interpreter}: token i in {p.left_basis} × token j in "
            f"{p.right_basis}",
            "top": [x._asdict() for x in p.top[: args.k]],
            "bottom": [x._asdict() for x in p.bottom[: args.k]],
        }
    table = record.vectors.get(where["interpreter"])
    if table is None or args.label not in table.labels:
        raise InvalidArgumentError(
            f"{args.atlas} has no vector {args.label} (layer {where['layer']} holds "
            f"{', '.join(f'{n}[{len(t)}]' for n, t in record.vectors.items())})"
        )
    r = table.labels.index(args.label)

    def tokens(ids: Any, scores: Any) -> list[dict[str, Any]]:
        return [
            {"id": int(i), "token": vocab[i], "score": float(s)}
            for i, s in zip(ids[r][: args.k], scores[r][: args.k], strict=True)
        ]

    return _vector(
        args.label,
        table.side,
        table.basis,
        table.note,
        tokens(table.top_ids, table.top_scores),
        tokens(table.bottom_ids, table.bottom_scores),
    )


def _from_model(args: argparse.Namespace, where: dict[str, Any]) -> dict[str, Any]:
    from ..adapters import adapt
    from ..interpreters import interpret
    from ..space import EmbeddingSpace

    model = zoo.load(args.model, args.backend)
    view = adapt(model)
    weights = args.weights
    if weights == "auto":  # as the job does
        weights = "folded" if view.spec.norm_placement == "pre" else "raw"
    if weights == "folded":
        view = view.folded()
    space = EmbeddingSpace(view, read=args.read, write=args.write, tokenizer=model.tokenizer)
    options: dict[str, Any] = {"layer": where["layer"], "k": args.k}
    select = where["select"]
    if select == "neurons":
        options["neurons"] = [where["row"]]
    elif select == "heads":
        options["heads"] = [where["head"]]
    else:
        if where["head"] is not None:
            options["head"] = where["head"]
        if select == "components":
            options["components"] = [where["row"]]
    result = interpret(where["interpreter"], space, **options)
    if select is None:
        d = result.to_dict()
        return {
            "kind": "pairs",
            "label": d["label"],
            "note": d["note"],
            "description": f"{d['interpreter']}: token i in {d['left_basis']} × token j in "
            f"{d['right_basis']}",
            "top": d["top"],
            "bottom": d["bottom"],
        }
    if args.label not in result.labels:
        raise InvalidArgumentError(
            f"{args.model} has no {args.label} (it has e.g. {', '.join(result.labels[:3])})"
        )
    rec = result.records()[result.labels.index(args.label)]
    return _vector(args.label, result.side, result.basis, result.note, rec["top"], rec["bottom"])
