"""bench/bench_pretrain.py --work: the ablation reuses a make-bench run's pretrained encoder only when that run
pretrained on the same texts with the same pretrain params and code (else it pretrains again)."""
import argparse
import json
import shutil

import pytest
import yaml

from banglacompress.config import load_params
from banglacompress.pretrain import check_pretrain_params
from bench import bench_pretrain, run_bench
from bench.bench_pretrain import bench_run_pretrained, parse_set, render, summary
from conftest import ROOT

TEXTS = ["আমি ভাত খাই", "তুমি বই পড়ো", "আকাশ নীল"]


def _finished_run(run, pretrain):
    """A make-bench run directory as run_bench leaves it, pretraining included (no real model needed)."""
    for item in run_bench.CODE:
        if item != "params.yaml":
            (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, run / item)
    (run / "params.yaml").write_text(yaml.safe_dump({"pretrain": {**pretrain, "corpora": [{"path": "/abs/x.csv",
                                                                                        "text_column": "t"}]}}))
    (run / "data").mkdir()
    (run / "data" / "pretrain_corpus.txt").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    (run / "models" / "pretrained").mkdir(parents=True)
    (run / "models" / "pretrained" / "config.json").write_text("{}")
    (run / "metrics").mkdir()
    (run / "metrics" / "pretrain.json").write_text(json.dumps({"texts_train": 3, "tokens_seen": 9,
                                                               "final_val_perplexity": 5.0,
                                                               "history": [{"epoch": 1, "val_perplexity": 9.0},
                                                                           {"epoch": 2, "val_perplexity": 5.0}]}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"stages": {"pretrain": {"seconds": 12.5}}}))


def test_reuses_the_runs_encoder_only_for_the_same_texts_params_and_code(tmp_path):
    pretrain = check_pretrain_params({"epochs": 8, "lr": 0.001})
    run = tmp_path / "seed42"
    run.mkdir()
    _finished_run(run, pretrain)
    reused = bench_run_pretrained(run, TEXTS, {**pretrain, "corpora": [{"path": "data/raw/x.csv", "text_column": "t"}]})
    assert reused["dir"] == run / "models" / "pretrained" and reused["seconds"] == 12.5
    assert reused["metrics"]["final_val_perplexity"] == 5.0
    assert bench_run_pretrained(run, TEXTS[:2], pretrain) is None               # another corpus
    assert bench_run_pretrained(run, TEXTS, {**pretrain, "epochs": 3}) is None  # other pretrain params
    module = run / "banglacompress" / "pretrain.py"
    module.write_text(module.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert bench_run_pretrained(run, TEXTS, pretrain) is None                   # other code


def test_mlm_train_corpora_takes_the_runs_teacher_scores_only_when_its_teacher_is_the_one_asked_for(tmp_path,
                                                                                                   monkeypatch):
    params = {**load_params(ROOT / "params.yaml"), "seed": 42}
    pretrain = check_pretrain_params(params["pretrain"])
    run = tmp_path / "seed42"
    run.mkdir()
    _finished_run(run, pretrain)
    (run / "params.yaml").write_text(yaml.safe_dump({**params, "pretrain": pretrain}))
    (run / "metrics" / "train_teacher.json").write_text(json.dumps({"val_macro_f1_tuned": 0.84, "best_epoch": 3,
                                                                    "epochs_run": 5}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"stages": {"pretrain": {"seconds": 12.5},
                                                                 "train_teacher": {"seconds": 146.0}},
                                                      "result": {"rows": {"teacher": {"macro_f1": 0.82}}}}))
    tuned = []
    monkeypatch.setattr(bench_pretrain, "fine_tune_and_score",
                        lambda cfg, *a, **k: tuned.append(cfg) or {"val_macro_f1": 0.5, "finetune_seconds": 1.0})
    ctx = dict(teacher=dict(params["teacher"], cv_folds=0), params=params, pretrain=pretrain, runs={42: run},
               corpus={"mlm_train_corpora": (TEXTS, {})}, prepared=None, max_length=128, test_texts=[], y_test=None)
    row = bench_pretrain.run_one("mlm_train_corpora", 42, ctx, tmp_path)
    assert not tuned and row["from_run"] == str(run) and row["pretrained_from"] == str(run / "models" / "pretrained")
    assert row["val_perplexity_by_epoch"] == [9.0, 5.0] and row["final_val_perplexity"] == 5.0
    assert (row["val_macro_f1"], row["test_macro_f1"], row["finetune_seconds"]) == (0.84, 0.82, 146.0)
    ctx["teacher"] = {**ctx["teacher"], "lr": 0.001}  # another teacher: fine-tuned here, on the run's encoder
    row = bench_pretrain.run_one("mlm_train_corpora", 42, ctx, tmp_path)
    assert tuned[0]["model"] == str(run / "models" / "pretrained") and "from_run" not in row


def test_each_variant_is_compared_with_no_pretraining_within_each_seed():
    def row(variant, seed, val, test):
        return {"variant": variant, "seed": seed, "val_macro_f1": val, "test_macro_f1": test, "finetune_seconds": 1.0}
    # mlm_train_corpora: +0.02, +0.015, +0.025 on val (outside noise), test +0.01, -0.01, +0.03 (not)
    rows = [row("none", 42, 0.70, 0.70), row("mlm_train_corpora", 42, 0.72, 0.71),
            row("none", 43, 0.80, 0.80), row("mlm_train_corpora", 43, 0.815, 0.79),
            row("none", 44, 0.90, 0.90), row("mlm_train_corpora", 44, 0.925, 0.93)]
    s = summary(rows)["mlm_train_corpora"]
    assert s["val_change_vs_none"]["mean"] == pytest.approx(0.02) and s["val_change_vs_none"]["outside_noise"]
    assert s["test_change_vs_none"]["values"] == pytest.approx([0.01, -0.01, 0.03])
    assert not s["test_change_vs_none"]["outside_noise"] and "val_change_vs_none" not in summary(rows)["none"]
    header = {"quick": False, "seeds": [42, 43, 44], "train_rows": [1], "val_rows": [1], "test_rows": [1],
              "prepared": "p", "machine": {"cpu": "x", "torch": "t"}, "threads": 2, "command": "c", "corpus_counts": {}}
    text = render(header, rows)
    assert "| +0.0200 ± 0.0050 **yes** | 0.8100 ± 0.1114 | +0.0100 ± 0.0200 |" in text
    assert "Best on mean val: **mlm_train_corpora**. Its val change against no pretraining, +0.0200 ± 0.0050 " \
           "paired, is outside seed noise." in text
    assert "(`pretrain`), pretrain.lr = 0.0005; seeds" in render({**header, "overrides": {"pretrain.lr": 0.0005}}, rows)


def test_set_overrides_one_teacher_or_pretrain_param_and_refuses_anything_else():
    assert parse_set("pretrain.lr=0.0005") == ("pretrain.lr", 0.0005)
    assert parse_set("teacher.scratch={layers: 2}") == ("teacher.scratch", {"layers": 2})
    for bad in ("pretrain.lr", "distill.alpha=0.5", "lr=0.1", "pretrain.a.b=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected teacher.KEY=VALUE"):
            parse_set(bad)
