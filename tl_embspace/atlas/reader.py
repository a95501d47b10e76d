"""The typed reader of an atlas folder: ``Atlas.open(folder)``.

Everything that reads an atlas (the HTML report, the coming SQLite index, users) goes through
this class; nothing else parses the files.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import AtlasError
from . import schema


@dataclass(frozen=True)
class VectorTable:
    """One vector interpreter's rows in one layer (e.g. every FF value vector of layer 3).

    Attributes:
        interpreter: Registry name that produced it (e.g. "ff_value").
        labels: One label per row (e.g. "L3.ff_value[17]").
        side: "read" or "write": which basis the scores are in.
        basis: Name of that basis.
        note: Caveats the reader must know.
        top_ids, top_scores: ``[n, k]`` int32 ids and float32 scores, highest first.
        bottom_ids, bottom_scores: ``[n, k]``, lowest first.
        extras: Per-row extra columns (e.g. singular values), each of length n.
    """

    interpreter: str
    labels: tuple[str, ...]
    side: str
    basis: str
    note: str
    top_ids: np.ndarray
    top_scores: np.ndarray
    bottom_ids: np.ndarray
    bottom_scores: np.ndarray
    extras: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)


class TokenPair(NamedTuple):
    """One entry of a head's QK or OV pair list: token ids, their display strings and the score."""

    i: int
    j: int
    token_i: str
    token_j: str
    score: float


@dataclass(frozen=True)
class PairTable:
    """Top and bottom token pairs of one head's QK or OV circuit (see ``PairProjection``)."""

    interpreter: str
    label: str
    layer: int
    head: int
    left_basis: str
    right_basis: str
    note: str
    top: tuple[TokenPair, ...]
    bottom: tuple[TokenPair, ...]


@dataclass(frozen=True)
class AtlasLayer:
    """Everything an atlas holds about one layer.

    Attributes:
        layer: The layer number.
        vectors: Per vector interpreter (in the order written), its table.
        pairs: The QK and OV pair tables of every head, in the order written.
    """

    layer: int
    vectors: dict[str, VectorTable]
    pairs: tuple[PairTable, ...]

    def pair(self, label: str) -> PairTable:
        """The pair table with this label (e.g. "L1.H2.ov")."""
        for p in self.pairs:
            if p.label == label:
                return p
        raise AtlasError(
            f"layer {self.layer} has no pair table {label!r}; "
            f"it has: {', '.join(p.label for p in self.pairs)}"
        )


@dataclass(frozen=True)
class CopyingScores:
    """Copying score of every OV head: ``scores[i, h]`` for head h of ``layers[i]``."""

    layers: tuple[int, ...]
    scores: np.ndarray
    n_tokens: int
    definition: str

    def plot(self) -> Any:
        """Heat map per (layer, head) and histogram of the scores (needs matplotlib)."""
        from ..plots import copying

        return copying(self)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AtlasError(f"cannot read {path}: {e}; re-run the job to write it again") from e


def read_manifest(folder: Path) -> dict[str, Any]:
    """The validated manifest of ``folder`` (format known, fields present, file list sane).

    Raises:
        AtlasError: ``folder`` is not a folder, has no readable manifest, or its manifest is of
            an unknown format or lacks a field.
    """
    if not folder.is_dir():
        raise AtlasError(f"{folder} is not a folder, so it is not an atlas")
    path = folder / schema.MANIFEST
    if not path.is_file():
        raise AtlasError(f"{folder} has no {schema.MANIFEST}, so it is not an atlas")
    manifest = _load_json(path)
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt not in schema.READABLE_FORMATS:
        raise AtlasError(
            f"{path} declares format {fmt!r}; this version of tl_embspace reads "
            f"{', '.join(schema.READABLE_FORMATS)}. "
            "Re-run the job (or use the version of tl_embspace that wrote it)"
        )
    required = schema.MANIFEST_FIELDS + ((schema.UNEMBEDDING_HASH,) if fmt == schema.FORMAT else ())
    missing = [f for f in required if f not in manifest]
    files = manifest.get("files")
    if missing or not isinstance(files, list):
        raise AtlasError(f"{path} lacks {missing or ['files']}; re-run the job to write it again")
    bad = [f for f in files if not (isinstance(f, str) and schema.is_plain_file_name(f))]
    if bad:
        raise AtlasError(f"{path} lists file names outside the folder: {bad}")
    return manifest


class Atlas:
    """A read-only view of an atlas folder. Open one with ``Atlas.open(folder)``.

    Layers are read from disk when asked for (``atlas.layer(3)``), so opening is cheap.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._vocab: tuple[str, ...] | None = None

    @classmethod
    def open(cls, folder: "str | os.PathLike[str]") -> "Atlas":
        """Open a complete atlas (of format ``tl_embspace.atlas/2`` or ``tl_embspace.job/1``).

        Raises:
            AtlasError: the folder is not an atlas of a known format, or a file its manifest
                lists is missing.
        """
        folder = Path(folder)
        manifest = read_manifest(folder)
        # Derived files (older atlases list index.html) may be missing: they can be rebuilt.
        missing = [
            f for f in manifest["files"] if f not in schema.DERIVED and not (folder / f).is_file()
        ]
        if missing:
            raise AtlasError(
                f"{folder} is an incomplete atlas: {', '.join(missing)} missing; re-run the job"
            )
        return cls(folder, manifest)

    @property
    def format(self) -> str:
        """The format id the atlas was written in."""
        return self.manifest["format"]

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the atlas, as listed by its manifest."""
        return tuple(self.manifest["files"])

    @property
    def spec(self) -> dict[str, Any]:
        """The model's ``ModelSpec`` fields, as written (a plain dict: the atlas may be older)."""
        return self.manifest["spec"]

    @property
    def provenance(self) -> dict[str, Any]:
        """The ``Provenance`` fields of the results (model, weights, bases, versions)."""
        return self.manifest["provenance"]

    @property
    def options(self) -> dict[str, Any]:
        """The job's options (k, pair_k, svd_components, layers, weights, read, write, ...)."""
        return self.manifest["options"]

    @property
    def timings(self) -> dict[str, Any]:
        """Seconds per layer, for copying scores and in total."""
        return self.manifest["timings_s"]

    @property
    def unembedding_hash(self) -> str | None:
        """``"sha256:..."`` of the write basis used (None for ``tl_embspace.job/1`` atlases)."""
        return self.manifest.get(schema.UNEMBEDDING_HASH)

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers the atlas holds, in the order they were written."""
        return tuple(self.options["layers"])

    @property
    def vocab(self) -> tuple[str, ...]:
        """Display string of every token id (whitespace made visible)."""
        if self._vocab is None:
            self._vocab = tuple(_load_json(self.folder / schema.VOCAB))
        return self._vocab

    @property
    def copying_scores(self) -> CopyingScores:
        """The copying score of every OV head of the atlas's layers."""
        cs = self.manifest["copying_scores"]
        return CopyingScores(
            layers=tuple(cs["layers"]),
            scores=np.asarray(cs["scores"], dtype=np.float64),
            n_tokens=cs["n_tokens"],
            definition=cs["definition"],
        )

    def layer(self, layer: int) -> AtlasLayer:
        """Read one layer: its vector tables and pair tables.

        Raises:
            AtlasError: the atlas does not hold ``layer``.
        """
        if layer not in self.layers:
            raise AtlasError(
                f"{self.folder} holds layers {list(self.layers)}, not {layer}; "
                "re-run the job with that layer"
            )
        meta = _load_json(self.folder / schema.layer_meta_file(layer))
        try:
            with np.load(self.folder / schema.layer_arrays_file(layer)) as z:
                arrays = {name: z[name] for name in z.files}
        except (OSError, ValueError) as e:
            raise AtlasError(f"cannot read layer {layer} of {self.folder}: {e}") from e
        vectors = {}
        for name, m in meta["vectors"].items():
            fields = {f: arrays[schema.array_name(name, f)] for f in schema.VECTOR_ARRAYS}
            prefix = schema.extra_name(name, "")
            extras = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            vectors[name] = VectorTable(
                interpreter=name,
                labels=tuple(m["labels"]),
                side=m["side"],
                basis=m["basis"],
                note=m["note"],
                extras=extras,
                **fields,
            )
        pairs = tuple(
            PairTable(
                interpreter=p["interpreter"],
                label=p["label"],
                layer=p["layer"],
                head=p["head"],
                left_basis=p["left_basis"],
                right_basis=p["right_basis"],
                note=p["note"],
                top=tuple(_pair(x) for x in p["top"]),
                bottom=tuple(_pair(x) for x in p["bottom"]),
            )
            for p in meta["pairs"]
        )
        return AtlasLayer(layer=meta["layer"], vectors=vectors, pairs=pairs)

    def matches(self, obj: Any) -> bool:
        """Whether ``obj``'s unembedding is the one this atlas was computed with.

        Args:
            obj: An ``EmbeddingSpace`` (its write basis is hashed), a ``WeightView`` (used as
                it is) or a TransformerLens model (adapted, and folded if the atlas's weights
                were, as the job did).

        Raises:
            AtlasError: the atlas predates unembedding hashes (format ``tl_embspace.job/1``).
        """
        if self.unembedding_hash is None:
            raise AtlasError(
                f"{self.folder} was written in format {self.format!r}, which records no "
                "unembedding hash; re-run the job to get one"
            )
        from ..adapters import WeightView, adapt
        from ..space import EmbeddingSpace

        if not isinstance(obj, EmbeddingSpace):
            view = obj if isinstance(obj, WeightView) else adapt(obj)
            if not isinstance(obj, WeightView) and self.options["weights"] == "folded":
                view = view.folded()
            obj = EmbeddingSpace(view, read="W_E", write=self.options["write"])
        return schema.unembedding_hash(obj.write.matrix, obj.write.bias) == self.unembedding_hash

    def _repr_html_(self) -> str:
        """Notebook summary: provenance, options, and the strongest copying heads."""
        import html

        esc = html.escape
        prov, cs = self.provenance, self.copying_scores
        facts = {
            "folder": str(self.folder),
            "model": prov.get("model_name"),
            "weights": prov.get("weights"),
            "bases": f"read {prov.get('read_basis')}, write {prov.get('write_basis')}",
            "layers": ", ".join(map(str, self.layers)),
            "kept": f"k={self.options.get('k')} tokens, pair_k={self.options.get('pair_k')} pairs",
            "format": self.format,
        }
        best = sorted(
            (
                (float(s), ly, h)
                for ly, row in zip(cs.layers, cs.scores, strict=True)
                for h, s in enumerate(row)
            ),
            reverse=True,
        )[:5]
        facts["top copying heads"] = ", ".join(f"L{ly}.H{h} ({s:.2f})" for s, ly, h in best)
        rows = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts.items()
        )
        return f"<div><b>Atlas</b><table>{rows}</table></div>"

    def __repr__(self) -> str:
        return (
            f"Atlas({str(self.folder)!r}, model={self.provenance.get('model_name')!r}, "
            f"layers={list(self.layers)}, format={self.format!r})"
        )


def _pair(x: dict[str, Any]) -> TokenPair:
    return TokenPair(
        i=x["i"], j=x["j"], token_i=x["token_i"], token_j=x["token_j"], score=x["score"]
    )
