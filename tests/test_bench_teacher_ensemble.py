"""bench/bench_teacher_ensemble.py: the second teacher is trained with the run's teacher params from the run's
pretrained encoder at another seed, and the two teachers' mean logits are scored (hand-made logits: neither
teacher alone separates the val rows, their mean does)."""
import numpy as np

from bench import bench_teacher_ensemble as ens

Y_VAL = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float32)
META = {"task": "binary", "label_names": ["HateSpeech"], "target_columns": ["HateSpeech"], "num_labels": 1}


def test_the_two_teachers_mean_logits_are_scored_and_the_second_is_another_seed(tmp_path, monkeypatch):
    params = {"seed": 42, "data": {"max_length": 32}, "distill": {"tfidf_weight": 0.7},
              "teacher": {"lr": 0.0002, "model": "scratch"}}
    monkeypatch.setattr(ens, "load_params", lambda path: params)
    monkeypatch.setattr(ens, "load_split", lambda prepared, name: (["a", "b", "c", "d"], Y_VAL, META))
    trained = []
    monkeypatch.setattr(ens, "train_teacher", lambda cfg, **kw: trained.append((cfg, kw)))
    # each teacher ranks one negative row above one positive row; the mean ranks both positives first
    logits = {"teacher": np.array([[3.0], [0.0], [1.0], [-2.0]]), "run_teacher1042": np.array([[0.0], [3.0], [-2.0], [1.0]])}
    monkeypatch.setattr(ens, "val_logits", lambda model_dir, texts, max_length: logits[model_dir.name])
    monkeypatch.setattr(ens, "blend_tfidf", lambda task, weight, sets, **kw: [lg for lg, _ in sets])  # targets = logits
    row = ens.one_run(tmp_path / "run", 1000, tmp_path)
    ((cfg, kw),) = trained
    assert cfg["model"] == str(tmp_path / "run" / "models" / "pretrained") and cfg["lr"] == 0.0002
    assert kw["seed"] == 1042 and row["second_seed"] == 1042
    f1 = row["val_macro_f1"]
    assert f1["teacher"] < 1 and f1["second"] < 1 and f1["mean"] == 1.0
    assert row["targets_val_macro_f1"] == {"teacher": f1["teacher"], "mean": 1.0}
    text = ens.markdown({"command": "c", "machine": {"cpu": "x"}, "runs": [row]})
    assert "| 1.0000 |" in text and "Two teachers against one, targets:" in text
