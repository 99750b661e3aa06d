"""What a user would pick instead: TF-IDF over character 2-5-grams + logistic regression, with
thresholds tuned on validation like every other model here."""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from .scoring import classification_metrics, tune_thresholds


def char_tfidf() -> TfidfVectorizer:
    """The baseline's features: TF-IDF over character 2-5-grams inside word boundaries."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)


# The baseline's inverse regularisation strength; bench/tfidf_c.md measures others, C chosen on val.
BASELINE_C = 4.0


def fit_tfidf_lr(task: str, train_texts, y_train, seed: int = 42, vectorizer: TfidfVectorizer | None = None,
                 C: float = BASELINE_C):
    """Logistic regression (one per label for multi-label) on `vectorizer`'s features (unfitted; default
    char_tfidf, the baseline). Returns the fitted (vectorizer, model)."""
    vectorizer = vectorizer if vectorizer is not None else char_tfidf()
    x = vectorizer.fit_transform(train_texts)
    lr = LogisticRegression(max_iter=2000, C=C, class_weight="balanced", random_state=seed)
    if task == "multiclass":
        model = lr.fit(x, y_train)
    elif task == "binary":
        model = lr.fit(x, y_train[:, 0].astype(int))
    else:
        model = OneVsRestClassifier(lr).fit(x, y_train.astype(int))
    return vectorizer, model


def predict_proba(task: str, vectorizer, model, texts) -> np.ndarray:
    probs = model.predict_proba(vectorizer.transform(texts))
    return probs[:, 1:2] if task == "binary" else probs


def fit_and_score(task, label_names, splits: dict, seed: int = 42):
    """splits: {"train"|"val"|"test": (texts, targets)}. Thresholds come from val only.
    Returns (test metrics, vectorizer, model): callers that time or size the model reuse the fit."""
    vectorizer, model = fit_tfidf_lr(task, *splits["train"], seed=seed)
    thresholds = tune_thresholds(task, splits["val"][1], predict_proba(task, vectorizer, model, splits["val"][0]))
    test_probs = predict_proba(task, vectorizer, model, splits["test"][0])
    metrics = classification_metrics(task, label_names, splits["test"][1], test_probs, thresholds)
    return {**metrics, "thresholds": thresholds, "features": len(vectorizer.vocabulary_)}, vectorizer, model


def evaluate_baseline(task, label_names, splits: dict, seed: int = 42) -> dict:
    return fit_and_score(task, label_names, splits, seed)[0]
