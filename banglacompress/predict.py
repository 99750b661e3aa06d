"""Label Bangla comments with a model directory from this pipeline (models/final by default).

    python -m banglacompress.predict "মন্তব্য এক" "মন্তব্য দুই"
    cat comments.txt | python -m banglacompress.predict --format jsonl      # one text per line
    python -m banglacompress.predict --csv comments.csv --column Comments -o predictions.csv

Every format load_artifact reads works (FP32, INT8, FP16, NF4, ONNX). Texts are cleaned exactly as
in training (NFC, whitespace), batched, and decided with the thresholds tuned on validation.
Output: one row per input text, in input order: the text, one 0/1 column per label (multi-class:
the class name) and a probability per label / class.

For an ONNX model directory (the default models/final), `python -m banglacompress.runtime` takes the
same flags and writes the same rows without importing torch (runtime.py): the command to deploy."""
from __future__ import annotations

import sys

import torch

from .artifact import load_artifact
from .inference import TextClassifier
from .runtime import label_rows, run_cli


def load_classifier(model_dir, threads: int | None = None) -> TextClassifier:
    if threads:
        torch.set_num_threads(threads)
    return TextClassifier(*load_artifact(model_dir, threads=threads))


def predict(model_dir, texts: list[str], batch_size: int = 64, threads: int | None = None) -> list[dict]:
    """texts -> one dict per text: the text, decisions per label, probabilities (input order)."""
    return label_rows(load_classifier(model_dir, threads), texts, batch_size)


def main(argv=None) -> int:
    return run_cli(argv, "python -m banglacompress.predict", load_classifier, " (any format: FP32, INT8, FP16, NF4, "
                                                                             "ONNX)")


if __name__ == "__main__":
    sys.exit(main())
