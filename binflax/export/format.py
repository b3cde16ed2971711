"""The export file: an uncompressed ``.npz`` archive with a JSON header and a checksum.

Why ``.npz``: anyone can open the file with ``numpy.load`` and no binflax, its members
are stored uncompressed so its size is the payload plus a few hundred bytes per array
(which makes the cost model's memory prediction checkable against the file's size),
and a zip archive keeps its directory at the end, so a truncated file cannot be
mistaken for a whole one. Files are read and written through ``etils.epath``, so a
``gs://`` path works as a local one.

Layout (docs/export.md has the full description):

- member ``__binflax_export__``: the header, UTF-8 JSON as a ``uint8`` array, with
  ``format`` (``"binflax.export"``), ``version``, the model and plan, one entry per
  layer, the declared ``dtype`` and ``shape`` of every array and ``sha256``;
- one member per array, named ``<layer path>/<field>`` (``layer1_0/conv1/kernel_bits``).

``sha256`` covers the header (without the digest itself, as canonical JSON) and then,
in sorted name order, every array's name, dtype, shape and bytes. :func:`read_archive`
checks, in this order, that the file is a zip archive, that it is a binflax export,
that its version is one this code reads, that every declared array is present with
its dtype and shape, and the digest; each failure is an :class:`ExportError` that names
the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from collections.abc import Mapping

import numpy as np
from etils import epath

from binflax.errors import UserError

FORMAT = "binflax.export"
VERSION = 2
# Version 1 files rebuilt their network from binflax's model registry and hold no programs.
_VERSIONS = {
    1: "it was written by binflax before exports carried their programs (version 1 files "
    "rebuilt the network from the model registry): export the model again",
}
HEADER_KEY = "__binflax_export__"
_ZIP_MAGIC = b"PK\x03\x04"


class ExportError(UserError, ValueError):
    """An export file that cannot be read: missing, truncated, foreign or corrupt."""


def digest(header: Mapping, arrays: Mapping[str, np.ndarray]) -> str:
    """The sha256 of a header (its ``sha256`` field left out) and the arrays."""
    h = hashlib.sha256()
    body = {k: v for k, v in header.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def write_archive(path: epath.PathLike, header: Mapping, arrays: Mapping[str, np.ndarray]) -> int:
    """Writes ``header`` and ``arrays`` to ``path`` atomically, creating its directory;
    returns the file's size.

    The archive is written to a hidden temporary file beside ``path`` and then renamed
    over it, so a reader never sees half a file (on Cloud Storage, where an object
    appears whole when its upload ends, the rename is a copy).
    """
    if HEADER_KEY in arrays:
        raise ValueError(f"array name {HEADER_KEY!r} is reserved for the header")
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    header = {
        "format": FORMAT,
        "version": VERSION,
        **header,
        "arrays": {n: {"dtype": a.dtype.str, "shape": list(a.shape)} for n, a in arrays.items()},
    }
    header["sha256"] = digest(header, arrays)
    header_bytes = np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8)
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".export-{uuid.uuid4().hex}.npz")
    try:
        with tmp.open("wb") as f:
            np.savez(f, **{HEADER_KEY: header_bytes}, **arrays)
        tmp.replace(path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path.stat().length


def read_archive(path: epath.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads and validates an export file; returns ``(header, arrays)``."""
    path = epath.Path(path)
    if not path.is_file():
        reason = "it is a directory" if path.is_dir() else "no such file"
        raise ExportError(f"cannot read export file {path}: {reason}")
    try:
        with path.open("rb") as f:
            magic = f.read(len(_ZIP_MAGIC))
    except OSError as e:
        raise ExportError(f"cannot read export file {path}: {e.strerror or e}") from None
    if magic != _ZIP_MAGIC:
        raise ExportError(
            f"{path} is not a binflax export: it is not an .npz (zip) archive "
            f"(it starts with {magic!r})"
        )
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            if HEADER_KEY not in npz.files:
                shown = ", ".join(npz.files[:5]) + (", ..." if len(npz.files) > 5 else "")
                raise ExportError(
                    f"{path} is an .npz archive but not a binflax export "
                    f"(no {HEADER_KEY!r} header; its arrays: {shown or 'none'})"
                )
            header = _parse_header(path, npz[HEADER_KEY])
            arrays = {name: npz[name] for name in npz.files if name != HEADER_KEY}
    except ExportError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ExportError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}") from None
    _check_arrays(path, header, arrays)
    if digest(header, arrays) != header.get("sha256"):
        raise ExportError(f"{path} is corrupt: its sha256 checksum does not match its content")
    return header, arrays


def _parse_header(path: epath.Path, raw: np.ndarray) -> dict:
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: the export header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ExportError(f"{path} is not a binflax export (format {found!r}, expected {FORMAT!r})")
    version = header.get("version")
    if version in _VERSIONS:
        raise ExportError(
            f"{path} has export format version {version}; this binflax reads version "
            f"{VERSION}: {_VERSIONS[version]}"
        )
    if version != VERSION:
        raise ExportError(
            f"{path} has export format version {version!r}; this binflax reads version "
            f"{VERSION} (a newer binflax wrote it?)"
        )
    if not isinstance(header.get("arrays"), dict):
        raise ExportError(f"{path}: the export header lists no arrays")
    return header


def _check_arrays(path: epath.Path, header: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
    declared = header["arrays"]
    missing = sorted(set(declared) - set(arrays))
    extra = sorted(set(arrays) - set(declared))
    if missing or extra:
        raise ExportError(
            f"{path} is corrupt: arrays missing {missing or 'none'}, undeclared {extra or 'none'}"
        )
    for name, spec in declared.items():
        array = arrays[name]
        if array.dtype.str != spec.get("dtype") or list(array.shape) != spec.get("shape"):
            raise ExportError(
                f"{path} is corrupt: array {name!r} is {array.dtype.str}{list(array.shape)}, "
                f"the header declares {spec.get('dtype')}{spec.get('shape')}"
            )
