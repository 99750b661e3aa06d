import numpy as np

from banglacompress.baseline import evaluate_baseline
from conftest import synthetic_frame


def test_tfidf_baseline_learns_marker_words_for_every_task():
    for task, text, labels in [("binary", "Comments", ["HateSpeech"]),
                               ("multilabel", "comment", ["hate", "sexual", "religious"]),
                               ("multiclass", "Data", ["Label"])]:
        frame = synthetic_frame(task, n=600, seed=3)
        y = frame["Label"].to_numpy() if task == "multiclass" else frame[labels].to_numpy(np.float32)
        texts = frame[text].tolist()
        splits = {"train": (texts[:400], y[:400]), "val": (texts[400:500], y[400:500]),
                  "test": (texts[500:], y[500:])}
        names = ["0", "1", "2"] if task == "multiclass" else labels
        result = evaluate_baseline(task, names, splits)
        assert result["macro_f1"] > 0.9, (task, result["macro_f1"])
