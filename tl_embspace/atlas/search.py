"""The atlas's search index: one SQLite file of every projected parameter's top and bottom tokens.

``index.sqlite`` (stdlib ``sqlite3``) is built from an atlas folder, through the reader, and
answers "which parameters promote ``' Paris'``" or "which heads copy" in milliseconds::

    index = SearchIndex.open("embspace-out")    # builds index.sqlite first if it is missing
    index.promoting(" Paris", limit=10)     # [Hit(label="L20.ff_value[17]", score=...), ...]
    index.copying_heads(limit=5)            # "which heads copy"

Tables (format ``tl_embspace.search/1``)::

    meta(key, value)                       format, model, unembedding hash of the atlas
    vocab(id, token)                       display string of every token id
    vocab_fts                              FTS5 trigram index of vocab.token (when SQLite has FTS5)
    params(id, label, layer, interpreter, row, head, side, basis)
    hits(token_id, polarity, score, param_id, rank)   polarity +1: top list, -1: bottom list
    pairs(label, layer, head, interpreter, polarity, rank, i, j, score)
    heads(layer, head, copying_score)

Every table has a primary key over what identifies a row, and the file is written under a
temporary name and renamed over ``index.sqlite`` only when complete: building twice (or after an
interrupted build) never duplicates a row, and a reader never sees a half-built index.
"""

import html
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import AtlasError, InvalidArgumentError
from ..tokens import visible
from . import schema
from .reader import Atlas
from .writer import current_umask

SEARCH_FORMAT = "tl_embspace.search/1"
_HEAD = re.compile(r"^L\d+\.(?:H|KV)(\d+)\.")

_TABLES = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE vocab(id INTEGER PRIMARY KEY, token TEXT NOT NULL);
CREATE INDEX vocab_token ON vocab(token);
CREATE TABLE params(
    id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, layer INTEGER NOT NULL,
    interpreter TEXT NOT NULL, row INTEGER NOT NULL, head INTEGER,
    side TEXT NOT NULL, basis TEXT NOT NULL);
CREATE TABLE hits(
    token_id INTEGER NOT NULL, polarity INTEGER NOT NULL, score REAL NOT NULL,
    param_id INTEGER NOT NULL, rank INTEGER NOT NULL,
    PRIMARY KEY (token_id, polarity, param_id, rank)) WITHOUT ROWID;
CREATE TABLE pairs(
    label TEXT NOT NULL, layer INTEGER NOT NULL, head INTEGER NOT NULL,
    interpreter TEXT NOT NULL, polarity INTEGER NOT NULL, rank INTEGER NOT NULL,
    i INTEGER NOT NULL, j INTEGER NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (label, polarity, rank)) WITHOUT ROWID;
CREATE INDEX pairs_i ON pairs(i);
CREATE INDEX pairs_j ON pairs(j);
CREATE TABLE heads(
    layer INTEGER NOT NULL, head INTEGER NOT NULL, copying_score REAL NOT NULL,
    PRIMARY KEY (layer, head)) WITHOUT ROWID;
"""


class Hit(NamedTuple):
    """One parameter vector that has a token in its top (or bottom) list.

    Attributes:
        label: The vector's label (e.g. "L20.ff_value[17]").
        layer, interpreter, row: Where it lives in the atlas (``atlas.layer(layer)
            .vectors[interpreter]``, row ``row``).
        head: The head (or KV head) of a sub-head or head SVD direction, else None.
        side: "write" (the score is a logit it adds) or "read" (its response to the token).
        token_id, token: The token matched, and its display string.
        rank: Its place in the vector's list (0 = best).
        score: The vector's score for the token.
    """

    label: str
    layer: int
    interpreter: str
    row: int
    head: int | None
    side: str
    token_id: int
    token: str
    rank: int
    score: float


class HitList(list[Hit]):
    """A list of :class:`Hit` that shows as a table in a notebook."""

    def _repr_html_(self) -> str:
        def cell(value: Any) -> str:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            return f'<td style="white-space:pre">{html.escape(text)}</td>'

        header = "".join(f"<th>{f}</th>" for f in ("vector", "side", "token", "rank", "score"))
        rows = "".join(
            "<tr>" + "".join(cell(v) for v in (h.label, h.side, h.token, h.rank, h.score)) + "</tr>"
            for h in self
        )
        return f"<table><tr>{header}</tr>{rows}</table>"


class PairHit(NamedTuple):
    """One QK/OV token pair of a head that involves a token (``i``: attended/query side)."""

    label: str
    layer: int
    head: int
    interpreter: str
    polarity: int
    rank: int
    i: int
    j: int
    token_i: str
    token_j: str
    score: float


class HeadScore(NamedTuple):
    """One OV head's copying score."""

    layer: int
    head: int
    copying_score: float


def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5 with the trigram tokenizer (SQLite >= 3.34)."""
    try:
        with sqlite3.connect(":memory:") as con:
            con.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
        return True
    except sqlite3.OperationalError:
        return False


def build_index(atlas: "Atlas | str | os.PathLike[str]", path: "Path | None" = None) -> Path:
    """Build the search index of an atlas, atomically.

    Args:
        atlas: An ``Atlas`` or the path of an atlas folder.
        path: Where to write it (default ``index.sqlite`` in the atlas folder). The file is
            written beside it under a temporary name and renamed into place when complete, so an
            existing index is replaced whole, never appended to.

    Returns:
        The path of the index.
    """
    if not isinstance(atlas, Atlas):
        atlas = Atlas.open(atlas)
    path = Path(path) if path is not None else atlas.folder / schema.SEARCH_INDEX
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        con = sqlite3.connect(tmp)
        try:
            _fill(con, atlas)
        finally:
            con.close()
        # SQLite creates files 0644 whatever the umask says; an index is an ordinary file.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fill(con: sqlite3.Connection, atlas: Atlas) -> None:
    con.execute("PRAGMA journal_mode=OFF")  # a temporary file: on failure it is deleted whole
    con.execute("PRAGMA synchronous=OFF")
    con.executescript(_TABLES)
    meta = {
        "format": SEARCH_FORMAT,
        "model_name": str(atlas.provenance.get("model_name")),
        "atlas_format": atlas.format,
        "unembedding_hash": str(atlas.unembedding_hash),
        "k": str(atlas.options.get("k")),
        "fts5": str(fts5_available()),
    }
    con.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    con.executemany("INSERT INTO vocab VALUES (?, ?)", enumerate(atlas.vocab))
    if fts5_available():
        con.execute(
            "CREATE VIRTUAL TABLE vocab_fts USING fts5(token, content='vocab', "
            "content_rowid='id', tokenize='trigram')"
        )
        con.execute("INSERT INTO vocab_fts(rowid, token) SELECT id, token FROM vocab")
    param_id = 0
    for layer in atlas.layers:
        record = atlas.layer(layer)
        for name, table in record.vectors.items():
            n, k = table.top_ids.shape
            ids = np.arange(param_id, param_id + n)
            con.executemany(
                "INSERT INTO params VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (int(ids[r]), label, layer, name, r, _head(label), table.side, table.basis)
                    for r, label in enumerate(table.labels)
                ),
            )
            for polarity, tok, score in (
                (1, table.top_ids, table.top_scores),
                (-1, table.bottom_ids, table.bottom_scores),
            ):
                rows = zip(
                    tok.ravel().tolist(),
                    score.astype(np.float64).ravel().tolist(),
                    np.repeat(ids, k).tolist(),
                    np.tile(np.arange(k), n).tolist(),
                    strict=True,
                )
                con.executemany(
                    f"INSERT INTO hits VALUES (?, {polarity}, ?, ?, ?)",
                    rows,  # pyright: ignore[reportArgumentType]
                )
            param_id += n
        for p in record.pairs:
            con.executemany(
                "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (p.label, p.layer, p.head, p.interpreter, pol, rank, x.i, x.j, x.score)
                    for pol, side in ((1, p.top), (-1, p.bottom))
                    for rank, x in enumerate(side)
                ),
            )
    cs = atlas.copying_scores
    con.executemany(
        "INSERT INTO heads VALUES (?, ?, ?)",
        (
            (layer, h, float(s))
            for layer, row in zip(cs.layers, cs.scores, strict=True)
            for h, s in enumerate(row)
        ),
    )
    con.commit()


def _head(label: str) -> int | None:
    m = _HEAD.match(label)
    return int(m.group(1)) if m else None


class SearchIndex:
    """Queries over an atlas's ``index.sqlite``. Open one with ``SearchIndex.open(folder)``.

    Tokens are given as text: ``" Paris"`` (raw, as the tokenizer's surface) and ``"␣Paris"``
    (the display form the atlas shows) both match; ``contains=True`` matches every token whose
    display string contains the text, case-insensitively.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Opened read-only: a query never changes (or creates) the file.
        self._con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(self._con.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as e:
            self._con.close()
            raise AtlasError(
                f"{path} is not a search index ({e}); rebuild it with `tl-embspace index`"
            ) from e
        if meta.get("format") != SEARCH_FORMAT:
            self._con.close()
            raise AtlasError(
                f"{path} is a search index of format {meta.get('format')!r}, not "
                f"{SEARCH_FORMAT!r}; rebuild it with `tl-embspace index`"
            )
        self.meta = meta

    @classmethod
    def open(cls, folder: "str | os.PathLike[str]", *, build: bool = True) -> "SearchIndex":
        """Open the index of the atlas at ``folder`` (or an ``index.sqlite`` file).

        Args:
            folder: An atlas folder, or the path of an index file.
            build: Build the index first if the atlas has none (default True).

        Raises:
            AtlasError: ``folder`` is neither an atlas nor an index, or (``build=False``) the
                atlas has no index.
        """
        folder = Path(folder)
        if folder.is_file():
            return cls(folder)
        path = folder / schema.SEARCH_INDEX
        if not path.is_file():
            if not build:
                raise AtlasError(f"{folder} has no {schema.SEARCH_INDEX}; build it first")
            build_index(Atlas.open(folder), path)
        return cls(path)

    def close(self) -> None:
        """Close the database connection."""
        self._con.close()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- tokens --------------------------------------------------------------------------

    def token_ids(self, text: str, *, contains: bool = False) -> list[int]:
        """Ids of the tokens that ``text`` names (exactly, or every one containing it).

        Raises:
            InvalidArgumentError: ``text`` is empty.
        """
        if not text:
            raise InvalidArgumentError("give a token to search for, e.g. ' Paris'")
        forms = sorted({text, visible(text)})
        if not contains:
            q = f"SELECT id FROM vocab WHERE token IN ({','.join('?' * len(forms))}) ORDER BY id"
            return [r[0] for r in self._con.execute(q, forms)]
        needle = visible(text)
        if self.meta.get("fts5") == "True" and len(needle) >= 3:
            # The trigram tokenizer matches substrings, folding case, from its index.
            phrase = '"' + needle.replace('"', '""') + '"'
            q = "SELECT rowid FROM vocab_fts WHERE vocab_fts MATCH ? ORDER BY rowid"
            return [i for (i,) in self._con.execute(q, (phrase,))]
        needle = needle.lower()  # no FTS5 (or under 3 characters): a scan of the vocabulary
        rows = self._con.execute("SELECT id, token FROM vocab ORDER BY id")
        return [i for i, t in rows if needle in t.lower()]

    def token(self, token_id: int) -> str:
        """The display string of a token id."""
        row = self._con.execute("SELECT token FROM vocab WHERE id=?", (token_id,)).fetchone()
        if row is None:
            raise InvalidArgumentError(f"token id {token_id} is not in the vocabulary")
        return row[0]

    # --- parameters ----------------------------------------------------------------------

    def promoting(self, text: str, **kwargs: Any) -> "HitList":
        """Vectors that have the token in their top list, highest score first.

        Keyword arguments are those of :meth:`hits` (``limit``, ``side``, ``interpreters``,
        ``layers``, ``contains``).
        """
        return self.hits(text, polarity=1, **kwargs)

    def suppressing(self, text: str, **kwargs: Any) -> "HitList":
        """Vectors that have the token in their bottom list, lowest score first."""
        return self.hits(text, polarity=-1, **kwargs)

    def hits(
        self,
        text: str,
        *,
        polarity: int = 1,
        limit: int | None = 20,
        side: str | None = None,
        interpreters: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        contains: bool = False,
    ) -> "HitList":
        """Vectors whose top (``polarity=1``) or bottom (``-1``) list holds the token.

        Args:
            text: The token (see the class docstring).
            polarity: 1 for the top lists (promoted / most responsive), -1 for the bottom ones.
            limit: At most this many hits (None: all).
            side: Only "write" or only "read" vectors (None: both).
            interpreters: Only these interpreters (e.g. ["ff_value"]).
            layers: Only these layers.
            contains: Match every token containing ``text`` (case-insensitive).

        Returns:
            The hits, strongest first (highest score for the top lists, lowest for the bottom).
        """
        if polarity not in (1, -1):
            raise InvalidArgumentError(f"polarity must be 1 or -1, got {polarity!r}")
        if side not in (None, "read", "write"):
            raise InvalidArgumentError(f"side must be 'read' or 'write', got {side!r}")
        ids = self.token_ids(text, contains=contains)
        if not ids:
            return HitList()
        where = [f"h.token_id IN ({','.join('?' * len(ids))})", "h.polarity = ?"]
        args: list[Any] = [*ids, polarity]
        if side is not None:
            where.append("p.side = ?")
            args.append(side)
        for column, values in (("p.interpreter", interpreters), ("p.layer", layers)):
            if values is not None:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        order = "DESC" if polarity == 1 else "ASC"
        q = (
            "SELECT p.label, p.layer, p.interpreter, p.row, p.head, p.side, h.token_id, v.token, "
            "h.rank, h.score FROM hits h JOIN params p ON p.id = h.param_id "
            "JOIN vocab v ON v.id = h.token_id "
            f"WHERE {' AND '.join(where)} ORDER BY h.score {order}, p.id"
        )
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return HitList(Hit(*row) for row in self._con.execute(q, args))

    def pairs_with(
        self, text: str, *, limit: int | None = 20, contains: bool = False
    ) -> list[PairHit]:
        """QK/OV top pairs (of every head) in which the token appears on either side."""
        ids = self.token_ids(text, contains=contains)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        q = (
            "SELECT p.label, p.layer, p.head, p.interpreter, p.polarity, p.rank, p.i, p.j, "
            "vi.token, vj.token, p.score FROM pairs p JOIN vocab vi ON vi.id = p.i "
            "JOIN vocab vj ON vj.id = p.j "
            f"WHERE p.polarity = 1 AND (p.i IN ({marks}) OR p.j IN ({marks})) "
            "ORDER BY p.score DESC, p.label"
        )
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return [PairHit(*row) for row in self._con.execute(q, [*ids, *ids])]

    def copying_heads(self, limit: int | None = 20) -> list[HeadScore]:
        """OV heads by copying score, highest first ("which heads copy")."""
        q = "SELECT layer, head, copying_score FROM heads ORDER BY copying_score DESC, layer, head"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return [HeadScore(*row) for row in self._con.execute(q)]

    def counts(self) -> dict[str, int]:
        """Rows per table (to check an index is complete and has no duplicates)."""
        return {
            t: self._con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("vocab", "params", "hits", "pairs", "heads")
        }

    def __repr__(self) -> str:
        return f"SearchIndex({str(self.path)!r}, model={self.meta.get('model_name')!r})"
