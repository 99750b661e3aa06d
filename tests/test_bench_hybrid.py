"""bench/bench_hybrid.py: the n-gram head starts as w times the baseline's regression (same logits, every task
type), it reaches each text's logits by token ids, the student under it is the run's own student at the start,
and the eight rows end to end on a tiny finished run."""
import json

import numpy as np
import pytest
import torch
import yaml

from banglacompress.baseline import fit_tfidf_lr, predict_proba
from banglacompress.data import prepare_splits
from banglacompress.distill import train_student
from banglacompress.scoring import logits_of
from banglacompress.train import train_teacher
from bench import bench_hybrid, run_bench
from conftest import synthetic_frame, tiny_params


def _frame_xy(task):
    frame = synthetic_frame(task, n=120)
    labels = [c for c in frame.columns if c != frame.columns[0]]
    y = frame[labels].to_numpy().astype(float)
    if task == "multiclass":
        y = frame["Label"].to_numpy()
    return list(frame[frame.columns[0]]), y


@pytest.mark.parametrize("task", ["binary", "multilabel", "multiclass"])
def test_the_head_at_its_start_gives_the_regressions_logits(task):
    texts, y = _frame_xy(task)
    vectorizer, model = fit_tfidf_lr(task, texts, y, seed=0)
    weight, bias = bench_hybrid.regression_weights(task, model)
    mine = vectorizer.transform(texts) @ weight + bias
    theirs = logits_of(task, predict_proba(task, vectorizer, model, texts))
    if task == "multiclass":  # log-probabilities: equal up to a per-row shift
        mine, theirs = mine - mine.mean(1, keepdims=True), theirs - theirs.mean(1, keepdims=True)
    assert mine.shape == theirs.shape
    np.testing.assert_allclose(mine, theirs, atol=1e-4)


class _Zeros(torch.nn.Module):
    def forward(self, input_ids, attention_mask, **_):
        return type("Out", (), {"logits": torch.zeros(len(input_ids), 2)})()


def test_each_text_gets_its_own_feature_row_by_token_ids_padding_ignored():
    from scipy.sparse import csr_matrix
    features = csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 0.5, 0.0]]))
    weight = np.array([[1.0, 10.0], [100.0, 0.0], [0.0, -1.0]])
    head = bench_hybrid.NgramHead({(5, 6): 0, (7,): 1}, features, weight, np.array([0.25, 0.0]))
    model = _Zeros()
    hook = bench_hybrid.attach(model, head)
    ids, mask = torch.tensor([[7, 0], [5, 6]]), torch.tensor([[1, 0], [1, 1]])
    assert model(input_ids=ids, attention_mask=mask).logits.tolist() == [[50.25, 0.0], [1.25, 8.0]]
    assert model.ngram_head is head and [id(p) for p in model.parameters()] == [id(p) for p in head.parameters()]
    hook.remove()  # the model alone again: what is exported
    assert model(input_ids=ids, attention_mask=mask).logits.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_the_eight_rows_on_a_tiny_finished_run(tmp_path, monkeypatch):
    csv = tmp_path / "data.csv"
    synthetic_frame("binary", n=200).to_csv(csv, index=False)
    params = tiny_params(csv)
    params["teacher"]["epochs"] = 1
    params["distill"].update(epochs=1, transfer="corpus", tfidf_weight=0.7)
    run = tmp_path / "work" / "toy" / "seed42"
    prepared = run / "data" / "prepared"
    prepared.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    prepare_splits(params["data"], 0, prepared)
    corpus = run / "data" / "pretrain_corpus.txt"
    corpus.write_text("".join(t + "\n" for t in synthetic_frame("binary", n=100, seed=1)["Comments"]), encoding="utf-8")
    max_length = params["data"]["max_length"]
    train_teacher(params["teacher"], prepared=prepared, out_dir=run / "models" / "teacher", seed=42, max_length=max_length)
    student = train_student(params["distill"], params["student"], prepared=prepared, teacher_dir=run / "models" / "teacher",
                            out_dir=run / "models" / "student", seed=42, max_length=max_length, corpus=corpus)
    (run / "metrics").mkdir()
    (run / "metrics" / "quantize.json").write_text(json.dumps({"val_macro_f1": 0.5}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"result": {"rows": {"final": {"macro_f1": 0.4}}}}))
    out = tmp_path / "hybrid"
    heads, pruned = [], []  # each n-gram student's head, before and after distillation; and after pruning

    def watched_fit(model, *args, **kwargs):
        before = model.ngram_head.table.weight.detach().clone()
        result = bench_hybrid_fit(model, *args, **kwargs)
        heads.append((before, model.ngram_head.table.weight.detach().clone()))
        return result

    def watched_prune(cfg, model, *args, **kwargs):
        blocks = [b.intermediate.dense.out_features for b in model.bert.encoder.layer]
        result = bench_hybrid_prune(cfg, model, *args, **kwargs)
        pruned.append((blocks, [b.intermediate.dense.out_features for b in model.bert.encoder.layer],
                       model.ngram_head.table.weight.detach().clone()))
        return result
    bench_hybrid_fit, bench_hybrid_prune = bench_hybrid.fit, bench_hybrid.prune_model
    monkeypatch.setattr(bench_hybrid, "fit", watched_fit)
    monkeypatch.setattr(bench_hybrid, "prune_model", watched_prune)
    monkeypatch.setattr("sys.argv", ["bench_hybrid", "--runs", str(run), "--out", str(out)])
    bench_hybrid.main()
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    rows = {r["row"]: r for r in result["rows"]}
    assert sorted(rows) == sorted(bench_hybrid.ROWS)
    assert rows["student"]["val_macro_f1"] == pytest.approx(student["val_macro_f1_tuned"])  # the run's own student
    assert (rows["final"]["val_macro_f1"], rows["final"]["test_macro_f1"]) == (0.5, 0.4)
    hybrid = rows["student_ngram"]
    assert hybrid["ngram_features"] > 0 and hybrid["student_params"] == student["params"]
    assert hybrid["best_epoch"] == 1 and all(0 <= r["val_macro_f1"] <= 1 for r in result["rows"])
    (trained_from, trained), (frozen_from, frozen) = heads  # in HEADS order: trained, then held
    assert torch.equal(trained_from, frozen_from) and not torch.equal(trained, trained_from)
    assert torch.equal(frozen, frozen_from)
    (width, trained_width, trained_pruned), (_, _, frozen_pruned) = pruned
    assert all(after < before for before, after in zip(width, trained_width))  # the run's prune stage ran
    assert not torch.equal(trained_pruned, trained) and torch.equal(frozen_pruned, frozen)  # healed with it, or held
    for name in bench_hybrid.FINALS:
        assert 0 <= rows[name]["test_macro_f1"] <= 1 and rows[name]["transformer_onnx_bytes"] > 0
    assert result["summary_vs_final"]["toy"]["final_ngram"]["val_change"]["values"] == pytest.approx(
        [rows["final_ngram"]["val_macro_f1"] - 0.5])
    assert result["summary_vs_student"]["toy"]["student_ngram"]["val_change"]["values"] == pytest.approx(
        [hybrid["val_macro_f1"] - rows["student"]["val_macro_f1"]])
    assert "| student_ngram | 1 |" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_a_run_that_is_not_finished_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["bench_hybrid", "--runs", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        bench_hybrid.main()
    assert "is not a finished make-bench run (missing params.yaml" in str(stop.value)
