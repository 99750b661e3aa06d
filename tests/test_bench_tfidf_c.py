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


def test_features_are_chosen_on_val_with_c_and_the_baseline_is_char_at_c4(tmp_path, monkeypatch):
    synthetic_frame("binary", n=300, seed=3).to_csv(tmp_path / "tiny.csv", index=False)
    monkeypatch.setattr(tfidf_c, "DATASETS", {"tiny": {"data": {"path": tmp_path / "tiny.csv", "text_column": "Comments",
                                                                 "label_columns": ["HateSpeech"]}}})
    fitted, real = [], tfidf_c.fit_tfidf_lr
    monkeypatch.setattr(tfidf_c, "fit_tfidf_lr", lambda *a, vectorizer, **kw: fitted.append(type(vectorizer).__name__)
                        or real(*a, vectorizer=vectorizer, **kw))
    run = tfidf_c.one_run("tiny", 42, (0.01, 4.0), ("char", "char+word"))
    assert fitted == ["TfidfVectorizer"] * 2 + ["FeatureUnion"] * 2
    assert [(r.get("features", "char"), r["C"]) for r in run["grid"]] == [
        ("char", 0.01), ("char", 4.0), ("char+word", 0.01), ("char+word", 4.0)]
    word = next(r for r in run["grid"] if r.get("features") == "char+word" and r["C"] == 4.0)
    char = next(r for r in run["grid"] if "features" not in r and r["C"] == 4.0)
    assert run["val_baseline"] == char["val_macro_f1"] and 0 < word["val_macro_f1"] <= 1
    best = max(run["grid"], key=lambda r: r["val_macro_f1"])
    assert run["val_chosen"] == best["val_macro_f1"] and run["chosen_features"] in ("char", "char+word")
    text = tfidf_c.markdown({"command": "c", "machine": {"date": "d", "cpu": "x"}, "grid": [0.01, 4.0],
                             "features": ["char", "char+word"], "runs": [run]})
    assert "| val char+word C=4 |" in text and "Val change of char+word against char at C=4" in text


def test_nb_lr_scales_each_labels_features_by_its_log_count_ratio():
    """NB-LR (char-nb): feature j of a label is multiplied by log((p_j/|p|1) / (q_j/|q|1)), p and q the
    smoothed feature sums over the label's positive and negative rows; a multi-label fit has one ratio per label."""
    import numpy as np
    from scipy.sparse import csr_matrix
    x = csr_matrix(np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]]))
    y = np.array([1, 1, 0, 0])
    model = tfidf_c.NBLogisticRegression(C=4.0, random_state=0).fit(x, y)
    p, q = np.array([5.0, 2.0, 3.0]), np.array([2.0, 4.0, 3.0])  # column sums + 1
    assert np.allclose(model.ratio_, np.log(p / p.sum()) - np.log(q / q.sum()))
    assert model.predict_proba(x).shape == (4, 2)
    texts = ["ক খ", "গ ঘ", "ক গ", "খ ঘ"] * 10
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 10)
    vectorizer, ovr = tfidf_c.fit_nb_lr("multilabel", texts, targets, seed=0, C=4.0)
    ratios = [est.ratio_ for est in ovr.estimators_]
    assert len(ratios) == 2 and not np.allclose(ratios[0], ratios[1])
    assert tfidf_c.predict_proba("multilabel", vectorizer, ovr, texts).shape == (40, 2)
