"""The shipped model: models/final, the quantized artifact plus a model card (README.md) whose numbers
come from evaluate's metrics/summary.json, never retyped. Only the export stage imports this module,
so rewording the card reruns export alone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .artifact import load_artifact, read_quant_record
from .config import atomic_output, require
from .integrity import verify_checksums, write_checksums
from .measure import artifact_size
from .models import INFERENCE_FILE
from .runtime import ONNX_METHODS

# --------------------------------------------------------------------------- the shipped model
def _fmt(value, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "bytes":
        return f"{value / 1e6:.2f} MB"
    if kind == "x":
        return f"{value:.1f}×"
    if kind == "ms":
        return f"{value:.2f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(info: dict, record: dict | None, summary: dict | None, data: dict | None,
               dataset: str | None) -> str:
    """README.md of models/final: what it is, how well it does (numbers from evaluate, not retyped),
    what it is for, and how to load it."""
    method = (record or {}).get("method", "none")
    labels = ", ".join(info["label_names"])
    lines = [f"# Bangla comment classifier, compressed ({labels})", "",
             f"A {info['task']} classifier over Bangla comments (labels: {labels}), made by this repository's "
             f"DVC pipeline `{(summary or {}).get('pipeline', 'kd_prune_quant')}` (prepare → train_teacher → "
             f"distill → prune → quantize → evaluate → export; stages the variant leaves out pass their model "
             f"through). This directory is the `{(summary or {}).get('final', 'quantized')}` row below.", "",
             "## Format", "",
             f"- quantization: `{method}` — {(record or {}).get('storage', 'FP32 safetensors (no quantization)')}",
             *([f"- options: {json.dumps(record.get('options', {}))}"] if record else []),
             f"- decision thresholds (tuned on the validation split, never on test): {info.get('thresholds')}",
             f"- max_length: {info.get('max_length')} tokens; tokenizer files are in this directory",
             f"- pooling: `{info.get('pooling', 'cls')}`" + ("" if info.get("pooling", "cls") == "cls" else
                " (in the ONNX graph; for PyTorch formats `load_artifact` re-applies it from config.json, a bare "
                "`from_pretrained` would pool the first token instead)"),
             "- files: " + ", ".join(f"`{f}`" for f in (record or {}).get("files", [])) if record else
             "- files: HF `save_pretrained` directory"]
    if record and record.get("fp32_modules"):
        lines += [f"- kept in FP32 (not quantized): {len(record['fp32_modules'])} modules/nodes, listed in "
                  "`quantization.json`"]
    lines.append("")
    if record and record.get("warning"):
        lines += [f"**Note:** {record['warning']}", ""]
    lines += ["## Data", ""]
    if dataset:
        lines.append(f"- source: `{dataset}`")
    if data:
        splits = data.get("splits", {})
        lines.append("- de-duplicated before splitting: exact texts (after NFC normalisation), then near-duplicates "
                     "(the same letters and vowel signs, ignoring punctuation, spaces, digits and emoji): "
                     f"{data.get('duplicate_rows_removed', 0)} and {data.get('near_duplicate_rows_removed', 0)} rows "
                     "removed")
        if data.get("split_files"):  # data.split_files: the dataset's own splits
            lines.append("- given train / val / test files, a row with a near-duplicate in a later split removed "
                         f"from train ({data.get('cross_split_train_rows_removed')} rows) and val "
                         f"({data.get('cross_split_val_rows_removed')}); test kept whole: " +
                         ", ".join(f"{k} {v.get('rows')} rows" for k, v in splits.items()))
        else:
            lines.append("- stratified train / val / test: " +
                         ", ".join(f"{k} {v.get('rows')} rows" for k, v in splits.items()))
    lines.append("")
    stages = (summary or {}).get("stages", {})
    if stages:
        lines += [f"## Test-split results (from `metrics/summary.json`, {summary.get('test_rows')} rows)", "",
                  "| model | macro-F1 | accuracy | size on disk | smaller than teacher (PyTorch) | "
                  "smaller than teacher (ONNX Runtime INT8) | agreement with teacher |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in stages.items():
            lines.append(f"| {name} | {_fmt(row.get('macro_f1'))} | {_fmt(row.get('accuracy'))} | "
                         f"{_fmt(row.get('size_bytes'), 'bytes')} | {_fmt(row.get('compression'), 'x')} | "
                         f"{_fmt(row.get('compression_vs_teacher_onnx_int8'), 'x')} | "
                         f"{_fmt(row.get('agreement_with_teacher'))} |")
        lines += ["", f"`{summary.get('final', 'quantized')}` is this model. Sizes are bytes on disk of the whole "
                  "directory (weights, config, tokenizer). `teacher_onnx_fp32` and `teacher_onnx_int8` are what a "
                  "user gets without this pipeline: the same teacher exported to ONNX Runtime, and that export "
                  "with dynamic INT8 (graph fusion on in both); the second is the strongest reference, and the "
                  "one to compare against.", "",
                  "Speed is not in this card on purpose: timings differ from run to run and machine to machine, "
                  "while every byte of this directory is reproducible (`SHA256SUMS`). The run that made it timed "
                  "every row end to end (text in, label out) in `metrics/speed.json`: `speedup` against the "
                  "PyTorch teacher and `speedup_vs_teacher_onnx_int8` against the ONNX Runtime INT8 teacher; "
                  "the repository's README quotes them.", ""]
    else:
        lines += ["## Results", "", "No `metrics/summary.json` was available when this directory was written.", ""]
    lines += ["## Intended use and limits", "",
              "- Intended for: screening or triaging Bangla social-media comments for hate speech, with a "
              "human reviewing what is flagged; research on model compression.",
              "- Not for: automated moderation or decisions about people without human review. Errors are "
              "frequent enough (see macro-F1 above) to matter.",
              "- Trained on Bangla comments from one public dataset; text in other languages or scripts, "
              "romanised Bangla (Banglish), code-mixed text and other domains are out of distribution: the "
              "model still returns a label, and it is not meaningful.",
              "- Labels reflect the dataset annotators' judgement, with their biases.",
              "- Empty input is accepted and gets a label from the model's prior; filter it upstream.", "",
              "## How to load", "", "```python", "from banglacompress.artifact import load_artifact",
              "from banglacompress.inference import TextClassifier", "",
              "model, tokenizer, info = load_artifact(\"models/final\")  # info: task, label_names, thresholds",
              "classify = TextClassifier(model, tokenizer, info)  # cleaning, tokenizer, thresholds as in training",
              "probs, labels = classify([\"একটি মন্তব্য\", \"আরেকটি\"])", "```", "",
              "From the command line (texts as arguments, one per line on stdin, or a CSV column):", "",
              "```bash", "python -m banglacompress.predict --model models/final \"একটি মন্তব্য\"",
              "python -m banglacompress.predict --model models/final --csv comments.csv --column Comments "
              "--format jsonl > predictions.jsonl", "```", ""]
    if method in ONNX_METHODS:
        lines += ["## Deploy without torch", "",
                  "This is an ONNX model: `predict` runs it with ONNX Runtime, the Rust tokenizer and numpy, with the "
                  "same cleaning, batching and thresholds, and never imports torch, transformers, scikit-learn or "
                  "pandas (`banglacompress/runtime.py`). A server needs only:", "",
                  "```bash", "pip install -r requirements-runtime.txt && pip install --no-deps .", "```", "",
                  "```python", "from banglacompress.runtime import OnnxClassifier", "",
                  "probs, labels = OnnxClassifier(\"models/final\")([\"একটি মন্তব্য\", \"আরেকটি\"])", "```", ""]
    return "\n".join(lines)


def write_final(quantized_dir: str | Path, out_dir: str | Path, *, summary: dict | None = None,
                data: dict | None = None, dataset: str | None = None) -> dict:
    """models/quantized (any format load_artifact reads) -> out_dir: the same files, plus README.md.

    The copy is reloaded and run once before it replaces out_dir, so a broken final model is never
    shipped. Returns what was written (method, files, size in bytes)."""
    src = Path(quantized_dir)
    require((src / INFERENCE_FILE).exists(), f"{src} is not a model directory from this pipeline; run the "
                                             "quantize stage first (dvc repro quantize)")
    verify_checksums(src)
    record = read_quant_record(src)
    info = json.loads((src / INFERENCE_FILE).read_text(encoding="utf-8"))
    config = src / "config.json"
    info = {**info, "pooling": json.loads(config.read_text()).get("pooling", "cls") if config.exists() else "cls"}
    with atomic_output(out_dir) as tmp:
        for f in sorted(src.iterdir()):
            require(f.is_file(), f"{f} is not a file; a model directory is flat")
            shutil.copy2(f, tmp / f.name)
        (tmp / "README.md").write_text(model_card(info, record, summary, data, dataset), encoding="utf-8")
        write_checksums(tmp)  # the card is a file of the shipped directory too
        model, tokenizer, _ = load_artifact(tmp)
        batch = tokenizer(["পরীক্ষা"], return_tensors="pt")
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        require(bool(torch.isfinite(logits).all()), f"the final model in {out_dir} returns non-finite logits")
        size = artifact_size(tmp)
    return {"method": (record or {}).get("method", "none"), "files": sorted(f.name for f in Path(out_dir).iterdir()),
            **size}
