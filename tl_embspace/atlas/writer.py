"""The only code that writes an atlas folder.

An atlas is written into a temporary folder beside its target and swapped into place only when
complete (its files flushed to disk first): the old atlas (if any) is renamed aside, the new one
renamed into place, then the old one deleted. On any failure, a KeyboardInterrupt included, the
partial folder is removed and the previous atlas is left as it was. A writer killed outright
(SIGKILL) leaves hidden folders named with its pid; the next writer to the same target puts a
moved-aside atlas back and deletes the rest (:func:`recover_interrupted`). Only a folder that
holds a complete atlas (and nothing else), or an empty folder, is ever replaced; anything else
is refused with ``OutputFolderError``.
"""

import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AtlasError, OutputFolderError
from ..results import PairProjection, VectorProjection
from . import schema
from .reader import Atlas, read_manifest


def _refuse(out: Path, why: str) -> OutputFolderError:
    return OutputFolderError(
        f"refusing to write the atlas into {out}: {why}. Choose another output folder "
        "(a new one, an empty one, or one holding an atlas, with overwrite=True / --overwrite)"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _leftovers(out: Path, kind: str) -> list[Path]:
    """Hidden ``.NAME.partial-PID-*`` / ``.NAME.old-PID-*`` folders of writers no longer alive.

    A writer killed by a signal it cannot catch (SIGKILL, a power cut) leaves its temporary
    folder beside the target; the pid in the name tells whether its writer is still running.
    """
    dead = []
    for path in out.parent.glob(f".{out.name}.{kind}-*"):
        pid = path.name[len(f".{out.name}.{kind}-") :].split("-", 1)[0]
        if path.is_dir() and not path.is_symlink() and pid.isdigit() and not _pid_alive(int(pid)):
            dead.append(path)
    return sorted(dead)


def recover_interrupted(out: "str | os.PathLike[str]") -> None:
    """Undo what a writer killed mid-way left beside ``out``.

    A writer killed between moving the old atlas aside and moving the new one in leaves no
    ``out`` but a complete ``.NAME.old-PID-*``: it is put back. Every other leftover of a dead
    writer (an unfinished ``.partial-`` folder, an ``.old-`` folder already replaced) is
    deleted. Folders of writers still running are left alone.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return
    old = _leftovers(out, "old")
    if old and not out.exists() and not out.is_symlink():
        os.rename(old.pop(), out)
    for path in old + _leftovers(out, "partial"):
        shutil.rmtree(path, ignore_errors=True)


def _check_writable(out: Path) -> None:
    """Refuse at once a place the atlas could not be written to (not at the end of the job)."""
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise _refuse(out, f"{parent} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".tl-embspace-probe-", dir=parent)
    except OSError as e:
        raise _refuse(out, f"cannot create anything in {parent} ({e.strerror or e})") from e
    os.rmdir(probe)


def check_output_folder(out: "str | os.PathLike[str]", *, overwrite: bool) -> Path:
    """Check that an atlas may be written to ``out``; return it as a Path.

    ``out`` may be a path that does not exist yet; with ``overwrite``, also an empty folder or
    a folder that holds a complete atlas of a readable format and no other file. Call it before
    any slow work (the job and the command line do), so a refusal comes at once. What an
    earlier, killed run left beside ``out`` is cleaned up first (:func:`recover_interrupted`).

    Raises:
        OutputFolderError: ``out`` exists and may not be replaced (a ``FileExistsError``): it is
            a file or a link, the current folder or one of its parents, the home folder, holds
            files that are not an atlas's, or ``overwrite`` is False; or nothing can be
            created where ``out`` would go.
    """
    out = Path(out)
    if out.is_symlink():
        raise _refuse(out, "it is a symbolic link")
    recover_interrupted(out)
    if not out.exists():
        _check_writable(out)
        return out
    if not out.is_dir():
        raise _refuse(out, "it is a file, not a folder")
    resolved = out.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise _refuse(out, "it is the current folder or one of its parents")
    if resolved == home or resolved in home.parents or resolved.parent == resolved:
        raise _refuse(out, "it is the home folder, a parent of it, or a filesystem root")
    if not overwrite:
        raise _refuse(out, "it exists and overwrite=True (--overwrite) was not given")
    present = {p.name for p in out.iterdir()}
    if not present:
        return out
    try:
        listed = set(read_manifest(out)["files"])
        # Derived files (HTML, search index) may be present or not, whatever the manifest says.
        present.difference_update(schema.DERIVED)
        listed.difference_update(schema.DERIVED)
    except AtlasError as e:
        raise _refuse(out, f"it is not an atlas ({e}); its files are left untouched") from e
    if present != listed:
        missing, extra = sorted(listed - present), sorted(present - listed)
        raise _refuse(
            out,
            f"it is not exactly an atlas (missing: {missing or 'none'}; files the atlas does not "
            f"list: {extra or 'none'}); its files are left untouched",
        )
    return out


def current_umask() -> int:
    """The process's umask (new files get ``0o666 & ~umask``, folders ``0o777 & ~umask``)."""
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtlasWriter:
    """Write one atlas. Use as a context manager; the atlas appears at ``out`` on a clean exit.

    Example::

        with AtlasWriter(out, overwrite=False) as w:
            for layer in layers:
                w.write_layer(layer, vectors, pairs)
            w.finish(vocab=..., provenance=..., spec=..., options=..., copying_scores=...,
                     timings=..., unembedding_hash=..., report=write_site)

    Args:
        out: The atlas folder (see ``check_output_folder``; checked at construction and again
            just before the swap).
        overwrite: Allow replacing an existing atlas (or using an existing empty folder).
    """

    def __init__(self, out: "str | os.PathLike[str]", *, overwrite: bool = False) -> None:
        self.out = check_output_folder(out, overwrite=overwrite)
        self.overwrite = overwrite
        self._tmp: Path | None = None
        self._finished = False

    def __enter__(self) -> "AtlasWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # The pid in the name lets a later run tell a dead writer's leftovers from a live one's.
        prefix = f".{self.out.name}.partial-{os.getpid()}-"
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.out.parent))
        # mkdtemp makes the folder private (0700); an atlas is an ordinary output folder.
        os.chmod(tmp, 0o777 & ~current_umask())
        self._tmp = tmp
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tmp = self._tmp
        assert tmp is not None, "AtlasWriter is used as a context manager"
        try:
            if exc_type is None:
                self._swap(tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @property
    def _folder(self) -> Path:
        if self._tmp is None:
            raise AtlasError("AtlasWriter writes only inside its `with` block")
        return self._tmp

    def write_layer(
        self, layer: int, vectors: dict[str, VectorProjection], pairs: Sequence[PairProjection]
    ) -> None:
        """Write one layer's vector tables (arrays + labels) and pair tables."""
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"layer": layer, "vectors": {}, "pairs": []}
        for name, r in vectors.items():
            for field, dtype in schema.VECTOR_ARRAYS.items():
                values = getattr(r, field).cpu()  # results may live on a GPU
                arrays[schema.array_name(name, field)] = values.numpy().astype(dtype)
            for key, col in r.extras.items():
                arrays[schema.extra_name(name, key)] = np.asarray(col)
            meta["vectors"][name] = {
                "labels": list(r.labels),
                "side": r.side,
                "basis": r.basis,
                "note": r.note,
            }
        for p in pairs:
            d = p.to_dict()
            d.pop("provenance")  # the manifest holds it once
            meta["pairs"].append(d)
        path = self._folder / schema.layer_arrays_file(layer)
        _save_npz(path, arrays)
        self._write_text(schema.layer_meta_file(layer), json.dumps(meta, ensure_ascii=False))

    def copy_layer(self, atlas: Atlas, layer: int) -> None:
        """Copy one layer's files, byte for byte, from another atlas (merging shards)."""
        for name in (schema.layer_arrays_file(layer), schema.layer_meta_file(layer)):
            shutil.copyfile(atlas.folder / name, self._folder / name)

    def finish(
        self,
        *,
        vocab: Sequence[str],
        provenance: dict[str, Any],
        spec: dict[str, Any],
        options: dict[str, Any],
        copying_scores: tuple[Sequence[int], Any, int],
        timings: dict[str, Any],
        unembedding_hash: str,
        report: Callable[[Atlas, Path], object] | None = None,
        search_index: bool = True,
    ) -> None:
        """Write the vocabulary and the manifest, then the derived files.

        Args:
            vocab: Display string of every token id.
            provenance: ``asdict`` of the results' ``Provenance``.
            spec: ``asdict`` of the model's ``ModelSpec``.
            options: The job's options (must hold ``layers``, ``weights`` and ``write``).
            copying_scores: ``(layers, scores [n_layers, n_heads], n_tokens)``.
            timings: Seconds per stage.
            unembedding_hash: ``schema.unembedding_hash`` of the write basis.
            report: Writes the HTML atlas of a finished atlas into a folder
                (``tl_embspace.report.write_site``).
            search_index: Build ``index.sqlite`` (``tl_embspace.atlas.search``).
        """
        folder = self._folder
        self._write_text(schema.VOCAB, json.dumps(list(vocab), ensure_ascii=False))
        layers, scores, n_tokens = copying_scores
        written = [p.name for p in folder.iterdir()] + [schema.MANIFEST]
        manifest = {
            "format": schema.FORMAT,
            "provenance": provenance,
            "spec": spec,
            "options": options,
            "copying_scores": {
                "layers": list(layers),
                "scores": np.asarray(scores).tolist(),
                "n_tokens": n_tokens,
                "definition": schema.COPYING_DEFINITION,
            },
            "timings_s": timings,
            "files": sorted(written),
            schema.UNEMBEDDING_HASH: unembedding_hash,
        }
        self._write_text(schema.MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
        # Derived from the files just written, through the reader, like any later reader;
        # inside the temporary folder, so they appear with the atlas, atomically.
        if report is not None:
            report(Atlas(folder, manifest), folder)
        if search_index:
            from .search import build_index

            build_index(Atlas(folder, manifest))
        self._finished = True

    def _write_text(self, name: str, text: str) -> None:
        (self._folder / name).write_text(text, encoding="utf-8")

    def _swap(self, tmp: Path) -> None:
        if not self._finished:
            raise AtlasError("AtlasWriter.finish() was not called; the atlas was not written")
        # Checked again: the folder may have changed while the atlas was being computed.
        out = check_output_folder(self.out, overwrite=self.overwrite)
        _sync_folder(tmp)  # the files' contents reach the disk before the rename publishes them
        old_name = f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        old = out.parent / old_name if out.exists() else None
        moved_aside = False
        try:
            if old is not None:
                os.rename(out, old)
                moved_aside = True
            os.rename(tmp, out)
        except BaseException:
            if moved_aside:
                assert old is not None
                os.rename(old, out)
            raise
        _fsync(out.parent)
        if old is not None:
            shutil.rmtree(old)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed``, with the same bytes for the same arrays (no time stamps).

    numpy stamps each member with the current time; a fixed stamp makes two runs (or a merge of
    shards and a single run) write identical files.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def replace_derived(atlas: Atlas, name: str, write: Callable[[Path], None]) -> Path:
    """Rebuild one derived file or folder of an existing atlas (``schema.DERIVED``), atomically.

    ``write(tmp)`` writes it at a temporary path beside the target; then it is swapped into
    place (the old one renamed aside, the new one renamed in, the old one deleted). Only names
    in ``schema.DERIVED`` may be replaced, so no data file or user file is ever touched.

    Returns:
        The path of the new file or folder.
    """
    if name not in schema.DERIVED:
        raise AtlasError(f"{name!r} is not a derived file of an atlas ({schema.DERIVED})")
    target = atlas.folder / name
    tag = uuid.uuid4().hex[:8]
    tmp = atlas.folder / f".{name}.partial-{tag}"
    old = atlas.folder / f".{name}.old-{tag}"
    moved_aside = False
    try:
        write(tmp)
        if target.exists():
            os.rename(target, old)
            moved_aside = True
        os.rename(tmp, target)
        moved_aside = False
    finally:
        if moved_aside:  # the new one could not be moved in: put the old one back
            os.rename(old, target)
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    return target


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') contents to the disk, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a folder
        pass
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        _fsync(path)
    _fsync(folder)
