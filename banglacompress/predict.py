"""Label Bangla comments with a model directory from this pipeline (models/final by default).

    python -m banglacompress.predict "মন্তব্য এক" "মন্তব্য দুই"
    cat comments.txt | python -m banglacompress.predict --format jsonl      # one text per line
    python -m banglacompress.predict --csv comments.csv --column Comments -o predictions.csv

Every format load_artifact reads works (FP32, INT8, FP16, NF4, ONNX). Texts are cleaned exactly as
in training (NFC, whitespace), batched, and decided with the thresholds tuned on validation.
Output: one row per input text, in input order: the text, one 0/1 column per label (multi-class:
the class name) and a probability per label / class.

An ONNX model (quantize.method onnx_int8, the default, or onnx_fp32) is run by runtime.OnnxClassifier
without importing torch, transformers, scikit-learn or pandas: deploying it needs requirements-runtime.txt
only, and the command starts in a fraction of the time (bench/cold_start.md). Every other format is loaded
by load_artifact, which needs the training stack; that import happens in `torch_classifier` only, the one
exception to imports at the top of a module (LAZY_IMPORTS in tests/test_pipeline.py says why)."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .config import UserError, require
from .runtime import ONNX_METHODS, Classifier, OnnxClassifier, quant_method

FORMATS = ("csv", "jsonl")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m banglacompress.predict", description=__doc__.split("\n")[0])
    parser.add_argument("texts", nargs="*", help="texts to label (none and no --csv: read one per line from stdin)")
    parser.add_argument("--model", default="models/final", help="model directory (default: models/final)")
    parser.add_argument("--csv", type=Path, help="read texts from this CSV file (UTF-8)")
    parser.add_argument("--column", help="text column of --csv (default: the only column, or 'text')")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="output format (default: csv)")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per physical core)")
    return parser.parse_args(argv)


def read_csv_column(path: Path, column: str | None) -> list[str]:
    """One column of a UTF-8 CSV (a BOM is fine), every cell as a string, empty cells as "" (the csv module,
    not pandas: the ONNX path imports neither pandas nor torch)."""
    require(path.exists(), f"{path} not found: give an existing CSV file with --csv")
    try:
        with open(path, encoding="utf-8-sig", errors="strict", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            require(header, f"{path} is empty: it needs a header row and at least one row")
            if column is None:
                require(len(header) == 1 or "text" in header,
                        f"{path} has several columns {header}: choose one with --column")
                column = "text" if "text" in header else header[0]
            require(column in header, f"{path} has no column {column!r}; its columns are {header}")
            at = header.index(column)
            return [row[at] if at < len(row) else "" for row in reader]
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    except csv.Error as err:
        raise UserError(f"{path} is not a well-formed CSV: {err}") from None


def read_texts(args, stdin=None) -> list[str]:
    if args.csv is not None:
        require(not args.texts, "give texts either as arguments or with --csv, not both")
        return read_csv_column(args.csv, args.column)
    if args.texts:
        return list(args.texts)
    stdin = sys.stdin if stdin is None else stdin
    require(not stdin.isatty(), "no input: give texts as arguments, with --csv FILE --column NAME, or on stdin")
    return [line.rstrip("\r\n") for line in stdin]


def torch_classifier(model_dir, threads: int | None = None) -> Classifier:
    """A non-ONNX model directory: load_artifact and TextClassifier, imported here so that an ONNX model is
    labelled without the training stack; without it, one line that says what to install."""
    try:
        import torch
        from .artifact import load_artifact
        from .inference import TextClassifier
    except ImportError as err:
        raise UserError(f"{model_dir} holds a {quant_method(model_dir)!r} model, which needs the training stack to "
                        f"load ({err}): `pip install -r requirements.txt`, or ship an ONNX model (quantize.method "
                        f"{' or '.join(ONNX_METHODS)}), which needs only requirements-runtime.txt") from None
    if threads:
        torch.set_num_threads(threads)
    return TextClassifier(*load_artifact(model_dir, threads=threads))


def load_classifier(model_dir, threads: int | None = None) -> Classifier:
    """Any model directory from this pipeline -> a Classifier: ONNX ones without torch."""
    if quant_method(model_dir) in ONNX_METHODS:
        return OnnxClassifier(model_dir, threads)
    return torch_classifier(model_dir, threads)


def label_rows(classifier: Classifier, texts: list[str], batch_size: int = 64) -> list[dict]:
    """texts -> one dict per text: the text, decisions per label, probabilities (input order)."""
    if not texts:
        return []
    # Empty and non-Bangla texts still get a prediction ([CLS] [SEP] or [UNK] tokens): the model card
    # says such predictions are not meaningful.
    probs, decisions = classifier(texts, batch_size, show_progress=True)
    task, names = classifier.info["task"], classifier.info["label_names"]
    rows = []
    for text, p, d in zip(texts, probs, decisions):
        row = {"text": text}
        if task == "multiclass":
            row["label"] = names[int(d)]
            row.update({f"prob_{n}": round(float(v), 6) for n, v in zip(names, p)})
        else:
            row.update({n: int(v) for n, v in zip(names, np.atleast_1d(d))})
            row.update({f"prob_{n}": round(float(v), 6) for n, v in zip(names, np.atleast_1d(p))})
        rows.append(row)
    return rows


def predict(model_dir, texts: list[str], batch_size: int = 64, threads: int | None = None) -> list[dict]:
    """texts -> one dict per text: the text, decisions per label, probabilities (input order)."""
    require(batch_size >= 1, f"--batch-size must be at least 1, not {batch_size}")
    return label_rows(load_classifier(model_dir, threads), texts, batch_size)


def write_rows(rows: list[dict], fmt: str, out) -> None:
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if not rows:
        return
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def main(argv=None) -> int:
    """CLI entry: a UserError is one line on stderr and exit status 2, never a traceback."""
    try:
        args = parse_args(argv)
        texts = read_texts(args)
        require(Path(args.model).is_dir(), f"model directory {args.model} not found: run `dvc repro` (it writes "
                                           "models/final) or pass --model DIR")
        rows = predict(args.model, texts, args.batch_size, args.threads)
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                write_rows(rows, args.format, f)
        else:
            if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
                sys.stdout.reconfigure(encoding="utf-8")  # Bangla text under a C / Latin-1 locale
            write_rows(rows, args.format, sys.stdout)
            sys.stdout.flush()
    except UserError as err:
        print(f"error: predict: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader went away; not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: predict: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
