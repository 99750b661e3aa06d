"""bench/tfidf_c.py: C is chosen on val, test is scored only for the baseline's C and the chosen one, and the
chosen C is the best on val (a tiny synthetic dataset in the place of the real ones)."""
import json

from bench import tfidf_c
from conftest import synthetic_frame


def test_c_is_chosen_on_val_and_test_is_scored_for_two_fits_only(tmp_path, monkeypatch):
    synthetic_frame("binary", n=300, seed=3).to_csv(tmp_path / "tiny.csv", index=False)
    monkeypatch.setattr(tfidf_c, "DATASETS", {"tiny": {"data": {"path": tmp_path / "tiny.csv", "text_column": "Comments",
                                                                 "label_columns": ["HateSpeech"]}}})
    scored = []
    real = tfidf_c.predict_proba
    monkeypatch.setattr(tfidf_c, "predict_proba",
                        lambda task, v, m, texts: scored.append((id(m), len(texts))) or real(task, v, m, texts))
    run = tfidf_c.one_run("tiny", 42, (0.01, 4.0, 100.0))
    val_rows, test_rows = scored[:3], scored[3:]
    assert len({n for _, n in val_rows}) == 1 and len(test_rows) == 2  # three fits scored on val, two on test
    best = max(run["grid"], key=lambda r: r["val_macro_f1"])["val_macro_f1"]
    assert run["val_chosen"] == best and run["chosen_C"] in (0.01, 4.0, 100.0)
    assert run["val_baseline"] == next(r["val_macro_f1"] for r in run["grid"] if r["C"] == 4.0)
    assert "_fit" not in json.dumps(run)  # the record holds numbers only
