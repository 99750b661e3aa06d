"""bench/context_gain.py: it must score a run's encoder on the held-out texts and masks its pretrain stage used,
so its FP32 perplexity is the run's recorded one, and the context-free perplexity beside it is the stage's."""
import json
import sys

import pytest
import yaml

from banglacompress.config import load_params
from banglacompress.data import write_corpus
from banglacompress.pretrain import pretrain_mlm
from bench import context_gain
from conftest import NEUTRAL, ROOT, TINY_ARCH


def _run(tmp_path, seed: int):
    """A make-bench seed directory with a (tiny) pretrain stage's outputs."""
    run = tmp_path / f"seed{seed}"
    texts = [" ".join(NEUTRAL[(s + i) % 14] for i in range(n)) for s in range(14) for n in range(3, 10)]
    params = load_params(ROOT / "params.yaml")
    params.update(seed=seed, teacher={**params["teacher"], "scratch": TINY_ARCH, "dropout": 0.0},
                  pretrain={**params["pretrain"], "corpora": [], "epochs": 2, "batch_size": 16, "lr": 0.01,
                            "val_fraction": 0.1, "min_context_gain": None})
    params["data"]["max_length"] = 32
    (run / "data").mkdir(parents=True)
    (run / "metrics").mkdir()
    (run / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    write_corpus(texts, run / "data" / "pretrain_corpus.txt")
    metrics = pretrain_mlm(params["pretrain"], texts=texts, out_dir=run / "models" / "pretrained", seed=seed,
                           max_length=32, teacher_cfg=params["teacher"])
    (run / "metrics" / "pretrain.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run, metrics


def test_scores_the_stages_own_held_out_masks(tmp_path, monkeypatch):
    run, metrics = _run(tmp_path, seed=3)
    row = context_gain.score_run(run)
    assert row["final_val_perplexity_fp32"] == pytest.approx(metrics["final_val_perplexity"], rel=1e-5)
    assert row["unigram_val_perplexity"] == pytest.approx(metrics["unigram_val_perplexity"], rel=1e-9)
    assert row["context_gain"] == pytest.approx(metrics["context_gain"], rel=1e-9)
    assert row["first_epoch_val_perplexity_recorded"] == metrics["history"][0]["val_perplexity"]

    monkeypatch.setattr(sys, "argv", ["context_gain", "--runs", str(run), "--out", str(tmp_path / "out")])
    context_gain.main()
    table = (tmp_path / "out.md").read_text(encoding="utf-8")
    assert f"| {metrics['unigram_val_perplexity']:.1f} |" in table and "over 1 runs" in table
    with pytest.raises(SystemExit, match="has no models/pretrained"):
        monkeypatch.setattr(sys, "argv", ["context_gain", "--runs", str(tmp_path)])
        context_gain.main()
