"""Params, user errors, atomic outputs and the wrapper every stage script runs under."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml


class UserError(Exception):
    """Bad input or bad params: printed as one line, exit code 2, no traceback."""


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise UserError(f"{path} must be a YAML mapping of stage groups")
    return params


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def check_choice(name: str, value, choices) -> None:
    require(value in choices, f"{name}={value!r} is not supported; choose one of: {', '.join(map(str, choices))}")


def check_range(name: str, value, low: float, high: float, *, high_inclusive: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value and (
        value <= high if high_inclusive else value < high)
    bracket = "]" if high_inclusive else ")"
    require(ok, f"{name}={value!r} is out of range; it must be a number in [{low}, {high}{bracket}")


def stage_main(func):
    """Run a stage's main(): UserError -> one line on stderr and exit 2; log wall time."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        stage = Path(sys.argv[0]).stem
        start = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except UserError as err:
            print(f"error: {stage}: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print(f"error: {stage}: interrupted; no output was written", file=sys.stderr)
            sys.exit(130)
        print(f"[{stage}] done in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        return result

    return wrapper


def log_config(stage: str, config: dict) -> None:
    print(f"[{stage}] config: {json.dumps(config, sort_keys=True, default=str)}", file=sys.stderr)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path, *, is_dir: bool = True):
    """Yield a temporary sibling path; move it onto `path` only if the block succeeds.

    A stage that fails or is killed never leaves a half-written output under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(path)
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    with atomic_output(path, is_dir=False) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def read_json(path: str | Path):
    path = Path(path)
    require(path.exists(), f"{path} not found: run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text(encoding="utf-8"))
