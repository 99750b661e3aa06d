"""bench/per_label.py: per-label F1 and the paired change against TF-IDF on hand-made rows (every number known)."""
import numpy as np
import pytest

from bench import per_label


def _row(seed, tfidf, teacher, final):
    return {"seed": seed, "task": "multilabel", "labels": ["bully", "threat"], "val_rows": 10, "positives": [6, 2],
            "f1": {"tfidf": tfidf, "teacher": teacher, "final": final, "average": [t + 0.01 for t in tfidf]}}


def test_label_f1_is_per_label_for_each_task():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    assert per_label.label_f1("multilabel", y, np.array([[1, 0], [0, 1], [0, 1], [0, 0]])) == pytest.approx([2 / 3, 1])
    assert per_label.label_f1("binary", y[:, :1], np.array([[1], [1], [1], [0]])) == pytest.approx([2 / 3, 0.8])
    assert per_label.label_f1("multiclass", np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == \
        pytest.approx([1, 2 / 3, 2 / 3])


def test_changes_are_paired_within_each_seed_and_the_table_says_which_labels_lose():
    # threat: the teacher is 0.05, 0.04, 0.06 below TF-IDF (paired -0.05 ± 0.01) though the seeds' own levels
    # differ by 0.2; bully: one seed above, so it is not "below in every seed"
    rows = [_row(42, [0.80, 0.60], [0.82, 0.55], [0.79, 0.50]), _row(43, [0.85, 0.70], [0.83, 0.66], [0.80, 0.65]),
            _row(44, [0.90, 0.80], [0.88, 0.74], [0.85, 0.70])]
    summary = per_label.summarize(rows)
    threat = summary["threat"]["teacher_minus_tfidf"]
    assert threat["mean"] == pytest.approx(-0.05) and threat["std"] == pytest.approx(0.01)
    assert summary["bully"]["teacher_minus_tfidf"]["values"] == pytest.approx([0.02, -0.02, -0.02])
    text = per_label.render({"header": {"command": "c", "machine": {"cpu": "x"}, "work": "w"}, "rows": rows,
                             "summary": summary})
    assert "| threat | 2 | 0.7000 | 0.6500 | -0.0500 ± 0.0100 (outside noise) | 0.6167 |" in text
    # macro-F1 is the mean over labels within each seed: teacher (0.82+0.55)/2 - (0.80+0.60)/2 = -0.015 on seed 42
    assert summary["macro-F1"]["teacher_minus_tfidf"]["values"] == pytest.approx([-0.015, -0.03, -0.04])
    assert summary["macro-F1"]["average_minus_tfidf"]["mean"] == pytest.approx(0.01)
    assert "| **macro-F1** | – | 0.7750 |" in text
    assert "below TF-IDF on 1 of 2 labels in every seed: threat." in text
