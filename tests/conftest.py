"""Shared fixtures: tiny synthetic Bangla-like data, tiny model params, and a scratch repo copy."""
import contextlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

NEUTRAL = ["আমি", "তুমি", "ভালো", "বই", "খেলা", "গান", "আজ", "কাল", "বাড়ি", "স্কুল", "নদী", "আকাশ", "ভাত", "মাছ"]
MARKERS = {"hate": ["ঘৃণা", "খারাপ", "মার"], "sexual": ["অশ্লীল", "নোংরা"], "religious": ["ধর্ম", "কাফের"],
           "neutral": ["ঠিক", "আছে"], "positive": ["চমৎকার", "সুন্দর"], "negative": ["বাজে", "দুঃখ"]}

# The CUDA-only tests' mark, one for all files: scripts/gpu_check.sh selects them with `-k cuda`, and
# pytest_collection_modifyitems below finds them by it.
CUDA_REASON = "needs a CUDA GPU"
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)

TINY_ARCH = {"family": "bert", "layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "vocab_size": 300}


def _sentence(rng, markers):
    words = rng.choices(NEUTRAL, k=rng.randint(3, 9)) + list(markers)
    rng.shuffle(words)
    return " ".join(words)


def synthetic_frame(task: str = "binary", n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Comments whose labels are carried by marker words, so a tiny model can learn them."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        if task == "binary":
            y = rng.random() < 0.5
            rows.append({"Comments": _sentence(rng, [rng.choice(MARKERS["hate"])] if y else []), "HateSpeech": int(y)})
        elif task == "multilabel":
            labels = {k: int(rng.random() < 0.3) for k in ("hate", "sexual", "religious")}
            markers = [rng.choice(MARKERS[k]) for k, v in labels.items() if v]
            rows.append({"comment": _sentence(rng, markers), **labels})
        else:
            y = rng.randrange(3)
            rows.append({"Data": _sentence(rng, [rng.choice(MARKERS[["neutral", "positive", "negative"][y]])]),
                         "Label": y})
    return pd.DataFrame(rows)


# task -> (text column, label columns, label names, num_labels) of synthetic_frame's rows
TASKS = {
    "binary": ("Comments", ["HateSpeech"], ["HateSpeech"], 1),
    "multilabel": ("comment", ["hate", "sexual", "religious"], ["hate", "sexual", "religious"], 3),
    "multiclass": ("Data", ["Label"], ["0", "1", "2"], 3),
}


def task_data(task: str, n: int = 40, seed: int = 3):
    """synthetic_frame as a split: (texts, labels, meta) the way load_split returns them."""
    text_col, labels, names, k = TASKS[task]
    frame = synthetic_frame(task, n=n, seed=seed)
    y = frame["Label"].to_numpy() if task == "multiclass" else frame[labels].to_numpy(np.float32)
    return frame[text_col].tolist(), y, {"task": task, "label_names": names, "num_labels": k}


@contextlib.contextmanager
def linear_output_dtypes():
    """The set of dtypes every nn.Linear in the process returns inside the block (a global hook: it also sees
    models built inside the function under test)."""
    seen = set()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if isinstance(module, torch.nn.Linear) else None)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture
def fresh_accelerate_state(monkeypatch):
    """accelerate keeps its settings in a process-wide singleton; start and leave it clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield monkeypatch
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def binary_csv(tmp_path):
    path = tmp_path / "binary.csv"
    synthetic_frame("binary").to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


# Every dvc.yaml stage, in order
STAGES = ["prepare", "pretrain_corpus", "pretrain", "train_teacher", "distill", "prune", "quantize", "evaluate",
          "export"]


def tiny_params(data_path, **data_overrides) -> dict:
    """params.yaml with the repo's structure but models small enough to train in seconds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(path=str(data_path), **data_overrides)
    params["teacher"].update(scratch=dict(TINY_ARCH, layers=2, hidden=48, ffn=96), epochs=3, lr=0.003, patience=0)
    params["student"].update(scratch=dict(TINY_ARCH))
    params["distill"].update(epochs=3, lr=0.003, patience=0, min_teacher_margin=0.0)
    params["prune"].update(fine_tune_epochs=1, lr=0.001)
    # No pretraining unless a test asks (the DVC smoke and remote tests, test_pretrain): most tests run
    # train_teacher as a script on its own. When on: one epoch on the train split alone.
    # No stall check either: one epoch of a tiny model stays near word frequencies.
    params["pretrain"].update(enabled=False, corpora=[], epochs=1, batch_size=16, min_context_gain=None)
    params["distill"]["transfer"] = "train"  # no corpus either (data/pretrain_corpus.txt) unless a test asks
    params["threads"] = 1  # tiny models: a second thread only waits for the first
    params["evaluate"].update(latency_samples=20)
    return params


def venv_env() -> dict:
    """Environment whose `python` is this interpreter (dvc.yaml commands call `python`). PYTHONPATH "."
    makes a process started in a repo copy import that copy's package, not the installed one, so a test
    that edits the copy's code runs the edited code."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["CI"] = "true"
    env["PYTHONPATH"] = "."
    return env


def copy_project(dest: Path) -> Path:
    """Copy the project's code, dvc.yaml and params into `dest` (no data, models or metrics; an empty
    data/raw, which pretrain_corpus depends on and `make data` fills)."""
    dest.mkdir()
    (dest / "data" / "raw").mkdir(parents=True)
    for item in ("stages", "banglacompress", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / item)
    return dest


@pytest.fixture
def repo(tmp_path):
    """A throw-away copy of the project (code, dvc.yaml, params) to run stages and DVC in."""
    return copy_project(tmp_path / "repo")


def write_params(repo_dir: Path, params: dict) -> None:
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def run_stage(repo_dir: Path, stage: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=repo_dir, env=env or venv_env(),
                          capture_output=True, text=True, timeout=timeout)


def pytest_collection_modifyitems(config, items):
    """scripts/gpu_check.sh picks the CUDA tests with `-k cuda`, on a lent GPU with minutes to spare. A
    CUDA-only test without "cuda" in its name would be left to the whole-suite pass there, which is cut off
    at a time limit (the CPU-copy test in test_quantize.py was first named so). Such a name stops the collection."""
    unnamed = [item.nodeid for item in items if "cuda" not in item.nodeid.lower()
               and any(m.kwargs.get("reason") == CUDA_REASON for m in item.iter_markers("skipif"))]
    if unnamed:
        raise pytest.UsageError(f"CUDA-only tests need 'cuda' in their names (gpu_check.sh selects -k cuda): {unnamed}")
