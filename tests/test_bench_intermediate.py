"""bench/bench_intermediate.py: the aux dataset never holds an evaluation text of the run (near-duplicates
included), the encoder handed on from an aux fine-tune keeps its weights and gets a fresh head for the next task,
and the whole screen runs end to end on tiny models."""
import json
import sys

import pandas as pd
import pytest
import torch

from banglacompress.data import dedup_key, prepare_splits
from banglacompress.models import load_pretrained
from banglacompress.train import train_teacher
from bench import bench_intermediate
from conftest import synthetic_frame, tiny_params

LABELS = ["hate", "sexual", "religious"]


def _aux_csv(tmp_path, monkeypatch):
    path = tmp_path / "aux.csv"
    synthetic_frame("multilabel", n=300, seed=3).to_csv(path, index=False)
    monkeypatch.setitem(bench_intermediate.DATASETS, "aux", (str(path), "comment", LABELS))
    return path


def test_no_evaluation_text_is_in_the_aux_split(tmp_path, monkeypatch):
    aux = pd.read_csv(_aux_csv(tmp_path, monkeypatch))
    # an evaluation text that is an aux text with other punctuation and digits: the same near-duplicate key
    exclude = [aux["comment"][0] + " !! ১২", aux["comment"][5], "not in the aux set"]
    keys = {dedup_key(t) for t in exclude}
    counts = bench_intermediate.aux_prepared("aux", exclude, tmp_path / "prepared", seed=0)
    kept = pd.concat([pd.read_csv(tmp_path / "prepared" / f"{name}.csv") for name in ("train", "val")])
    assert not kept["text"].map(dedup_key).isin(keys).any()
    overlap = int(aux["comment"].map(dedup_key).drop_duplicates().isin(keys).sum())
    assert counts["eval_overlap_removed"] == overlap >= 2
    assert counts["train"] + counts["val"] == counts["rows_after_dedup"] - overlap == len(kept)
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text(encoding="utf-8"))
    assert meta["task"] == "multilabel" and meta["target_columns"] == LABELS


def test_the_handed_on_encoder_keeps_its_weights_and_gets_a_fresh_head(tmp_path, monkeypatch):
    _aux_csv(tmp_path, monkeypatch)
    params = tiny_params(tmp_path / "aux.csv")
    bench_intermediate.aux_prepared("aux", [], tmp_path / "aux", seed=0)
    train_teacher({**params["teacher"], "epochs": 1}, prepared=tmp_path / "aux", out_dir=tmp_path / "aux_model",
                  seed=0, max_length=32)
    bench_intermediate.save_encoder(tmp_path / "aux_model", tmp_path / "encoder")
    binary = {"task": "binary", "label_names": ["HateSpeech"], "target_columns": ["HateSpeech"], "num_labels": 1}
    trained, _ = load_pretrained(str(tmp_path / "aux_model"), {**binary, "task": "multilabel", "num_labels": 3,
                                                               "label_names": LABELS}, 32)
    handed, _ = load_pretrained(str(tmp_path / "encoder"), binary, 32)
    encoder = {k: v for k, v in trained.state_dict().items() if not k.startswith("classifier")}
    assert encoder and all(torch.equal(handed.state_dict()[k], v) for k, v in encoder.items())
    assert handed.classifier.out_features == 1 and trained.classifier.out_features == 3


def test_the_screen_runs_end_to_end(tmp_path, monkeypatch):
    """A tiny run: its own (binary) split and a scratch 'pretrained' encoder; the aux set is multi-label. The
    run's own teacher scores are given (run_teacher_scores is tested in test_bench_teacher)."""
    monkeypatch.chdir(tmp_path)
    _aux_csv(tmp_path, monkeypatch)
    target = tmp_path / "target.csv"
    synthetic_frame("binary", n=200).to_csv(target, index=False)
    params = tiny_params(target)
    params["teacher"].update(epochs=1)
    (tmp_path / "params.yaml").write_text(json.dumps(params), encoding="utf-8")
    run = tmp_path / "work" / "seed0"
    (run / "data" / "prepared").mkdir(parents=True)
    prepare_splits(params["data"], 0, run / "data" / "prepared")
    train_teacher(params["teacher"], prepared=run / "data" / "prepared", out_dir=run / "models" / "pretrained",
                  seed=0, max_length=32)
    own = {"val_macro_f1": 0.5, "test_macro_f1": 0.5, "best_epoch": 1, "epochs_run": 1, "from_run": str(run)}
    monkeypatch.setattr(bench_intermediate, "run_teacher_scores", lambda *a, **kw: own)
    monkeypatch.setattr(sys, "argv", ["bench_intermediate", "--work", str(tmp_path / "work"), "--seeds", "0",
                                      "--aux", "aux", "--out", str(tmp_path / "out")])
    bench_intermediate.main()
    result = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    (row,) = result["rows"]
    assert row["default"] == own and row["steps"][0]["aux"] == "aux" and 0 <= row["intermediate"]["val_macro_f1"] <= 1
    assert result["summary"]["val"]["values"] == [row["intermediate"]["val_macro_f1"] - 0.5]
    assert "| 0 | 0.5000 / 0.5000 |" in (tmp_path / "out.md").read_text(encoding="utf-8")


def _record(seed, aux, val_change):
    base = {"val_macro_f1": 0.7, "test_macro_f1": 0.7}
    return {"header": {"command": f"screen {seed}", "machine": {"cpu": "cpu"}, "work": f"w{seed}", "aux": aux,
                       "teacher": {"lr": 0.0002}},
            "rows": [{"seed": seed, "default": base, "steps": [],
                      "intermediate": {"val_macro_f1": 0.7 + val_change, "test_macro_f1": 0.7, "aux_seconds": 1.0}}]}


def test_records_of_other_seeds_merge_into_one_paired_table(tmp_path, monkeypatch, capsys):
    names = []
    for seed, change in ((44, 0.01), (42, 0.03)):
        names.append(str(tmp_path / f"r{seed}.json"))
        (tmp_path / f"r{seed}.json").write_text(json.dumps(_record(seed, ["toxic"], change)), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["bench_intermediate", "--merge", *names, "--out", str(tmp_path / "m")])
    bench_intermediate.main()
    result = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert [r["seed"] for r in result["rows"]] == [42, 44] and result["header"]["work"] == ["w44", "w42"]
    assert abs(result["summary"]["val"]["mean"] - 0.02) < 1e-9 and "--merge" in result["header"]["command"]
    (tmp_path / "other.json").write_text(json.dumps(_record(43, ["hatespeech"], 0.0)), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["bench_intermediate", "--merge", names[0], str(tmp_path / "other.json"),
                                      "--out", str(tmp_path / "m2")])
    with pytest.raises(SystemExit, match="is not the same screen"):
        bench_intermediate.main()
