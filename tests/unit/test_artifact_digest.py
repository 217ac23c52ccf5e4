"""Artifact URIs and digests (apps.catalog.artifacts): what an operator can check with the shell."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from apps.catalog.artifacts import ArtifactError, artifact_path, digest


def _tree(root: Path) -> Path:
    (root / "sub dir").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 2}')
    (root / "sub dir" / "weights-1.bin").write_bytes(b"\x00\x01" * 1000)
    (root / "sub-dir.txt").write_text("'-' sorts before '/' by bytes")
    return root


def test_a_file_hashes_to_its_sha256(tmp_path):
    data = b"weights" * 12345
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)

    assert digest(path).sha256 == hashlib.sha256(data).hexdigest()
    assert digest(path).size_bytes == len(data)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils' sha256sum")
def test_a_directory_hashes_as_the_documented_shell_pipeline(tmp_path):
    root = _tree(tmp_path / "model")

    shell = subprocess.run(
        "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
        shell=True, cwd=root, capture_output=True, text=True, check=True,
    )

    measured = digest(root)
    assert measured.sha256 == shell.stdout.split()[0]
    assert measured.size_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_any_change_to_a_directory_changes_its_digest(tmp_path):
    root = _tree(tmp_path / "model")
    before = digest(root).sha256

    (root / "sub dir" / "weights-1.bin").write_bytes(b"\x00\x02" * 1000)
    changed_content = digest(root).sha256
    (root / "sub dir" / "weights-1.bin").rename(root / "sub dir" / "weights-2.bin")
    changed_name = digest(root).sha256

    assert len({before, changed_content, changed_name}) == 3


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("/srv/models/tiny", "/srv/models/tiny"),
        ("file:///srv/models/tiny%20v2", "/srv/models/tiny v2"),
        ("file://localhost/srv/m", "/srv/m"),
    ],
)
def test_local_paths_and_file_uris_name_a_local_path(uri, path):
    assert artifact_path(uri) == Path(path)


@pytest.mark.parametrize("uri", ["s3://bucket/model", "https://example.com/model.bin", "file://other-host/m", ""])
def test_anything_that_would_need_a_download_is_refused(uri):
    with pytest.raises(ArtifactError):
        artifact_path(uri)


def test_a_missing_artifact_is_an_error(tmp_path):
    with pytest.raises(ArtifactError, match="neither a file nor a directory"):
        digest(tmp_path / "nope")
