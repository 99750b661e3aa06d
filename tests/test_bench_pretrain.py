"""bench/bench_pretrain.py --work: the ablation reuses a make-bench run's pretrained encoder only when that run
pretrained on the same texts with the same pretrain params and code (else it pretrains again)."""
import json
import shutil

import yaml

from banglacompress.pretrain import check_pretrain_params
from bench import run_bench
from bench.bench_pretrain import bench_run_pretrained
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
                                                               "final_val_perplexity": 5.0}))
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
