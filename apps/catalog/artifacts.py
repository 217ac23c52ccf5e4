"""Model version artifacts: where they are and what they hash to. No Django here.

An artifact is a local file or directory, named by a path or a ``file://``
URI. Nothing is ever downloaded: every worker that serves the version must
see the artifact at that path (a shared or synced filesystem).

The sha256 of a file is the usual one. The sha256 of a directory is that of
the ``sha256sum`` lines of its regular files, sorted by relative path, which
an operator can reproduce with the shell::

    cd DIR && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

Symbolic links are not followed (``find -type f`` skips them too); the size
is the total of the hashed files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK_BYTES = 1024 * 1024


class ArtifactError(ValueError):
    """The artifact URI is not a local one, or the artifact cannot be read."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    size_bytes: int


def artifact_path(uri: str) -> Path:
    """The local path an artifact URI names: a path, or ``file://[localhost]/path``."""
    if not uri:
        raise ArtifactError("the artifact URI is empty")
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"{uri}: a file:// URI must name a local path (no host)")
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise ArtifactError(
            f"{uri}: only local paths and file:// URIs are supported (workers never download artifacts)"
        )
    return Path(uri).expanduser()


def digest(path: Path) -> Digest:
    """sha256 and size of a file, or of a directory as described in the module docstring."""
    if path.is_symlink() and not path.exists():
        raise ArtifactError(f"{path} is a broken symbolic link")
    if path.is_file():
        sha, size = _file_digest(path)
        return Digest(sha, size)
    if not path.is_dir():
        raise ArtifactError(f"{path} is neither a file nor a directory")
    files = sorted(_regular_files(path), key=lambda relative: relative.encode())
    listing = hashlib.sha256()
    total = 0
    for relative in files:
        sha, size = _file_digest(path / relative)
        listing.update(f"{sha}  ./{relative}\n".encode())
        total += size
    return Digest(listing.hexdigest(), total)


def _regular_files(root: Path) -> list[str]:
    found: list[str] = []
    for directory, _subdirectories, names in os.walk(root):  # does not descend into linked directories
        for name in names:
            full = Path(directory) / name
            if full.is_file() and not full.is_symlink():
                found.append(full.relative_to(root).as_posix())
    return found


def _file_digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                sha.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return sha.hexdigest(), size
