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
table too; not for fp16), embedding_bits (onnx_int8), threads (onnx_*).
"""
from __future__ import annotations

import contextlib
import copy
import json
import random
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .config import require
from .models import INFERENCE_FILE, apply_pruned_shapes, from_pretrained_pruned, save_model_dir
from .pooling import apply_pooling

QUANT_FILE = "quantization.json"
INT8_FILE = "model_quantized.pt"
FP16_FILE = "model_fp16.safetensors"
INT4_FILE = "model_nf4.safetensors"

CPU_FP16_NOTE = ("fp16 on CPU: the weights are stored in FP16 (half the bytes) but computed in FP32 after "
                 "upcasting on load; FP16 arithmetic on CPU is about 4x slower than FP32 (docs/facts.md)")


@dataclass
class QuantMethod:
    run: Callable       # (fp32 model, calibration batches or None, **options) -> quantized model
    save: Callable      # (model, directory) -> extra entries for quantization.json
    load: Callable      # (directory, options, device) -> model
    weights: str        # how the weights are stored (quantization.json, model card)
    defaults: dict = field(default_factory=dict)  # the method's options; params may override them
    calibrated: bool = False  # run() uses calibration batches (train split)

    def resolve(self, options: dict | None = None) -> dict:
        """The method's defaults updated with the given options (None = keep the default)."""
        given = {k: v for k, v in (options or {}).items() if k in self.defaults and v is not None}
        return {**self.defaults, **given}

    def quantize(self, model, calib=None, **options):
        """FP32 model -> quantized copy (the input model is left as it was). The resolved options
        ride along on the result so save_artifact records exactly what was done."""
        resolved = self.resolve(options)
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


def calibration_batches(tokenizer, texts: list[str], n_batches: int, batch_size: int, max_length: int,
                        seed: int = 0) -> list[dict]:
    """n_batches random batches of training texts (dynamically padded) for static quantization."""
    from .data import Encoded

    rng = random.Random(seed)
    pick = rng.sample(range(len(texts)), min(len(texts), n_batches * batch_size))
    data = Encoded(tokenizer, [texts[i] for i in pick], None, max_length)
    batches = [data.collate(list(range(i, min(i + batch_size, len(data))))) for i in range(0, len(data), batch_size)]
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
    from torch.ao import quantization as tq

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
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant, self.linear, self.dequant = QuantStub(), linear, DeQuantStub()

    def forward(self, x):
        return self.dequant(self.linear(self.quant(x)))


def _engine() -> str:
    # fbgemm on x86 (per-channel weights supported); qnnpack elsewhere (ARM), per-tensor.
    engines = torch.backends.quantized.supported_engines
    return "fbgemm" if "fbgemm" in engines else "qnnpack"


def _static_prepare(model, per_channel: bool, embeddings: bool):
    """Wrap every Linear, attach qconfigs and observers (in place). Shared by quantize and load."""
    from torch.ao import quantization as tq

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
    from torch.ao import quantization as tq

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
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, path / FP16_FILE)
    return {"warning": CPU_FP16_NOTE, "fp32_modules": []}  # every floating-point tensor is stored in FP16


def _load_fp16(path: Path, options: dict, device):
    from safetensors.torch import load_file

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


def _int4_modules(model, embeddings: bool) -> list[str]:
    names = [n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.weight.numel() >= INT4_MIN_WEIGHTS]
    return names + ([_input_embedding_name(model)] if embeddings else [])


def _int4_shell(module):
    """An empty bitsandbytes 4-bit module of the same shape (weights are set by the caller)."""
    from bitsandbytes.nn import Embedding4bit, Linear4bit

    nested = module.weight.numel() >= INT4_NESTED_MIN_WEIGHTS
    if isinstance(module, torch.nn.Embedding):
        shell = Embedding4bit(module.num_embeddings, module.embedding_dim, dtype=torch.float32, quant_type="nf4")
    else:
        shell = Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                           compute_dtype=torch.float32, compress_statistics=nested, quant_type="nf4")
    shell.weight.compress_statistics = nested
    return shell


def _is_4bit(module) -> bool:
    # By class name: counting parameters of ordinary models must not need bitsandbytes installed.
    weight = module._parameters.get("weight")
    return type(weight).__name__ == "Params4bit" and getattr(weight, "quant_state", None) is not None


@torch.no_grad()
def _int4(model, calib=None, *, embeddings=False):
    import bitsandbytes  # noqa: F401  (fails early with a clear ImportError if absent)

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
    from bitsandbytes.nn import Embedding4bit
    from safetensors.torch import save_file

    state, packed_bytes, packed_weights, names = {}, 0, 0, []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, Embedding4bit):  # bitsandbytes does not implement saving it: do it here
            state[prefix + "weight"] = module.weight.data
            for k, v in module.weight.quant_state.as_dict(packed=True).items():
                state[f"{prefix}weight.{k}"] = v
        else:
            module._save_to_state_dict(state, prefix, False)  # this module's own tensors (+ 4-bit quant state)
        if _is_4bit(module):
            names.append(name)
            packed_weights += module.weight.quant_state.shape.numel()
            packed_bytes += sum(v.numel() * v.element_size() for k, v in state.items()
                                if k == prefix + "weight" or k.startswith(prefix + "weight."))
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path / INT4_FILE)
    # Bits per 4-bit weight actually stored: packed nibbles + block scales + code books + quant-state header.
    return {"int4_modules": names, "int4_weights": packed_weights,
            "int4_bits_per_weight": 8 * packed_bytes / max(packed_weights, 1)}


def _load_int4(path: Path, options: dict, device):
    from bitsandbytes.nn import Params4bit
    from safetensors.torch import load_file

    record = json.loads((path / QUANT_FILE).read_text())
    model, state = _skeleton(path), load_file(path / INT4_FILE)
    four_bit = record["int4_modules"]
    for name in four_bit:
        key = f"{name}.weight"
        stats = {k[len(key) + 1:]: state.pop(k) for k in [k for k in state if k.startswith(key + ".")]}
        shell = _int4_shell(model.get_submodule(name))
        shell.weight = Params4bit.from_prequantized(state.pop(key), stats, requires_grad=False, device="cpu",
                                                    module=shell)
        model.set_submodule(name, shell)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(k == f"{n}.weight" or k.startswith(f"{n}.weight.") for n in four_bit)]
    require(not missing and not unexpected, f"{path / INT4_FILE} does not match the model: missing {missing[:5]}, "
                                            f"unexpected {unexpected[:5]}")
    return model.to(device).eval()


# --------------------------------------------------------------------------- ONNX Runtime
def _onnx_fp32(model, calib=None, *, threads=None):
    from .export import OrtModel, export_onnx, float_weight_nodes

    data = export_onnx(model)
    return OrtModel(data, copy.deepcopy(model.config), threads, {"fp32_modules": float_weight_nodes(data)})


def _onnx_int8(model, calib=None, *, per_channel=False, embeddings=True, embedding_bits=8, threads=None):
    """ONNX Runtime dynamic quantization: INT8 MatMul weights (activations quantized per call) and,
    with embeddings, INT8 Gather tables — the embeddings are most of a small model's bytes.
    embedding_bits=4 stores the word-embedding table in 4 bits (GatherBlockQuantized) instead."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .export import OrtModel, export_onnx, float_weight_nodes, gather_to_int4, vocabulary_gather

    require(embedding_bits in (4, 8), f"quantize.embedding_bits={embedding_bits!r} must be 4 or 8")
    fp32 = export_onnx(model)
    vocab = vocabulary_gather(fp32, model.config.vocab_size) if embeddings and embedding_bits == 4 else None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # "consider pre-processing" advice, for static CNN quantization
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=["MatMul", *(["Gather"] if embeddings else [])],
                             nodes_to_exclude=[vocab] if vocab else [])
        finally:
            root.setLevel(level)
        data = dst.read_bytes()
    if vocab:
        data = gather_to_int4(data, vocab)
        onnx.checker.check_model(onnx.load_from_string(data))
    return OrtModel(data, copy.deepcopy(model.config), threads, {"fp32_modules": float_weight_nodes(data)})


def _save_onnx(model, path: Path) -> dict:
    from .export import ONNX_FILE

    (path / ONNX_FILE).write_bytes(model.onnx_bytes)
    return {}


def _load_onnx(path: Path, options: dict, device):
    from .export import ONNX_FILE, OrtModel

    if device.type != "cpu":
        warnings.warn(f"{path} is an ONNX Runtime CPU model; it runs on CPU, not {device}")
    record = json.loads((path / QUANT_FILE).read_text())
    return OrtModel((path / ONNX_FILE).read_bytes(), AutoConfig.from_pretrained(path), options.get("threads"),
                    {"fp32_modules": record.get("fp32_modules", [])})


QUANT_METHODS: dict[str, QuantMethod] = {
    "none": QuantMethod(_fp32, _save_fp32, _load_fp32, "FP32 safetensors"),
    "dynamic": QuantMethod(_dynamic_int8, _save_state, _load_dynamic,
                           "INT8 Linear weights (torch.ao dynamic; activations quantized per call)",
                           {"per_channel": False, "embeddings": False}),
    "static": QuantMethod(_static_int8, _save_state, _load_static,
                          "INT8 Linear weights and calibrated INT8 activations (torch.ao eager static, fbgemm)",
                          {"per_channel": True, "embeddings": False}, calibrated=True),
    "fp16": QuantMethod(_fp16, _save_fp16, _load_fp16, "FP16 safetensors (CPU: computed in FP32)"),
    "int4": QuantMethod(_int4, _save_int4, _load_int4,
                        "NF4 4-bit Linear weights (bitsandbytes Linear4bit), packed two per byte",
                        {"embeddings": False}),
    "onnx_fp32": QuantMethod(_onnx_fp32, _save_onnx, _load_onnx, "FP32 ONNX graph (ONNX Runtime)",
                             {"threads": None}),
    "onnx_int8": QuantMethod(_onnx_int8, _save_onnx, _load_onnx,
                             "INT8 ONNX graph (ONNX Runtime dynamic quantization of MatMul weights and, with "
                             "embeddings, the Gather tables; embedding_bits=4: a 4-bit word-embedding table)",
                             {"per_channel": False, "embeddings": True, "embedding_bits": 8, "threads": None}),
}


# --------------------------------------------------------------------------- artifacts
def save_artifact(path: str | Path, method: str, model, tokenizer, info: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if method == "none":
        save_model_dir(path, model, tokenizer, info)
        return
    spec = QUANT_METHODS[method]
    model.config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / INFERENCE_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    extra = spec.save(model, path)
    options = spec.resolve(getattr(model, "quant_options", None))
    fp32 = fp32_modules(model)
    record = {"method": method, "weights": spec.weights, "options": options, "fp32_modules": fp32, **extra,
              "files": sorted([f.name for f in path.iterdir()] + [QUANT_FILE])}
    (path / QUANT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


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
    device = torch.device(device or "cpu")
    record = read_quant_record(path)
    if record is None:  # FP32 directory; from_pretrained_pruned also rebuilds structured-pruned shapes
        model = from_pretrained_pruned(path).eval().to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return model, tokenizer, json.loads((path / INFERENCE_FILE).read_text(encoding="utf-8"))
    method = record["method"]
    require(method in QUANT_METHODS, f"{path} was saved with quantization method {method!r}, unknown to this version")
    spec = QUANT_METHODS[method]
    options = spec.resolve(record.get("options"))
    if threads is not None and "threads" in options:
        options["threads"] = threads
    model = spec.load(path, options, device)
    model.quant_options = options
    tokenizer = AutoTokenizer.from_pretrained(path)
    info = json.loads((path / INFERENCE_FILE).read_text(encoding="utf-8"))
    return model, tokenizer, info


def count_stored_params(model) -> dict:
    """Weight elements as stored, including packed INT8 weights (not nn.Parameters) and NF4 weights
    (a Params4bit holds two weights per uint8 element), and the weights inside an ONNX graph."""
    if hasattr(model, "stored_params"):
        return model.stored_params()
    total = nonzero = 0
    for module in model.modules():
        four_bit = _is_4bit(module)
        for name, p in module.named_parameters(recurse=False):
            if four_bit and name == "weight":
                import bitsandbytes.functional as bnbf

                w = bnbf.dequantize_4bit(p.data, p.quant_state)
                total += w.numel()
                nonzero += int((w != 0).sum())
                continue
            total += p.numel()
            nonzero += int((p != 0).sum())
        if type(module).__module__.startswith("torch.ao.nn.quantized") and callable(getattr(module, "weight", None)):
            for get in (module.weight, getattr(module, "bias", None)):
                t = get() if callable(get) else None
                if t is None:
                    continue
                values = t.dequantize() if t.is_quantized else t
                total += values.numel()
                nonzero += int((values != 0).sum())
    return {"params": total, "nonzero_params": nonzero}
