"""Queue the predecessor's planned experiments as named DVC experiments (`dvc exp run --queue`).

Usage: python scripts/queue_experiments.py [--dry-run] [--only NAME ...] [--allow-dirty]
       (what `make experiments` runs; ONLY="kd_v1 kd_v2" picks some)

Nothing runs until `dvc queue start`; the next steps are printed at the end."""
import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# name -> params.yaml overrides (dotted keys, as `dvc exp run -S` takes them). Each experiment starts
# from the committed params.yaml, so only what differs from it is listed.
EXPERIMENTS = {
    # Teacher alone. The lr values were tuned by the predecessor for pretrained hub models; the
    # from-scratch default teacher trains at teacher.lr=5e-4.
    "baseline_v1": {"pipeline": "baseline", "teacher.batch_size": 32, "teacher.lr": 2e-5, "teacher.epochs": 15},
    "baseline_v2": {"pipeline": "baseline", "teacher.batch_size": 32, "teacher.lr": 1e-5, "teacher.epochs": 20},
    "baseline_v3": {"pipeline": "baseline", "teacher.batch_size": 64, "teacher.lr": 3e-5, "teacher.epochs": 15},
    "baseline_v4": {"pipeline": "baseline", "teacher.freeze_base": True},  # classifier head only
    # Knowledge distillation only.
    "kd_v1": {"pipeline": "kd_only", "distill.alpha": 0.5, "distill.temperature": 4},
    "kd_v2": {"pipeline": "kd_only", "distill.alpha": 0.7, "distill.temperature": 4},
    "kd_v3": {"pipeline": "kd_only", "distill.alpha": 0.2, "distill.temperature": 2},
    # Distillation, then pruning.
    "prune_v1": {"pipeline": "kd_prune", "prune.method": "magnitude", "prune.sparsity": 0.3,
                 "prune.fine_tune_epochs": 3},
    "prune_v2": {"pipeline": "kd_prune", "prune.method": "magnitude", "prune.sparsity": 0.5,
                 "prune.fine_tune_epochs": 5},
    "prune_v3": {"pipeline": "kd_prune", "prune.method": "wanda", "prune.sparsity": 0.5, "prune.fine_tune_epochs": 5},
    # The whole pipeline, one quantization method each.
    "quant_v1": {"pipeline": "kd_prune_quant", "quantize.method": "dynamic"},
    "quant_v2": {"pipeline": "kd_prune_quant", "quantize.method": "static"},
    "quant_v3": {"pipeline": "kd_prune_quant", "quantize.method": "int4"},
    "quant_v4": {"pipeline": "kd_prune_quant", "quantize.method": "fp16"},
}

NEXT_STEPS = """\
Next:
  dvc queue start -j 1               # run them one after another (more workers only compete for 2 cores)
  dvc queue status                   # what is queued, running, done or failed (dvc queue logs NAME)
  dvc exp show --only-changed --md   # compare params and metrics
  dvc exp apply NAME                 # bring one into the workspace, then commit it"""


class Stop(Exception):
    """A problem to report as one line (exit code 2)."""


def as_override(key: str, value) -> str:
    """key=value as `dvc exp run -S` parses it (YAML-like: true/false, not Python's True/False)."""
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"{key}={text}"


def command(name: str) -> list[str]:
    overrides = [arg for key, value in EXPERIMENTS[name].items() for arg in ("-S", as_override(key, value))]
    return ["dvc", "exp", "run", "--queue", "-n", name, *overrides]


def unknown_keys(params: dict) -> list[str]:
    """Overrides whose dotted key is not in params.yaml: a typo would queue an experiment that fails later."""
    missing = []
    for name, overrides in EXPERIMENTS.items():
        for key in overrides:
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(f"{name}: {key}")
                    break
                node = node[part]
    return missing


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def check_repository() -> list[str]:
    """Stop unless DVC can queue here; return uncommitted tracked files (they would go into every experiment)."""
    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        raise Stop(f"{ROOT} is not a git repository: run `git init` and commit the project first")
    if git("rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        raise Stop("the git repository has no commit yet: experiments start from one (git add -A && git commit)")
    if not (ROOT / ".dvc").is_dir() or not (ROOT / "dvc.yaml").is_file():
        raise Stop(f"{ROOT} is not a DVC project with a pipeline (.dvc/ and dvc.yaml): run `dvc init`")
    status = git("status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in status.stdout.splitlines()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands, queue nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="queue only these experiments")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="queue although tracked files have uncommitted changes (they go into every experiment)")
    args = parser.parse_args(argv)

    names = args.only or list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise Stop(f"unknown experiment(s): {', '.join(unknown)}; choose from: {', '.join(EXPERIMENTS)}")
    missing = unknown_keys(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    if missing:
        raise Stop(f"overrides of keys that params.yaml does not have: {'; '.join(missing)}")

    if args.dry_run:
        for name in names:
            print(shlex.join(command(name)))
        return

    changed = check_repository()
    if changed and not args.allow_dirty:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise Stop(f"uncommitted changes to {shown} would go into every queued experiment: commit or stash them "
                   "first (or pass --allow-dirty)")
    for name in names:
        print(f"$ {shlex.join(command(name))}", flush=True)
        # `python -m dvc`: the dvc of this interpreter's environment, whatever is on PATH.
        result = subprocess.run([sys.executable, "-m", *command(name)], cwd=ROOT)
        if result.returncode != 0:
            raise Stop(f"`dvc exp run --queue -n {name}` failed (above); nothing after it was queued")
    print(f"\nQueued {len(names)} experiment(s): {', '.join(names)}\n{NEXT_STEPS}")


if __name__ == "__main__":
    try:
        main()
    except Stop as err:
        print(f"error: queue_experiments: {err}", file=sys.stderr)
        sys.exit(2)
