"""bench/bench_stacking.py: the stacked teacher's train rows get out-of-fold regression logits (a fold's rows were
never fitted on), the offsets reach the logits by token ids, the paired summary on hand-made rows, and the four
rows end to end on a tiny finished run."""
import json

import numpy as np
import pytest
import torch
import yaml

from banglacompress import baseline
from banglacompress.data import prepare_splits
from bench import bench_stacking, bench_teacher, run_bench
from conftest import synthetic_frame, tiny_params


def test_each_train_rows_offset_comes_from_a_regression_that_never_saw_it(monkeypatch):
    frame = synthetic_frame("binary", n=60)
    texts, y = list(frame["Comments"]), frame[["HateSpeech"]].to_numpy(float)
    fitted_on = []
    real = baseline.fit_tfidf_lr

    def spy(task, train_texts, y_train, seed=42, vectorizer=None):
        fitted_on.append(set(train_texts))
        return real(task, train_texts, y_train, seed, vectorizer)

    scored = []
    real_predict = baseline.predict_proba
    monkeypatch.setattr(bench_stacking, "fit_tfidf_lr", spy)
    monkeypatch.setattr(bench_stacking, "predict_proba",
                        lambda task, v, m, held: scored.append((len(fitted_on) - 1, list(held))) or real_predict(task, v, m, held))
    logits = bench_stacking.out_of_fold_logits("binary", texts, y, seed=0)
    assert logits.shape == (60, 1) and len(fitted_on) == bench_stacking.FOLDS
    assert sorted(t for _, held in scored for t in held) == sorted(texts)  # every row scored exactly once
    for model, held in scored:
        assert not fitted_on[model] & set(held)


class _Zeros(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": torch.zeros(len(input_ids), 2)})()


def test_offsets_are_added_by_the_rows_token_ids_padding_ignored():
    offsets = {(5, 6): torch.tensor([1.0, -1.0]), (7,): torch.tensor([0.5, 2.0])}
    model = bench_stacking.PlusOffset(_Zeros(), offsets)
    ids = torch.tensor([[7, 0], [5, 6]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert model(ids, mask).logits.tolist() == [[0.5, 2.0], [1.0, -1.0]]


def test_a_train_text_met_again_keeps_its_out_of_fold_offset():
    frame = synthetic_frame("binary", n=40)
    texts, y = list(frame["Comments"]), frame[["HateSpeech"]].to_numpy(float)
    full_lr = baseline.fit_tfidf_lr("binary", texts, y, seed=0)
    keys = lambda batch: [(hash(t),) for t in batch]
    oof = np.full((40, 1), 7.0, dtype=np.float32)
    table = bench_stacking.offset_table(keys, "binary", full_lr, texts, oof, [texts[0], "অন্য একটি মন্তব্য"])
    assert table[(hash(texts[0]),)].item() == 7.0 and table[(hash("অন্য একটি মন্তব্য"),)].item() != 7.0


def _row(run, name, val, test):
    return {"dataset": "cyberbully", "run": run, "seed": 0, "row": name, "val_macro_f1": val, "test_macro_f1": test}


def test_summary_pairs_each_row_with_tfidf_char_within_a_run():
    rows = [_row("a", "tfidf_char", 0.80, 0.70), _row("a", "teacher_residual", 0.81, 0.72),
            _row("b", "tfidf_char", 0.90, 0.60), _row("b", "teacher_residual", 0.92, 0.63)]
    got = bench_stacking.summarize(rows)["cyberbully"]
    assert got["teacher_residual"]["val_change"]["values"] == pytest.approx([0.01, 0.02])
    assert got["teacher_residual"]["test_change"]["values"] == pytest.approx([0.02, 0.03])
    assert "val_change" not in got["tfidf_char"] and "tfidf_subword" not in got  # a row not run is left out


def test_the_four_rows_on_a_tiny_finished_run(tmp_path, monkeypatch):
    csv = tmp_path / "data.csv"
    synthetic_frame("binary", n=200).to_csv(csv, index=False)
    params = tiny_params(csv)
    params["teacher"]["epochs"] = 1
    run = tmp_path / "work" / "toy" / "seed42"
    (run / "data" / "prepared").mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    prepare_splits(params["data"], 0, run / "data" / "prepared")
    corpus = run / "data" / "pretrain_corpus.txt"
    corpus.write_text("".join(t + "\n" for t in synthetic_frame("binary", n=200, seed=1)["Comments"]), encoding="utf-8")
    bench_teacher.pretrain_value(params, corpus, run / "models" / "pretrained", seed=42)
    (run / "metrics").mkdir()
    (run / "metrics" / "train_teacher.json").write_text(json.dumps({"val_macro_f1_tuned": 0.84}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"result": {"rows": {"teacher": {"macro_f1": 0.82}}}}))
    out = tmp_path / "stacking"
    monkeypatch.setattr("sys.argv", ["bench_stacking", "--runs", str(run), "--out", str(out)])
    bench_stacking.main()
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [r["row"] for r in result["rows"]] == list(bench_stacking.ROWS)
    teacher = result["rows"][2]
    assert (teacher["val_macro_f1"], teacher["test_macro_f1"]) == (0.84, 0.82)
    assert all(0 <= r["val_macro_f1"] <= 1 and 0 <= r["test_macro_f1"] <= 1 for r in result["rows"])
    assert result["rows"][1]["features"] > 0 and result["rows"][3]["best_epoch"] == 1
    assert "| teacher_residual | 1 |" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_a_run_that_is_not_finished_stops_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_stacking", "--runs", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        bench_stacking.main()
    assert "is not a finished make-bench run (missing params.yaml" in str(stop.value)
