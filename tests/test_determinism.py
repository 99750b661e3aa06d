"""Reproducible to the byte: the tokenizer and a tiny teacher trained in two separate processes are
identical, file for file. (The `tokenizers` WordPiece trainer this replaced gave a new vocabulary in every
process, so every fresh `dvc repro` trained another teacher.)"""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from banglacompress.models import TOKENIZER_MODELS
from conftest import copy_project, run_stage, synthetic_frame, tiny_params, venv_env, write_params

TOKENIZER_SCRIPT = """
import hashlib, json, sys
from banglacompress.models import train_tokenizer
texts = json.load(open(sys.argv[1], encoding="utf-8"))
tok = train_tokenizer(texts, 300, 32, sys.argv[3])
tok.save_pretrained(sys.argv[2])
print(hashlib.sha256(open(sys.argv[2] + "/tokenizer.json", "rb").read()).hexdigest())
"""


def _digests(directory) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()}


@pytest.mark.parametrize("tokenizer_model", TOKENIZER_MODELS)
def test_tokenizer_is_identical_across_processes(tmp_path, tokenizer_model):
    texts = synthetic_frame("binary", n=300)["Comments"].tolist()
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    hashes = []
    for run in ("a", "b"):
        out = subprocess.run([sys.executable, "-c", TOKENIZER_SCRIPT, str(tmp_path / "texts.json"),
                              str(tmp_path / run), tokenizer_model],
                             capture_output=True, text=True, timeout=120, env=venv_env())
        assert out.returncode == 0, out.stderr[-2000:]
        hashes.append(out.stdout.strip())
    assert hashes[0] == hashes[1]
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_prepare_and_teacher_are_identical_across_processes(tmp_path):
    data = tmp_path / "data.csv"
    synthetic_frame("binary", n=400).to_csv(data, index=False)
    runs = []
    for name in ("first", "second"):
        repo = copy_project(tmp_path / name)
        write_params(repo, tiny_params(data))
        for stage in ("prepare", "train_teacher"):
            result = run_stage(repo, stage)
            assert result.returncode == 0, result.stderr[-2000:]
        runs.append(repo)
    first, second = runs
    for out in ("data/prepared", "models/teacher"):
        assert _digests(first / out) == _digests(second / out), out
    assert (first / "metrics/train_teacher.json").read_bytes() == (second / "metrics/train_teacher.json").read_bytes()
    shutil.rmtree(first), shutil.rmtree(second)
