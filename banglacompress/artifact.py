"""Artifact directories: save and load a model in any quantization format, the quantization record,
stored-parameter counts, and the quantize step (quantize, save, reload, check on val).

An artifact directory always holds config.json, the tokenizer and inference.json; a quantized one
also holds quantization.json (method, resolved options, storage, the modules left in FP32), which
`load_artifact` — the documented loader for every format — dispatches on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from .config import atomic_output, require
from .integrity import verify_checksums, write_checksums
from .data import Encoded, load_split
from .measure import artifact_size
from .models import INFERENCE_FILE, from_pretrained_pruned, save_model_dir, save_tokenizer
from .quantize import (QUANT_FILE, QUANT_METHODS, activation_calibration, bnb, check_quantize_params,
                       fp32_modules, is_4bit, method_options)
from .scoring import agreement
from .train import predict_logits, score_split


def save_artifact(path: str | Path, method: str, model, tokenizer, info: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if method == "none":
        save_model_dir(path, model, tokenizer, info)
        return
    spec = QUANT_METHODS[method]
    model.config.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    (path / INFERENCE_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    extra = spec.save(model, path)
    options = spec.resolve(getattr(model, "quant_options", None), method)
    record = {"method": method, "storage": spec.storage, "options": options, "fp32_modules": fp32_modules(model),
              **extra, "files": sorted([f.name for f in path.iterdir()] + [QUANT_FILE])}
    (path / QUANT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    write_checksums(path)


def read_quant_record(path: str | Path) -> dict | None:
    """quantization.json of an artifact directory, or None for a plain FP32 directory."""
    f = Path(path) / QUANT_FILE
    return json.loads(f.read_text()) if f.exists() else None


def load_artifact(path: str | Path, *, device: str | torch.device | None = None, threads: int | None = None):
    """Any model directory this pipeline writes -> (model, tokenizer, inference info).
    This is the documented loader for every format (FP32, INT8, FP16, NF4, ONNX).

    device: where a torch model is put (default CPU; "cuda" runs fp16 in half precision).
    threads: ONNX Runtime intra-op threads (default: follow torch.get_num_threads())."""
    path = Path(path)
    require(path.is_dir(), f"model directory {path} not found: run `dvc repro` (or the stage that writes it)")
    require((path / INFERENCE_FILE).exists(), f"{path} is not a model directory from this pipeline "
                                              f"(no {INFERENCE_FILE}); run the stage that writes it")
    verify_checksums(path)
    device = torch.device(device or "cpu")
    info = json.loads((path / INFERENCE_FILE).read_text(encoding="utf-8"))
    record = read_quant_record(path)
    if record is None:  # FP32 directory; from_pretrained_pruned also rebuilds structured-pruned shapes
        return from_pretrained_pruned(path).eval().to(device), AutoTokenizer.from_pretrained(path), info
    method = record["method"]
    require(method in QUANT_METHODS, f"{path} was saved with quantization method {method!r}, unknown to this version")
    spec = QUANT_METHODS[method]
    options = spec.resolve(record.get("options"), method)
    if threads is not None and "threads" in options:
        options["threads"] = threads
    model = spec.load(path, options, device)
    model.quant_options = options
    return model, AutoTokenizer.from_pretrained(path), info


def count_stored_params(model) -> dict:
    """Weight elements as stored, including packed INT8 weights (not nn.Parameters) and NF4 weights
    (a Params4bit holds two weights per uint8 element), and the weights inside an ONNX graph."""
    if hasattr(model, "stored_params"):
        return model.stored_params()
    total = nonzero = 0
    for module in model.modules():
        four_bit = is_4bit(module)
        for name, p in module.named_parameters(recurse=False):
            values = bnb().functional.dequantize_4bit(p.data, p.quant_state) if four_bit and name == "weight" else p
            total += values.numel()
            nonzero += int((values != 0).sum())
        if type(module).__module__.startswith("torch.ao.nn.quantized") and callable(getattr(module, "weight", None)):
            for get in (module.weight, getattr(module, "bias", None)):
                t = get() if callable(get) else None
                if t is None:
                    continue
                values = t.dequantize() if t.is_quantized else t
                total += values.numel()
                nonzero += int((values != 0).sum())
    return {"params": total, "nonzero_params": nonzero}


def quantize_model(cfg: dict, model, tokenizer, *, prepared: str | Path, max_length: int, seed: int = 42):
    """A quantized copy of the FP32 `model` in the `quantize:` group's method and options; a calibrated method
    (static) sees quantize.calib_batches batches of the train split."""
    method = QUANT_METHODS[cfg["method"]]
    calib = None
    if method.calibrated:
        train_texts, _, _ = load_split(prepared, "train")
        calib = activation_calibration(tokenizer, train_texts, cfg.get("calib_batches", 100),
                                       cfg.get("batch_size", 32), max_length, seed)
    return method.quantize(model, calib, name=cfg["method"], **method_options(cfg))


def quantize_and_verify(cfg: dict, *, prepared: str | Path, source: str | Path, out_dir: str | Path,
                        max_length: int, seed: int = 42) -> dict:
    """The quantize stage: the FP32 model in `source` -> `cfg["method"]` artifact in `out_dir`, reloaded
    with the documented loader and checked on val: the reloaded model must predict exactly what the
    in-memory one did, and agree with FP32 on at least cfg["min_agreement"] of the rows. Test is
    left to evaluate. Returns the stage's metrics."""
    check_quantize_params(cfg)
    name = cfg["method"]
    method = QUANT_METHODS[name]
    val_texts, y_val, _ = load_split(prepared, "val")
    model, tokenizer, info = load_artifact(source)
    fp32_scores, fp32_pred, _ = score_split(model, tokenizer, info, val_texts, y_val, max_length, desc="val")
    quantized = quantize_model(cfg, model, tokenizer, prepared=prepared, max_length=max_length, seed=seed)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    in_memory = predict_logits(quantized, val_set, desc="val")

    with atomic_output(out_dir) as out:
        save_artifact(out, name, quantized, tokenizer, {**info, "quantization": name})
        # What was written must be what was measured: reload with the documented loader.
        reloaded, _, _ = load_artifact(out)
        drift = float(np.abs(predict_logits(reloaded, val_set, desc="val") - in_memory).max())
        require(drift < 1e-4, f"the saved {name} artifact predicts differently after reloading "
                              f"(max logit diff {drift:.2e}); the format loses information")
        q_scores, q_pred, _ = score_split(reloaded, tokenizer, info, val_texts, y_val, max_length, desc="val")
        val_agreement = agreement(info["task"], fp32_pred, q_pred)
        require(val_agreement >= cfg.get("min_agreement", 0.9),
                f"the reloaded {name} model agrees with FP32 on only {val_agreement:.1%} of val rows "
                f"(quantize.min_agreement={cfg.get('min_agreement', 0.9)}); the quantization is too lossy")
        size = artifact_size(out)
        record = read_quant_record(out) or {"method": "none", "fp32_modules": []}
    return {"method": name, "options": record.get("options", {}), "storage": method.storage,
            "val_agreement_with_fp32": val_agreement, "val_macro_f1_fp32": fp32_scores["macro_f1"],
            "val_macro_f1": q_scores["macro_f1"], "val_macro_f1_change": q_scores["macro_f1"] - fp32_scores["macro_f1"],
            "reload_max_logit_diff": drift, **size, **count_stored_params(reloaded),
            **({"int4_bits_per_weight": record["int4_bits_per_weight"]} if "int4_bits_per_weight" in record else {}),
            **({"fused_ops": record["fused_ops"]} if "fused_ops" in record else {}),
            "fp32_module_count": len(record.get("fp32_modules", [])), "fp32_modules": record.get("fp32_modules", [])}
