"""Builds the native kernel on first use, into a per-user cache folder.

Why on first use and not at ``pip install``: the README's ``pip install -e .`` then stays
a pure-Python install with no build backend to add, and a machine without a compiler
still installs and runs (on XLA's popcount). The object is named by a hash of what it is
built from - the sources, the compiler and its version, the flags and the jaxlib whose FFI
headers it includes - so an upgrade of any of them builds a new one beside the old, and
two processes building at once each write a private file and rename it into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import jax
import jaxlib

# Compiled together into one object; HEADERS are hashed with them.
SOURCES = tuple(Path(__file__).with_name(n) for n in ("xnor_kernel.cc", "int8_kernel.cc"))
HEADERS = tuple(Path(__file__).with_name(n) for n in ("parallel.h", "ffi_attributes.h"))
LIBRARY = "libbinflax_xnor.so"
# No -march: each code path carries its own target attribute and is picked at run time,
# so one object runs on any x86-64 CPU and a cache folder shared between machines is safe.
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c++17")


class BuildError(RuntimeError):
    """The kernel could not be built (no compiler, or the compiler failed)."""


def cache_dir() -> Path:
    """``$BINFLAX_CACHE_DIR``, else ``~/.cache/binflax/native``."""
    if os.environ.get("BINFLAX_CACHE_DIR"):
        return Path(os.environ["BINFLAX_CACHE_DIR"])
    return Path.home() / ".cache" / "binflax" / "native"


def compiler() -> str:
    """The C++ compiler: ``$CXX``, else ``g++``, resolved on ``PATH``."""
    name = os.environ.get("CXX") or "g++"
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"no C++ compiler: {name!r} not found")
    return found


def library_path() -> Path:
    """The built object, building it if this source, compiler and jaxlib have none yet."""
    cxx = compiler()
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise BuildError(f"{cxx} --version failed: {error}") from error
    include = jax.ffi.include_dir()
    key = hashlib.sha256(
        b"\0".join(
            s.encode() if isinstance(s, str) else s
            for s in (
                *(f.read_bytes() for f in (*SOURCES, *HEADERS)),
                cxx,
                version,
                jaxlib.__version__,
                include,
                *FLAGS,
            )
        )
    ).hexdigest()[:16]
    target = cache_dir() / key / LIBRARY
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{LIBRARY}.{os.getpid()}.partial")
    command = [cxx, *FLAGS, "-isystem", include, "-o", str(partial), *map(str, SOURCES)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        raise BuildError(f"{' '.join(command)} failed: {error}") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    os.replace(partial, target)
    return target
