"""Quantization methods behind a registry. Each method quantizes, saves its own format and loads it
back: `save_pretrained` silently drops packed INT8 weights, so it cannot be the format for them.

An artifact directory always holds config.json, the tokenizer and inference.json; a quantized one
also holds quantization.json naming the method, which `load_artifact` dispatches on."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .config import require
from .models import INFERENCE_FILE, load_model_dir, save_model_dir

QUANT_FILE = "quantization.json"


@dataclass
class QuantMethod:
    quantize: Callable  # (fp32 model, calibration loader or None) -> model
    save: Callable      # (model, directory) -> None  (config/tokenizer/inference are written by the caller)
    load: Callable      # (directory) -> model


def _dynamic_int8(model, calib=None):
    with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, whose CPU int8 path is ~15x slower here
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


def _save_state(model, path: Path) -> None:
    torch.save(model.state_dict(), path / "model_quantized.pt")


def _load_dynamic(path: Path):
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path)).eval()
    model = _dynamic_int8(model)
    model.load_state_dict(torch.load(path / "model_quantized.pt", weights_only=True))
    return model


def _save_fp32(model, path: Path) -> None:
    model.save_pretrained(path)


def _load_fp32(path: Path):
    return AutoModelForSequenceClassification.from_pretrained(path).eval()


QUANT_METHODS: dict[str, QuantMethod] = {
    "none": QuantMethod(quantize=lambda model, calib=None: model, save=_save_fp32, load=_load_fp32),
    "dynamic": QuantMethod(quantize=_dynamic_int8, save=_save_state, load=_load_dynamic),
}


def save_artifact(path: str | Path, method: str, model, tokenizer, info: dict) -> None:
    path = Path(path)
    if method == "none":
        save_model_dir(path, model, tokenizer, info)
        return
    model.config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / INFERENCE_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    QUANT_METHODS[method].save(model, path)
    (path / QUANT_FILE).write_text(json.dumps({"method": method}, indent=2) + "\n", encoding="utf-8")


def load_artifact(path: str | Path):
    """Any model directory this pipeline writes -> (model, tokenizer, inference info).
    This is the documented loader for quantized artifacts."""
    path = Path(path)
    require(path.is_dir(), f"model directory {path} not found: run `dvc repro` (or the stage that writes it)")
    if not (path / QUANT_FILE).exists():
        return load_model_dir(path)
    method = json.loads((path / QUANT_FILE).read_text())["method"]
    require(method in QUANT_METHODS, f"{path} was saved with quantization method {method!r}, unknown to this version")
    model = QUANT_METHODS[method].load(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    info = json.loads((path / INFERENCE_FILE).read_text(encoding="utf-8"))
    return model, tokenizer, info


def count_stored_params(model) -> dict:
    """Parameters including packed INT8 weights (which are not nn.Parameters)."""
    total = nonzero = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            total += p.numel()
            nonzero += int((p != 0).sum())
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            w = module.weight()
            q = w.int_repr() if w.is_quantized else w
            total += q.numel()
            nonzero += int((q != 0).sum())
            b = module.bias()
            if b is not None:
                total += b.numel()
                nonzero += int((b != 0).sum())
    return {"params": total, "nonzero_params": nonzero}
