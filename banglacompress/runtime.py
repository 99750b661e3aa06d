"""Text in, label out without torch: the inference core that the pipeline and the deploy path share.

An ONNX model directory from this pipeline (quantize.method onnx_int8, the default, or onnx_fp32) holds the
graph, the tokenizer and inference.json (thresholds tuned on val, label names). `OnnxClassifier` runs it with
ONNX Runtime, the Rust tokenizer and numpy only: this module imports none of torch, transformers,
scikit-learn, pandas or onnx, so `python -m banglacompress.predict` on such a directory starts without them
and runs on requirements-runtime.txt alone (tests/test_quantize.py runs it with them blocked).

`Classifier` is the one text-in, label-out loop: clean as in training, tokenize with the Rust tokenizer,
batch by length, run, decide with the tuned thresholds. `OnnxClassifier` runs it on an ONNX Runtime session;
inference.TextClassifier runs it on any format load_artifact returns (what evaluate times). The cleaning,
the decision rule, the session options and the progress bar are the pipeline's own (data, scoring,
onnx_format and train import them from here), so training and deployment cannot drift apart."""
from __future__ import annotations

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


def quant_method(model_dir: str | Path) -> str:
    """The quantize method a model directory was saved with ("none": plain FP32 safetensors)."""
    record = Path(model_dir) / QUANT_FILE
    return read_json_file(record, "quantization record").get("method", "?") if record.exists() else "none"


class OnnxClassifier(Classifier):
    """An ONNX model directory from this pipeline, run by ONNX Runtime without torch."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        model_dir = Path(model_dir)
        require(model_dir.is_dir(), f"model directory {model_dir} not found: run `dvc repro` (it writes "
                                    "models/final) or pass --model DIR")
        require((model_dir / INFERENCE_FILE).exists(), f"{model_dir} is not a model directory from this pipeline "
                                                       f"(no {INFERENCE_FILE}); run the stage that writes it")
        verify_checksums(model_dir)
        method = quant_method(model_dir)
        require(method in ONNX_METHODS, f"{model_dir} holds a {method!r} model, not an ONNX one "
                                        f"(quantize.method {' or '.join(ONNX_METHODS)}); load it with load_artifact")
        backend = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        super().__init__(backend, read_json_file(model_dir / INFERENCE_FILE, "inference settings"),
                         pad_token_id(model_dir, backend))
        # threads None: ONNX Runtime's default (one per physical core), as torch's for the other formats
        self.session = ort_session((model_dir / ONNX_FILE).read_bytes(), threads or 0)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]
