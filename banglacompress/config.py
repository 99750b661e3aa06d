"""Params, user errors, atomic outputs, the wrapper every stage script runs under, and the pipeline
variants (which compression stages apply)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import yaml


class UserError(Exception):
    """Bad input or bad params: printed as one line, exit code 2, no traceback."""


class ParamsLoader(yaml.SafeLoader):
    """PyYAML (YAML 1.1) reads `2e-05` as a string, and that is how DVC (ruamel, YAML 1.2) writes the
    float of `dvc exp run -S teacher.lr=2e-5` into params.yaml: read it as the float it is."""


ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as f:
        params = yaml.load(f, Loader=ParamsLoader) or {}
    if not isinstance(params, dict):
        raise UserError(f"{path} must be a YAML mapping of stage groups")
    return params


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def resolve_options(group: str, method: str, defaults: dict, given: dict | None, takes_nothing: str = "no options"
                    ) -> dict:
    """A method's option defaults (its spec: KDMethod, PruneMethod, QuantMethod) updated with the options
    set in `group` (null = keep the default). A set option the method does not take is an error that
    names it: silently ignoring it would hide a typo or a leftover from another method."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    extra = sorted(set(given) - set(defaults))
    require(not extra, f"{group}.{extra[0] if extra else ''}={given.get(extra[0]) if extra else ''!r} is set, but "
                       f"{group}.method={method} does not take it (it takes: {', '.join(defaults) or takes_nothing}); "
                       "set it to null")
    return {**defaults, **given}


def check_choice(name: str, value, choices) -> None:
    require(value in choices, f"{name}={value!r} is not supported; choose one of: {', '.join(map(str, choices))}")


def check_range(name: str, value, low: float, high: float, *, high_inclusive: bool = True,
                allow_auto: bool = False) -> None:
    """A number in [low, high] (or [low, high)); with allow_auto also the word auto (see by_task)."""
    if allow_auto and value == AUTO:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value and (
        value <= high if high_inclusive else value < high)
    bracket = "]" if high_inclusive else ")"
    require(ok, f"{name}={value!r} is out of range; it must be {'auto or ' if allow_auto else ''}a number in "
                f"[{low}, {high}{bracket}")


AUTO = "auto"  # a param whose best value was measured to differ by task: the value in a per-task table


def by_task(value, table: dict, task: str):
    """A param as used: `value` as given, or, when it is auto, what `table` (task -> value) says for the task."""
    return table[task] if value == AUTO else value


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """A killed run (SIGKILL skips every cleanup) leaves .<name>.tmp-<pid>; drop those of dead processes."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path, *, is_dir: bool = True):
    """Yield a temporary sibling path; move it onto `path` only if the block succeeds.

    A stage that fails or is killed never leaves a half-written output under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
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


# Pipeline variants (params.yaml `pipeline:`): which compression stages apply. The predecessor's names.
PIPELINES = {
    "baseline": (),
    "kd_only": ("distill",),
    "prune_only": ("prune",),
    "quant_only": ("quantize",),
    "kd_prune": ("distill", "prune"),
    "kd_quant": ("distill", "quantize"),
    "prune_quant": ("prune", "quantize"),
    "kd_prune_quant": ("distill", "prune", "quantize"),
}
DEFAULT_PIPELINE = "kd_prune_quant"


def pipeline_name(params: dict) -> str:
    name = params.get("pipeline", DEFAULT_PIPELINE)
    check_choice("pipeline", name, PIPELINES)
    return name


COMPRESSION_STAGES = ("distill", "prune", "quantize")


def stage_enabled(params: dict, stage: str) -> bool:
    """Whether the pipeline variant applies `stage` (distill, prune or quantize)."""
    assert stage in COMPRESSION_STAGES, stage  # a misspelt stage would otherwise read as "left out"
    return stage in PIPELINES[pipeline_name(params)]


def pass_through(params: dict, stage: str, src: str | Path, dst: str | Path, metrics: str | Path,
                 plots: str | Path | None = None) -> None:
    """A stage the pipeline variant leaves out: `dst` becomes a byte-for-byte copy of its input model.

    Every stage still writes all its DVC outputs, so the DAG is the same for every variant and DVC
    caches what it can. The plots directory gets a note rather than staying empty: git does not keep
    empty directories, so an experiment commit would lose it and DVC would report it deleted."""
    src = Path(src)
    require(src.is_dir(), f"model directory {src} not found: run the stage that writes it first (dvc repro)")
    name = pipeline_name(params)
    record = {"skipped": True, "pipeline": name,
              "reason": f"pipeline={name} leaves out {stage}: {dst} is a copy of {src}"}
    with atomic_output(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    if plots is not None:
        with atomic_output(plots) as tmp:
            (tmp / "skipped.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    write_json(metrics, record)
    print(f"[{stage}] skipped: {record['reason']}", file=sys.stderr)
