"""From logits to decisions and scores: probabilities, thresholds tuned on validation, metrics."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from .runtime import decide, probabilities  # noqa: F401  (the deploy path's own; re-exported for the pipeline)


def logits_of(task: str, probs: np.ndarray) -> np.ndarray:
    """probabilities' inverse: logits (log-probabilities for multi-class, equal to logits up to a per-row shift
    that softmax ignores), with probabilities clipped to [1e-6, 1 - 1e-6] so that 0 and 1 stay finite."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) if task == "multiclass" else np.log(p / (1 - p))


def macro_f1(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Binary: mean F1 of both classes. Multi-label: mean F1 over labels. Multi-class: over classes."""
    if task == "binary":
        return float(f1_score(y_true[:, 0], y_pred[:, 0], average="macro", zero_division=0))
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def tune_thresholds(task: str, y_true: np.ndarray, probs: np.ndarray, grid=None) -> list[float] | None:
    """Per-label threshold maximising validation F1 (binary: macro-F1). Never call this on test."""
    if task == "multiclass":
        return None
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2) if grid is None else grid
    best = []
    for j in range(probs.shape[1]):
        def score(t):
            pred = (probs[:, j] >= t).astype(int)
            avg = "macro" if task == "binary" else "binary"
            return f1_score(y_true[:, j], pred, average=avg, zero_division=0)
        scores = [score(t) for t in grid]
        # Ties: the threshold closest to 0.5, so a flat validation curve does not drift to an extreme.
        top = max(scores)
        candidates = [t for t, s in zip(grid, scores) if s >= top - 1e-12]
        best.append(float(min(candidates, key=lambda t: abs(t - 0.5))))
    return best


def classification_metrics(task: str, label_names: list[str], y_true: np.ndarray, probs: np.ndarray,
                           thresholds=None) -> dict:
    pred = decide(task, probs, thresholds)
    out = {"macro_f1": macro_f1(task, y_true, pred)}
    if task == "binary":
        yt, yp = y_true[:, 0].astype(int), pred[:, 0]
        p, r, f, _ = precision_recall_fscore_support(yt, yp, labels=[0, 1], zero_division=0)
        names = [f"not_{label_names[0]}", label_names[0]]
        out["accuracy"] = float(accuracy_score(yt, yp))
        out["roc_auc"] = _auc(yt, probs[:, 0])
    elif task == "multilabel":
        p, r, f, _ = precision_recall_fscore_support(y_true, pred, average=None, zero_division=0)
        names = label_names
        out["micro_f1"] = float(f1_score(y_true, pred, average="micro", zero_division=0))
        out["subset_accuracy"] = float(accuracy_score(y_true, pred))
        out["hamming_loss"] = float((y_true != pred).mean())
        aucs = [_auc(y_true[:, j], probs[:, j]) for j in range(y_true.shape[1])]
        valid = [a for a in aucs if a is not None]
        out["roc_auc"] = float(np.mean(valid)) if valid else None
        out["accuracy"] = out["subset_accuracy"]
    else:
        p, r, f, _ = precision_recall_fscore_support(y_true, pred, labels=list(range(len(label_names))),
                                                     zero_division=0)
        names = label_names
        out["accuracy"] = float(accuracy_score(y_true, pred))
        try:
            out["roc_auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr"))
        except ValueError:
            out["roc_auc"] = None
    out["per_label"] = {n: {"precision": float(pi), "recall": float(ri), "f1": float(fi)}
                        for n, pi, ri, fi in zip(names, p, r, f)}
    return out


def _auc(y, score):
    try:
        return float(roc_auc_score(y, score))
    except ValueError:  # one class only in this split
        return None


def agreement(task: str, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Share of examples on which two models make exactly the same decision (all labels)."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    same = a == b if a.ndim == 1 else (a == b).all(axis=1)
    return float(same.mean())
