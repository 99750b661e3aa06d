"""SHA256SUMS in every model directory: written last when a directory is saved, checked by every loader,
so a corrupt or truncated file (a killed copy, a half-finished `dvc pull`, disk trouble) ends with one
line that names the file and the fix, never with a protobuf or safetensors traceback."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .config import require

SUMS_FILE = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` checks it too


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(directory: str | Path) -> None:
    """Record the sha256 of every file of a flat model directory (call it after the last file is written)."""
    directory = Path(directory)
    files = sorted(f for f in directory.iterdir() if f.is_file() and f.name != SUMS_FILE)
    (directory / SUMS_FILE).write_text("".join(f"{sha256_of(f)}  {f.name}\n" for f in files), encoding="utf-8")


def verify_checksums(directory: str | Path) -> None:
    """Every file SHA256SUMS lists is present with the recorded bytes; otherwise a UserError naming the file."""
    directory = Path(directory)
    sums = directory / SUMS_FILE
    fix = (f"restore it with `dvc checkout {directory}` (or `dvc pull {directory}` if the cache lacks it), or "
           "rerun the stage that writes it")
    require(sums.exists(), f"{directory} has no {SUMS_FILE}, so its files cannot be checked: {fix}")
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        path = directory / name
        require(path.is_file(), f"{path} is missing: {fix}")
        require(sha256_of(path) == digest, f"{path} is corrupt or truncated (its sha256 differs from {SUMS_FILE}): "
                                           f"{fix}")
