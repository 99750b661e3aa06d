"""Text in, label out without torch: what a CPU server or a phone-side service needs to run models/final.

    python -m banglacompress.runtime "মন্তব্য এক" "মন্তব্য দুই"          # same flags and output as predict
    pip install -r requirements-runtime.txt                               # onnxruntime, tokenizers, numpy, pyyaml

An ONNX model directory from this pipeline (quantize.method onnx_int8, the default, or onnx_fp32) holds
the graph, the tokenizer and inference.json (thresholds tuned on val, label names). This module runs it
with ONNX Runtime, the Rust tokenizer and numpy only: importing it pulls in none of torch, transformers,
scikit-learn, pandas or onnx (tests/test_runtime.py runs it with those blocked). That is the deploy path:
a few hundred MB less to install than the training stack, and a cold start that is not spent importing
torch (bench/cold_start.md measures both commands).

`Classifier` is the one text-in, label-out loop: clean as in training, tokenize, batch by length, run,
decide with the tuned thresholds. `OnnxClassifier` runs it on an ONNX Runtime session; inference.py's
TextClassifier runs it on any format load_artifact returns, and is what predict uses and evaluate times.
The command line (flags, input, output, one-line errors) is here too, so predict shares it."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import unicodedata
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from .config import UserError, require
from .integrity import verify_checksums

INFERENCE_FILE = "inference.json"          # thresholds, label names, task, max_length
QUANT_FILE = "quantization.json"           # the quantize method's record (artifact.py)
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
ONNX_METHODS = ("onnx_fp32", "onnx_int8")
FORMATS = ("csv", "jsonl")


# --------------------------------------------------------------------------- text, decisions, sessions
def progress(iterable, **kwargs):
    """tqdm that is silent under CI (CI=true) and when stderr is not a terminal."""
    disable = True if os.environ.get("CI") else None
    return tqdm(iterable, disable=disable, leave=False, file=sys.stderr, dynamic_ncols=True, **kwargs)


def clean_text(text: str) -> str:
    """NFC-normalise (Bangla has several code-point spellings of the same glyphs) and collapse whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def probabilities(task: str, logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if task == "multiclass":
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


def decide(task: str, probs: np.ndarray, thresholds=None) -> np.ndarray:
    """Multi-class: argmax. Binary / multi-label: per-label thresholds (0.5 when not tuned)."""
    if task == "multiclass":
        return probs.argmax(axis=1)
    t = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=float)
    return (probs >= t).astype(int)


def ort_session(onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
    """The session options every ONNX model here runs with (quantize's check, evaluate's timing, this module)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between calls: spinning threads would steal the CPU from whatever runs next
    # (other models timed interleaved with this one, other processes on a shared machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- the classifier loop
class Classifier:
    """classifier(texts) -> (probabilities, decisions), in input order. `backend` is a Rust tokenizer
    (tokenizers.Tokenizer; this object keeps its own copy's truncation / padding settings); subclasses
    give `forward(input_ids, attention_mask) -> logits` on int64 numpy arrays."""

    def __init__(self, backend: Tokenizer, info: dict, pad_id: int | None, max_length: int | None = None):
        self.info = info
        self.max_length = max_length or info.get("max_length", 128)
        self.backend = Tokenizer.from_str(backend.to_str())
        self.backend.enable_truncation(self.max_length)
        self.backend.no_padding()
        self.pad_id = pad_id if pad_id is not None else 0

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, cleaned as in training (non-strings, e.g. NaN cells, as empty text);
        the same ids as the transformers tokenizer(texts, truncation=True, max_length=max_length)."""
        cleaned = [clean_text(t) if isinstance(t, str) else "" for t in texts]
        if len(cleaned) < 8:  # encode_batch hands work to a thread pool: 3x slower for one text (measured)
            return [self.backend.encode(t).ids for t in cleaned]
        return [e.ids for e in self.backend.encode_batch(cleaned)]

    def pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (input_ids, attention_mask) int64 arrays, as long as the longest row."""
        if len(ids) == 1:  # the batch-1 path: no padding to do
            arr = np.asarray(ids, dtype=np.int64)
            return arr, np.ones_like(arr)
        longest = max(len(row) for row in ids)
        arr = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for r, row in enumerate(ids):
            arr[r, : len(row)] = row
            mask[r, : len(row)] = 1
        return arr, mask

    def logits(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        ids = self.encode(texts)
        if len(ids) <= 1:  # one text (or none): no batching, sorting or reordering to do
            return (self.forward(*self.pad(ids)) if ids
                    else np.zeros((0, len(self.info["label_names"])), dtype=np.float32))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
        out = None
        starts = range(0, len(order), batch_size)
        for start in (progress(starts, desc="predict") if show_progress else starts):
            rows = order[start: start + batch_size]
            logits = self.forward(*self.pad([ids[i] for i in rows]))
            if out is None:
                out = np.empty((len(ids), logits.shape[1]), dtype=np.float32)
            out[rows] = logits
        return out

    def __call__(self, texts: list[str], batch_size: int = 64, show_progress: bool = False):
        """-> (probabilities, decisions) per text; decisions use the thresholds tuned on validation."""
        task = self.info["task"]
        probs = probabilities(task, self.logits(texts, batch_size, show_progress))
        return probs, decide(task, probs, self.info.get("thresholds"))


def read_json_file(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} ({what}) cannot be read: {err}; rerun the stage that writes it") from None


def pad_token_id(model_dir: Path, backend: Tokenizer) -> int | None:
    """The pad id the transformers tokenizer of this directory has (tokenizer_config.json's pad_token)."""
    config = model_dir / "tokenizer_config.json"
    token = read_json_file(config, "tokenizer settings").get("pad_token") if config.exists() else None
    token = token.get("content") if isinstance(token, dict) else token
    return backend.token_to_id(token) if token else None


class OnnxClassifier(Classifier):
    """An ONNX model directory from this pipeline, run by ONNX Runtime without torch."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        model_dir = Path(model_dir)
        require(model_dir.is_dir(), f"model directory {model_dir} not found: run `dvc repro` (it writes "
                                    "models/final) or pass --model DIR")
        require((model_dir / INFERENCE_FILE).exists(), f"{model_dir} is not a model directory from this pipeline "
                                                       f"(no {INFERENCE_FILE}); run the stage that writes it")
        verify_checksums(model_dir)
        record = read_json_file(model_dir / QUANT_FILE, "quantization record") \
            if (model_dir / QUANT_FILE).exists() else {"method": "none (FP32 safetensors)"}
        require(record.get("method") in ONNX_METHODS,
                f"{model_dir} holds a {record.get('method')} model, not an ONNX one; this torch-free runtime runs "
                f"quantize.method {' or '.join(ONNX_METHODS)} only: label it with `python -m banglacompress.predict`")
        backend = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        super().__init__(backend, read_json_file(model_dir / INFERENCE_FILE, "inference settings"),
                         pad_token_id(model_dir, backend))
        # threads None: ONNX Runtime's default (one per physical core), as predict's torch default
        self.session = ort_session((model_dir / ONNX_FILE).read_bytes(), threads or 0)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


# --------------------------------------------------------------------------- the command line
def parse_args(argv=None, prog: str = "python -m banglacompress.runtime", formats: str = "") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=f"Label Bangla comments with a model directory "
                                                            f"from this pipeline{formats}.")
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
    """One column of a UTF-8 CSV (a BOM is fine), every cell as a string, empty cells as ""."""
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


def label_rows(classifier: Classifier, texts: list[str], batch_size: int = 64) -> list[dict]:
    """texts -> one dict per text: the text, decisions per label, probabilities (input order)."""
    require(batch_size >= 1, f"--batch-size must be at least 1, not {batch_size}")
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


def run_cli(argv, prog: str, load_classifier, formats: str = "") -> int:
    """A labelling command: load_classifier(model_dir, threads) -> Classifier. A UserError is one line on
    stderr and exit status 2, never a traceback."""
    name = prog.rsplit(".", 1)[-1]
    try:
        args = parse_args(argv, prog, formats)
        texts = read_texts(args)
        require(Path(args.model).is_dir(), f"model directory {args.model} not found: run `dvc repro` (it writes "
                                           "models/final) or pass --model DIR")
        rows = label_rows(load_classifier(args.model, args.threads), texts, args.batch_size)
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                write_rows(rows, args.format, f)
        else:
            if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
                sys.stdout.reconfigure(encoding="utf-8")  # Bangla text under a C / Latin-1 locale
            write_rows(rows, args.format, sys.stdout)
            sys.stdout.flush()
    except UserError as err:
        print(f"error: {name}: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader went away; not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    return run_cli(argv, "python -m banglacompress.runtime", OnnxClassifier,
                   " (ONNX ones: quantize.method onnx_int8 or onnx_fp32), without torch")


if __name__ == "__main__":
    sys.exit(main())
