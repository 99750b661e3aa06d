"""Quantization methods behind a registry. Each method quantizes, saves its own format and loads it
back: `save_pretrained` silently drops packed INT8 / INT4 weights, so it cannot be the format for them.

An artifact directory always holds config.json, the tokenizer and inference.json; a quantized one
also holds quantization.json (method, resolved options, weight format, the modules left in FP32),
which `load_artifact` — the documented loader — dispatches on.

| method     | weights on disk                                   | runs as                               |
|------------|---------------------------------------------------|---------------------------------------|
| none       | FP32 safetensors                                  | PyTorch FP32                          |
| dynamic    | INT8 Linear (torch.ao); activations per call      | PyTorch, fbgemm INT8 kernels          |
| static     | INT8 Linear + calibrated activation scales        | PyTorch, fbgemm INT8 kernels          |
| fp16       | FP16 safetensors                                  | CUDA: FP16; CPU: upcast to FP32       |
| int4       | NF4 (bitsandbytes Linear4bit), packed 2 per byte  | bitsandbytes, dequantized per call    |
| onnx_fp32  | FP32 ONNX graph                                   | ONNX Runtime                          |
| onnx_int8  | INT8 ONNX graph (MatMul and, by default, Gather;  | ONNX Runtime                          |
|            | embedding_bits=4: 4-bit word-embedding table)     |                                       |
Options (quantize.* params; null = the method's default): per_channel, embeddings (the word-embedding
table too; not for fp16), embedding_bits (onnx_int8), fuse (onnx_*: ONNX Runtime's transformer
graph fusions), threads (onnx_*).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.torch import load_file, save_file
from torch.ao import quantization as tq
from torch.ao.quantization import DeQuantStub, QuantStub
from transformers import AutoConfig, AutoModelForSequenceClassification

from .config import check_choice, check_range, require, resolve_options
from .data import sample_batches
from .models import apply_pruned_shapes, from_pretrained_pruned
from .onnx_format import (ONNX_FILE, OrtModel, export_onnx, float_weight_nodes, fuse_graph, gather_to_int4,
                          vocabulary_gather)
from .pooling import apply_pooling
from .runtime import QUANT_FILE

INT8_FILE = "model_quantized.pt"
FP16_FILE = "model_fp16.safetensors"
INT4_FILE = "model_nf4.safetensors"

CPU_FP16_NOTE = ("fp16 on CPU: the weights are stored in FP16 (half the bytes) but computed in FP32 after "
                 "upcasting on load; FP16 arithmetic on CPU is about 4x slower than FP32 (docs/facts.md)")


@dataclass
class QuantMethod:
    """One quantization format: how it is made, saved and loaded, what it needs, which options it takes."""
    run: Callable       # (fp32 model, calibration batches or None, **options) -> quantized model
    save: Callable      # (model, directory) -> extra entries for quantization.json
    load: Callable      # (directory, options, device) -> model
    storage: str        # how the weights are stored (quantization.json, model card)
    defaults: dict = field(default_factory=dict)  # the options it takes, with their defaults
    calibrated: bool = False  # run() uses calibration batches (train split)
    cpu_only: bool = False    # a CPU format (torch.ao's fbgemm kernels, ONNX Runtime CPU): made on the CPU

    def resolve(self, options: dict | None = None, name: str = "this method") -> dict:
        return resolve_options("quantize", name, self.defaults, options)

    def quantize(self, model, calib=None, name: str = "this method", **options):
        """FP32 model -> quantized copy (the input model is left as it was). The resolved options
        ride along on the result so save_artifact records exactly what was done. A CPU-only format is
        made from a CPU copy when the model is on a GPU (where fit() leaves it): torch.ao has no CUDA
        INT8 kernels, and the ONNX export and calibration batches are CPU tensors."""
        resolved = self.resolve(options, name)
        if self.cpu_only and _device_of(model).type != "cpu":
            model = copy.deepcopy(model).cpu()
        out = self.run(model.eval(), calib, **resolved)
        out.quant_options = resolved
        return out


# --------------------------------------------------------------------------- shared helpers
def _skeleton(path: Path):
    """The architecture of a saved directory with placeholder weights (structured-pruned shapes
    rebuilt), to be quantized the same way and then filled from the saved state."""
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path))
    return apply_pooling(apply_pruned_shapes(model)).eval()


def _input_embedding_name(model) -> str:
    table = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is table)


def _contiguous_ids(model) -> None:
    """torch.ao's quantized embedding rejects non-contiguous index tensors (a sliced batch)."""
    model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: tuple(a.contiguous() if torch.is_tensor(a) else a for a in args))


def fp32_modules(model) -> list[str]:
    """Modules that still hold FP32 weights after quantization (embeddings, LayerNorm, any Linear
    left out). Biases of quantized layers are FP32 in every scheme and are not listed."""
    if not isinstance(model, torch.nn.Module):  # ONNX Runtime model: its graph was inspected at quantize time
        return list(model.report.get("fp32_modules", []))
    return [name for name, module in model.named_modules()
            if isinstance(module._parameters.get("weight"), torch.Tensor)
            and module._parameters["weight"].is_floating_point()]


def activation_calibration(tokenizer, texts: list[str], n_batches: int, batch_size: int, max_length: int,
                           seed: int = 0) -> list[dict]:
    """n_batches batches of random training texts (dynamically padded) for static quantization."""
    batches = sample_batches(tokenizer, texts, None, n_batches * batch_size, batch_size, max_length, seed)
    return [{"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]} for b in batches]


def _random_calibration(model, n_batches: int = 8) -> list[dict]:
    warnings.warn("static quantization without calibration batches: calibrating on random token ids; "
                  "activation ranges will not match real text (the quantize stage passes training batches)")
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    return [{"input_ids": torch.randint(min(5, vocab - 1), vocab, (8, 24), generator=gen),
             "attention_mask": torch.ones(8, 24, dtype=torch.long)} for _ in range(n_batches)]


@contextlib.contextmanager
def _quiet_ao():
    """torch.ao is deprecated in favour of torchao, whose CPU int8 path is ~15x slower here
    (docs/facts.md); uncalibrated observers in the load skeletons also warn harmlessly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- none (FP32)
def _fp32(model, calib=None):
    return copy.deepcopy(model)


def _save_fp32(model, path: Path) -> dict:
    model.save_pretrained(path)
    return {}


def _load_fp32(path: Path, options: dict, device):
    return from_pretrained_pruned(path).eval().to(device)


# --------------------------------------------------------------------------- dynamic INT8 (torch.ao)
def _dynamic_int8(model, calib=None, *, per_channel=False, embeddings=False):
    spec = {torch.nn.Linear: tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig}
    if embeddings:  # weight-only INT8, one scale per row: the vocabulary table is most of a small model
        spec[_input_embedding_name(model)] = tq.float_qparams_weight_only_qconfig
    with _quiet_ao():
        out = tq.quantize_dynamic(model, spec, dtype=torch.qint8)  # returns a copy
    if embeddings:
        _contiguous_ids(out)
    return out


def _save_state(model, path: Path) -> dict:
    torch.save(model.state_dict(), path / INT8_FILE)
    return {}


def _load_dynamic(path: Path, options: dict, device):
    model = _dynamic_int8(_skeleton(path), **options)
    model.load_state_dict(torch.load(path / INT8_FILE, weights_only=True))
    return model


# --------------------------------------------------------------------------- static INT8 (torch.ao, eager mode)
class QuantLinear(torch.nn.Module):
    """QuantStub -> Linear -> DeQuantStub. Eager-mode static quantization needs explicit float/int8
    boundaries; putting them around each Linear quantizes every Linear while attention scores,
    softmax, GELU, LayerNorm and residual adds stay FP32 (they have no eager INT8 kernels)."""

    def __init__(self, linear):
        super().__init__()
        self.quant, self.linear, self.dequant = QuantStub(), linear, DeQuantStub()

    def forward(self, x):
        return self.dequant(self.linear(self.quant(x)))


def _engine() -> str:
    # fbgemm on x86 (per-channel weights supported); qnnpack elsewhere (ARM), per-tensor.
    engines = torch.backends.quantized.supported_engines
    return "fbgemm" if "fbgemm" in engines else "qnnpack"


def _static_prepare(model, per_channel: bool, embeddings: bool):
    """Wrap every Linear, attach qconfigs and observers (in place). Shared by quantize and load."""
    engine = _engine()
    torch.backends.quantized.engine = engine
    if per_channel and engine == "fbgemm":
        # Histogram observer with reduce_range (7-bit activations): AVX2 without VNNI can overflow
        # in u8 x s8 products with the full 8-bit range; per-output-channel weight scales.
        qconfig = tq.get_default_qconfig("fbgemm")
    else:
        qconfig = tq.QConfig(activation=tq.HistogramObserver.with_args(reduce_range=engine == "fbgemm"),
                             weight=tq.default_weight_observer)
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear):
            model.set_submodule(name, QuantLinear(module))
    model.qconfig = None
    for module in model.modules():
        if isinstance(module, QuantLinear):
            module.qconfig = qconfig
    if embeddings:
        model.get_input_embeddings().qconfig = tq.float_qparams_weight_only_qconfig
    tq.prepare(model, inplace=True)
    return model


def _static_convert(model, embeddings: bool):
    tq.convert(model, inplace=True)
    if embeddings:
        _contiguous_ids(model)
    return model


@torch.no_grad()
def _static_int8(model, calib=None, *, per_channel=True, embeddings=False):
    batches = calib if calib is not None else _random_calibration(model)
    with _quiet_ao():
        out = _static_prepare(copy.deepcopy(model), per_channel, embeddings)
        for batch in batches:
            out(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return _static_convert(out, embeddings)


def _load_static(path: Path, options: dict, device):
    with _quiet_ao():
        model = _static_prepare(_skeleton(path), options["per_channel"], options["embeddings"])
        model = _static_convert(model, options["embeddings"])  # placeholder scales, replaced next
    model.load_state_dict(torch.load(path / INT8_FILE, weights_only=True))
    return model


# --------------------------------------------------------------------------- FP16
def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _fp16(model, calib=None):
    out = copy.deepcopy(model)
    if _device_of(out).type == "cuda":
        return out.half()
    # CPU: round every weight through FP16 (what is stored) but keep computing in FP32 — the model
    # returned here is exactly what load_artifact gives back on CPU.
    warnings.warn(CPU_FP16_NOTE)
    for tensor in [*out.parameters(), *out.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    return out


def _save_fp16(model, path: Path) -> dict:
    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, path / FP16_FILE)
    return {"warning": CPU_FP16_NOTE, "fp32_modules": []}  # every floating-point tensor is stored in FP16


def _load_fp16(path: Path, options: dict, device):
    model = _skeleton(path)
    if device.type == "cuda":
        model = model.half().to(device)
    else:
        warnings.warn(CPU_FP16_NOTE)
    model.load_state_dict(load_file(path / FP16_FILE))  # copy_ casts FP16 -> FP32 on CPU
    return model.eval()


# --------------------------------------------------------------------------- INT4 (NF4, bitsandbytes)
# Linears below this many weights (the 1-logit classifier) stay FP32: their bytes are negligible and
# their 4-bit error would go straight into the logits.
INT4_MIN_WEIGHTS = 4096
# Double quantization stores the per-64 block scales in 8 bits (4.13 instead of 4.5 bits/weight) but
# adds a 256-entry FP32 code book (~1.2 KB) per layer: it only pays on larger layers.
INT4_NESTED_MIN_WEIGHTS = 32768


def bnb():
    """The bitsandbytes package (its nn and functional modules), imported the first time int4 needs it.

    Importing bitsandbytes loads torch._inductor: about 2 s on 2 cores even after torch, transformers and ONNX
    Runtime (bench/import_time.md), which every quantize, evaluate, export and predict process paid although only
    quant_method int4 uses it. This is the package's one function-level import (of a third-party backend, never
    of a package module: tests/test_pipeline.py, LAZY_IMPORTS)."""
    import bitsandbytes.functional
    import bitsandbytes.nn
    return bitsandbytes


def _int4_modules(model, embeddings: bool) -> list[str]:
    names = [n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.weight.numel() >= INT4_MIN_WEIGHTS]
    return names + ([_input_embedding_name(model)] if embeddings else [])


def _int4_shell(module):
    """An empty bitsandbytes 4-bit module of the same shape (weights are set by the caller)."""
    nested, nn4 = module.weight.numel() >= INT4_NESTED_MIN_WEIGHTS, bnb().nn
    if isinstance(module, torch.nn.Embedding):
        shell = nn4.Embedding4bit(module.num_embeddings, module.embedding_dim, dtype=torch.float32, quant_type="nf4")
    else:
        shell = nn4.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                               compute_dtype=torch.float32, compress_statistics=nested, quant_type="nf4")
        # bitsandbytes repacks the weight for its AVX-512-BF16 kernel on such CPUs; that repacking needs
        # out_features divisible by its block (a pruned 48-wide projection failed with "N must be divisible
        # by block_n"), and it would make the same file compute differently on another CPU. The dequantize
        # path runs everywhere.
        shell.support_avx512bf16_for_cpu = False
    shell.weight.compress_statistics = nested
    return shell


def is_4bit(module) -> bool:
    weight = module._parameters.get("weight")
    return type(weight).__name__ == "Params4bit" and getattr(weight, "quant_state", None) is not None


@torch.no_grad()
def _int4(model, calib=None, *, embeddings=False):
    out = copy.deepcopy(model)
    device = _device_of(out)
    for name in _int4_modules(out, embeddings):
        module = out.get_submodule(name)
        shell = _int4_shell(module)
        shell.weight.data = module.weight.data.float().cpu()
        if getattr(module, "bias", None) is not None:
            shell.bias = torch.nn.Parameter(module.bias.data.float().clone(), requires_grad=False)
        shell.weight = shell.weight.to(device)  # Params4bit quantizes when it is moved to a device
        out.set_submodule(name, shell.to(device))
    return out


def _save_int4(model, path: Path) -> dict:
    state, packed_bytes, packed_weights, names = {}, 0, 0, []
    embedding4bit = bnb().nn.Embedding4bit
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, embedding4bit):  # bitsandbytes does not implement saving it: do it here
            state[prefix + "weight"] = module.weight.data
            for k, v in module.weight.quant_state.as_dict(packed=True).items():
                state[f"{prefix}weight.{k}"] = v
        else:
            module._save_to_state_dict(state, prefix, False)  # this module's own tensors (+ 4-bit quant state)
        if is_4bit(module):
            names.append(name)
            packed_weights += module.weight.quant_state.shape.numel()
            packed_bytes += sum(v.numel() * v.element_size() for k, v in state.items()
                                if k == prefix + "weight" or k.startswith(prefix + "weight."))
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path / INT4_FILE)
    # Bits per 4-bit weight actually stored: packed nibbles + block scales + code books + quant-state header.
    return {"int4_modules": names, "int4_weights": packed_weights,
            "int4_bits_per_weight": 8 * packed_bytes / max(packed_weights, 1)}


def _load_int4(path: Path, options: dict, device):
    record = json.loads((path / QUANT_FILE).read_text())
    model, state = _skeleton(path), load_file(path / INT4_FILE)
    four_bit = record["int4_modules"]
    for name in four_bit:
        key = f"{name}.weight"
        stats = {k[len(key) + 1:]: state.pop(k) for k in [k for k in state if k.startswith(key + ".")]}
        shell = _int4_shell(model.get_submodule(name))
        shell.weight = bnb().nn.Params4bit.from_prequantized(state.pop(key), stats, requires_grad=False,
                                                             device="cpu", module=shell)
        model.set_submodule(name, shell)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(k == f"{n}.weight" or k.startswith(f"{n}.weight.") for n in four_bit)]
    require(not missing and not unexpected, f"{path / INT4_FILE} does not match the model: missing {missing[:5]}, "
                                            f"unexpected {unexpected[:5]}")
    return model.to(device).eval()


# --------------------------------------------------------------------------- ONNX Runtime
def _onnx_fp32(model, calib=None, *, fuse=True, threads=None):
    data, fused = fuse_graph(model, export_onnx(model)) if fuse else (export_onnx(model), {})
    return OrtModel(data, copy.deepcopy(model.config), threads,
                    {"fp32_modules": float_weight_nodes(data), "fused_ops": fused})


def _onnx_int8(model, calib=None, *, per_channel=False, embeddings=True, embedding_bits=8, fuse=True, threads=None):
    """ONNX Runtime dynamic quantization: INT8 MatMul / fused Attention weights (activations quantized
    per call) and, with embeddings, INT8 embedding tables — the embeddings are most of a small model's
    bytes. embedding_bits=4 stores the word-embedding table in 4 bits (GatherBlockQuantized) instead;
    the embedding lookups then stay unfused Gathers (fuse_graph(embeddings=False))."""
    require(embedding_bits in (4, 8), f"quantize.embedding_bits={embedding_bits!r} must be 4 or 8")
    four_bit = embeddings and embedding_bits == 4
    fp32, fused = export_onnx(model), {}
    if fuse:
        fp32, fused = fuse_graph(model, fp32, embeddings=not four_bit)
    vocab = vocabulary_gather(fp32, model.config.vocab_size) if four_bit else None
    ops = ["MatMul", "Attention", *(["Gather", "EmbedLayerNormalization"] if embeddings else [])]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # "consider pre-processing" advice, for static CNN quantization
        try:
            # DefaultTensorType: shape inference cannot type the outputs of fused (com.microsoft) nodes.
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=ops, nodes_to_exclude=[vocab] if vocab else [],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        data = dst.read_bytes()
    if vocab:
        data = gather_to_int4(data, vocab)
        onnx.checker.check_model(onnx.load_from_string(data))
    return OrtModel(data, copy.deepcopy(model.config), threads,
                    {"fp32_modules": float_weight_nodes(data), "fused_ops": fused})


def _save_onnx(model, path: Path) -> dict:
    (path / ONNX_FILE).write_bytes(model.onnx_bytes)
    return {"fused_ops": model.report.get("fused_ops", {})}


def _load_onnx(path: Path, options: dict, device):
    if device.type != "cpu":
        warnings.warn(f"{path} is an ONNX Runtime CPU model; it runs on CPU, not {device}")
    record = json.loads((path / QUANT_FILE).read_text())
    return OrtModel((path / ONNX_FILE).read_bytes(), AutoConfig.from_pretrained(path), options.get("threads"),
                    {"fp32_modules": record.get("fp32_modules", []), "fused_ops": record.get("fused_ops", {})})


QUANT_METHODS: dict[str, QuantMethod] = {
    "none": QuantMethod(_fp32, _save_fp32, _load_fp32, "FP32 safetensors"),
    "dynamic": QuantMethod(_dynamic_int8, _save_state, _load_dynamic,
                           "INT8 Linear weights (torch.ao dynamic; activations quantized per call)",
                           {"per_channel": False, "embeddings": False}, cpu_only=True),
    "static": QuantMethod(_static_int8, _save_state, _load_static,
                          "INT8 Linear weights and calibrated INT8 activations (torch.ao eager static, fbgemm)",
                          {"per_channel": True, "embeddings": False}, calibrated=True, cpu_only=True),
    "fp16": QuantMethod(_fp16, _save_fp16, _load_fp16, "FP16 safetensors (CPU: computed in FP32)"),
    "int4": QuantMethod(_int4, _save_int4, _load_int4,
                        "NF4 4-bit Linear weights (bitsandbytes Linear4bit), packed two per byte",
                        {"embeddings": False}),
    "onnx_fp32": QuantMethod(_onnx_fp32, _save_onnx, _load_onnx, "FP32 ONNX graph (ONNX Runtime)",
                             {"fuse": True, "threads": None}, cpu_only=True),
    "onnx_int8": QuantMethod(_onnx_int8, _save_onnx, _load_onnx,
                             "INT8 ONNX graph (ONNX Runtime dynamic quantization of MatMul weights and, with "
                             "embeddings, the Gather tables; the word-embedding table at embedding_bits bits)",
                             {"per_channel": False, "embeddings": True, "embedding_bits": 8, "fuse": True,
                              "threads": None}, cpu_only=True),
}


# The quantize.* params that are method options (the rest belong to the stage), and their legal values.
OPTION_KEYS = tuple(sorted({key for method in QUANT_METHODS.values() for key in method.defaults}))
OPTION_VALUES = {"per_channel": (True, False), "embeddings": (True, False), "embedding_bits": (4, 8),
                 "fuse": (True, False)}


def method_options(cfg: dict) -> dict:
    """The method options of a `quantize:` params group (null = the method's default)."""
    return {key: cfg.get(key) for key in OPTION_KEYS}


def check_quantize_params(cfg: dict) -> None:
    """Reject bad `quantize:` params before any work (one line each, no traceback)."""
    check_choice("quantize.method", cfg["method"], QUANT_METHODS)
    check_range("quantize.calib_batches", cfg.get("calib_batches", 100), 1, 100000)
    check_range("quantize.batch_size", cfg.get("batch_size", 32), 1, 65536)
    check_range("quantize.min_agreement", cfg.get("min_agreement", 0.9), 0.0, 1.0)
    for key, value in method_options(cfg).items():
        if value is None:
            continue
        if key == "threads":
            check_range("quantize.threads", value, 1, 1024)
        else:
            require(value in OPTION_VALUES[key] and type(value) is type(OPTION_VALUES[key][0]),
                    f"quantize.{key}={value!r} must be one of {', '.join(map(str, OPTION_VALUES[key]))} or null")
    QUANT_METHODS[cfg["method"]].resolve(method_options(cfg), cfg["method"])
