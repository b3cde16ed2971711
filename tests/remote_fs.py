"""A fake bucket for tests: ``testfs://KEY`` paths stored in a local directory.

Why: on a Cloud TPU VM the workdir is ``gs://bucket/run``, and anything binflax writes
with ``open()``, ``os.makedirs`` or ``os.path`` on such a string lands in a *local*
folder named ``gs:`` instead (or fails). No network is available to tests, so this
registers a URI scheme of its own with ``etils.epath``: every ``epath.Path("testfs://...")``
reads and writes ``ROOT/...`` through epath's local backend, while ``str()`` and
``os.fspath()`` of the path stay the URI. Code that bypasses epath therefore writes to
``./testfs:/...`` relative to the working directory, where the test looks for it.

Orbax (through TensorStore) and an image folder's reads (through TensorFlow) reach Cloud
Storage with their own clients, which accept ``gs://`` but no test scheme. :func:`install`
redirects exactly those entry points for ``testfs://`` (and records the URIs TensorStore
received, so a test can check that binflax handed it the URI and not a local path).
TensorBoard events go through epath (binflax.summaries).
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

from etils import epath
from etils.epath import backend as epath_backend
from etils.epath import gpath

SCHEME = "testfs"
PREFIX = f"{SCHEME}://"


class _BucketBackend(epath_backend.Backend):
    """epath's local backend with ``testfs://KEY`` stored at ``ROOT/KEY``."""

    def __init__(self, root: str):
        self.root = root
        self._os = epath_backend.os_backend

    def local(self, path: epath.PathLike) -> str:
        text = os.fspath(path)
        if not text.startswith(PREFIX):
            raise ValueError(f"not a {PREFIX} path: {text}")
        return os.path.join(self.root, text[len(PREFIX) :])

    def uri(self, local: str) -> str:
        return PREFIX + os.path.relpath(local, self.root)

    def open(self, path, mode):
        return self._os.open(self.local(path), mode)

    def exists(self, path):
        return self._os.exists(self.local(path))

    def isdir(self, path):
        return self._os.isdir(self.local(path))

    def listdir(self, path):
        return self._os.listdir(self.local(path))

    def glob(self, path):
        return [self.uri(p) for p in self._os.glob(self.local(path))]

    def walk(self, top, *, top_down=True, on_error=None) -> Iterator[tuple[str, list, list]]:
        local = self.local(top)
        for root, dirs, files in self._os.walk(local, top_down=top_down, on_error=on_error):
            yield self.uri(root), dirs, files

    def makedirs(self, path, *, exist_ok=False, mode=None):
        self._os.makedirs(self.local(path), exist_ok=exist_ok, mode=mode)

    def mkdir(self, path, *, exist_ok=False, mode=None):
        self._os.mkdir(self.local(path), exist_ok=exist_ok, mode=mode)

    def rmtree(self, path):
        self._os.rmtree(self.local(path))

    def remove(self, path):
        self._os.remove(self.local(path))

    def rename(self, path, dst):
        self._os.rename(self.local(path), self.local(dst))

    def replace(self, path, dst):
        self._os.replace(self.local(path), self.local(dst))

    def copy(self, path, dst, overwrite):
        self._os.copy(self.local(path), self.local(dst), overwrite=overwrite)

    def stat(self, path):
        return self._os.stat(self.local(path))


@epath.register_path_cls(PREFIX)
class BucketPath(gpath.PosixGPath):
    """``testfs://bucket/key``: held as ``/testfs/bucket/key`` (as epath holds ``gs://``)."""

    backend: ClassVar[_BucketBackend | None] = None

    if sys.version_info < (3, 12):

        def __new__(cls, *parts: epath.PathLike) -> BucketPath:
            return super().__new__(cls, *_internal(parts))

    else:

        def __init__(self, *parts: epath.PathLike) -> None:
            super().__init__(*_internal(parts))

    @property
    def _uri_scheme(self) -> str | None:
        return SCHEME if self.parts[:2] == ("/", SCHEME) else None

    @property
    def _backend(self) -> _BucketBackend:
        if BucketPath.backend is None:
            raise RuntimeError(f"{PREFIX} paths need tests.remote_fs.install() first")
        return BucketPath.backend


def _internal(parts: tuple[epath.PathLike, ...]) -> tuple[str, ...]:
    text = "/".join(os.fspath(p) for p in parts)
    return (text.replace(PREFIX, f"/{SCHEME}/", 1) if text.startswith(PREFIX) else text,)


class Installed:
    """What :func:`install` set up: the local root and the URIs the native clients got."""

    def __init__(self, root: str):
        self.root = root
        self.tensorstore_uris: list[str] = []


def install(root: str, monkeypatch: Any) -> Installed:
    """Stores ``testfs://`` under ``root`` for the rest of the test (``monkeypatch`` undoes
    the native-client redirection; the epath class stays registered, inert)."""
    import orbax.checkpoint._src.serialization.tensorstore_utils as ts_utils

    installed = Installed(os.path.abspath(root))
    os.makedirs(installed.root, exist_ok=True)
    monkeypatch.setattr(BucketPath, "backend", _BucketBackend(installed.root))

    normalize = ts_utils._normalize_path

    def normalize_bucket(path: str) -> str:
        if str(path).startswith(PREFIX):
            installed.tensorstore_uris.append(str(path))
            path = BucketPath.backend.local(path)
        return normalize(path)

    monkeypatch.setattr(ts_utils, "_normalize_path", normalize_bucket)

    # TensorFlow reads an image folder's files itself (binflax.data.folder_source)
    from binflax.data import folder_source

    local_root = os.path.join(installed.root, "")

    def read_bucket_file(path):
        tf = folder_source.tf
        return tf.io.read_file(tf.strings.regex_replace(path, f"^{PREFIX}", local_root))

    monkeypatch.setattr(folder_source, "read_file", read_bucket_file)

    return installed


def files(installed: Installed, key: str) -> dict[str, pathlib.Path]:
    """The files stored under ``testfs://bucket/KEY``, by their path relative to it."""
    root = pathlib.Path(installed.root) / "bucket" / key
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}
