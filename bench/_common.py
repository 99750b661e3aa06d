"""Helpers the benchmark scripts share."""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path


def digest(path: str | Path) -> str:
    """Short content hash of a model directory (file names and bytes), to record which model was measured."""
    h = hashlib.sha256()
    for f in sorted(Path(path).rglob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def wait_for(path: Path, timeout_s: float) -> None:
    """The pipeline may still be writing the model: poll for its inference.json (written last, atomically)."""
    start = time.time()
    while not path.exists():
        if time.time() - start > timeout_s:
            sys.exit(f"{path} did not appear within {timeout_s:.0f}s")
        print(f"[bench] waiting for {path} ...", file=sys.stderr, flush=True)
        time.sleep(30)
