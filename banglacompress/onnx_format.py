"""ONNX export, the ONNX Runtime model wrapper, and the ONNX graph helpers the quantizer uses.

ONNX Runtime is the fastest CPU runtime measured here (docs/facts.md), and small models are
dominated by PyTorch's per-call overhead, so the ONNX artifact is where batch-1 speed comes from.
`OrtModel` gives an InferenceSession the call interface the rest of the pipeline uses on torch
models (model(input_ids=, attention_mask=).logits, .eval(), .parameters()), so predict_logits,
measure_speed and evaluate need no ONNX-specific code.

Imports only config and runtime (the torch-free session and file names): quantize, artifact and export build on this module, never the other way."""
from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model
from transformers.modeling_outputs import SequenceClassifierOutput

from .config import require
from .runtime import ONNX_FILE, ort_session  # noqa: F401  (ONNX_FILE re-exported for quantize)

ONNX_OPSET = 17  # LayerNormalization is a native op from 17: one fused node instead of ~10


# --------------------------------------------------------------------------- export
class _LogitsOnly(torch.nn.Module):
    """Positional (input_ids, attention_mask) -> logits: the exporter traces tensors, not ModelOutput."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model, opset: int = ONNX_OPSET) -> bytes:
    """FP32 torch classifier -> ONNX bytes with dynamic batch and sequence axes, checked against torch.

    The TorchScript ("legacy", dynamo=False) exporter is used: the dynamo exporter, torch 2.13's
    default, needs onnxscript, which is not installed (and is not needed for these encoders).
    Attention is traced in its eager form (softmax(QK^T)V written out): that is the pattern ONNX
    Runtime's transformer optimizer fuses (fuse_graph); the SDPA form is not fused."""
    model.eval()
    # Batch 2 with one padded row, so neither axis is traced as a constant 1 and the mask path is real.
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 3], [2, 16, 17, 3, 0, 0, 0, 0]], dtype=torch.long)
    ids = ids.clamp(max=model.config.vocab_size - 1)
    mask = (torch.arange(8)[None, :] < torch.tensor([[8], [4]])).long()
    buffer = io.BytesIO()
    attention = model.config._attn_implementation
    with warnings.catch_warnings():
        # TracerWarnings about Python bools in the HF masking code (constant for our inputs: the mask
        # always spans the whole sequence) and the exporter's own deprecation notice.
        warnings.simplefilter("ignore")
        model.set_attn_implementation("eager")
        try:
            torch.onnx.export(_LogitsOnly(model).eval(), (ids, mask), buffer, dynamo=False, opset_version=opset,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                            "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})
        finally:
            model.set_attn_implementation(attention)
    model.eval()  # export restores the wrapper's mode afterwards; make sure dropout stays off
    data = buffer.getvalue()
    require(_export_error(model, data) < 1e-3, "ONNX export does not match torch; this architecture cannot be "
                                               "exported with the TorchScript exporter")
    return data


FUSED_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu",
             "LayerNormalization")


def fuse_graph(model, onnx_bytes: bytes, *, embeddings: bool = True) -> tuple[bytes, dict]:
    """ONNX Runtime's transformer optimizer on an exported encoder: attention, skip-LayerNorm, bias-GELU
    and (embeddings=True) embedding + LayerNorm become one fused kernel each. A small model's batch-1
    time is mostly per-node overhead, so fewer nodes is most of the speed (bench/SPEED.md).

    embeddings=False keeps the embedding lookups as plain Gathers (a 4-bit word-embedding table
    replaces one of them). The fused graph is checked against torch like the export; if a pattern
    was fused wrongly (e.g. heads pruned to different counts per block) the unfused graph is kept.
    Returns (graph, {fused op: count}); {} when the unfused graph is kept."""
    options = FusionOptions("bert")
    options.enable_embed_layer_norm = embeddings
    config = model.config
    heads = getattr(config, "num_attention_heads", 0)
    width = config.hidden_size
    shapes = getattr(config, "pruned_shapes", None) or {}
    if shapes.get("heads"):  # structured pruning: attention is heads x head size wide, not hidden wide
        counts = set(shapes["heads"])
        heads = counts.pop() if len(counts) == 1 else 0  # 0: blocks differ; the optimizer reads each block
        width = heads * (config.hidden_size // config.num_attention_heads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the optimizer logs every fusion at WARNING
        try:
            fused = optimize_model(onnx.load_from_string(onnx_bytes), model_type="bert",
                                   num_heads=heads, hidden_size=width,
                                   optimization_options=options, opt_level=0, use_gpu=False)
        finally:
            root.setLevel(level)
    counts = {op: n for op, n in fused.get_fused_operator_statistics().items() if n and op in FUSED_OPS}
    if not counts.get("Attention"):
        # Said, not silent: onnxruntime 1.30 fuses no attention in this export (1.32 does; 1.31 is untried), so
        # its graph runs unfused, slower at batch 1; nor does any version when pruning left unequal head counts.
        warnings.warn(f"quantize.fuse: ONNX Runtime {ort.__version__} fused no attention block of this model, so "
                      "batch-1 inference runs unfused and slower (bench/SPEED.md); onnxruntime 1.32.0, the pinned "
                      "version, fuses this export unless structured pruning left blocks with different head counts")
    graph = fused.model
    if not any(op.domain == "com.microsoft" for op in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    data = graph.SerializeToString()
    if _export_error(model, data) >= 1e-3:
        return onnx_bytes, {}
    return data, counts


@torch.no_grad()
def _export_error(model, data: bytes) -> float:
    """A trace can silently bake in a shape: the largest |logit difference| to torch on shapes other
    than the traced one, with a padded row."""
    session = ort_session(data, threads=1)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch, seq in ((1, 5), (3, 19)):
        ids = torch.randint(5, model.config.vocab_size, (batch, seq), generator=gen)
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[-1, seq // 2:] = 0
        ref = model(input_ids=ids, attention_mask=mask).logits.numpy()
        got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


# --------------------------------------------------------------------------- runtime
class OrtModel:
    """An ONNX Runtime session with the call interface of a HF sequence classifier.

    threads: ONNX Runtime intra-op threads; None follows torch.get_num_threads() at call time, so
    code that sets torch's thread count (measure_speed) gets the same count for this model too."""

    def __init__(self, onnx_bytes: bytes, config, threads: int | None = None, report: dict | None = None):
        self.onnx_bytes, self.config, self.threads = onnx_bytes, config, threads
        self.report = report or {}
        self._sessions = {}  # one per thread count: batch-1 and batch calls may run on different counts
        self.training = False

    @property
    def session(self):
        want = self.threads or torch.get_num_threads()
        if want not in self._sessions:
            self._sessions[want] = ort_session(self.onnx_bytes, want)
        return self._sessions[want]

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
        # Exported for single-text classification, where token types are all 0 (the model's default).
        if token_type_ids is not None and bool(torch.as_tensor(token_type_ids).any()):
            raise ValueError("this ONNX model was exported for single texts: token_type_ids must be all 0")
        ids = torch.as_tensor(input_ids).cpu().numpy().astype(np.int64, copy=False)
        mask = (np.ones_like(ids) if attention_mask is None
                else torch.as_tensor(attention_mask).cpu().numpy().astype(np.int64, copy=False))
        return SequenceClassifierOutput(logits=torch.from_numpy(self.run_arrays(ids, mask)))

    forward = __call__

    def run_arrays(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """int64 (batch, sequence) arrays -> logits array: the call without torch tensors in between."""
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    # torch-module shims: predict_logits calls eval() and reads the device from parameters();
    # no torch parameters means "CPU", which is where ONNX Runtime runs.
    def eval(self):
        return self

    def train(self, mode: bool = True):
        require(not mode, "an ONNX Runtime model is inference-only")
        return self

    def parameters(self, recurse: bool = True):
        return iter(())

    def to(self, device):
        require(torch.device(device).type == "cpu", "this ONNX model runs on CPU (CPUExecutionProvider)")
        return self

    def stored_params(self) -> dict:
        """Weight elements stored in the graph (INT8 / 4-bit ones counted as elements, like torch's
        packed weights); quantization scales / zero points and integer constants are not weights.
        The exporter stores identical tensors once (e.g. untrained LayerNorm weights): counted once."""
        graph = onnx.load_from_string(self.onnx_bytes).graph
        inits = {t.name: t for t in graph.initializer}
        zero_points = {name[: -len("_zero_point")]: numpy_helper.to_array(t)
                       for name, t in inits.items() if name.endswith("_zero_point")}
        total = nonzero = 0
        for name, tensor in inits.items():
            if name.endswith(("_scale", "_zero_point")) or tensor.data_type in (6, 7):  # int32/int64: shapes, ids
                continue
            values = numpy_helper.to_array(tensor)
            if values.ndim == 0:  # scalar constants of the graph (eps, sqrt(d), ...)
                continue
            if name.endswith(INT4_SUFFIX):  # two 4-bit values per byte; 8 is the zero point
                nibbles = np.stack([values & 15, values >> 4])
                total += nibbles.size
                nonzero += int((nibbles != 8).sum())
                continue
            zero = zero_points.get(name[: -len("_quantized")], 0) if name.endswith("_quantized") else 0
            zero = np.asarray(zero)
            if zero.ndim and (zero == zero.flat[0]).all():
                zero = zero.flat[0]
            elif zero.ndim:  # per-channel: along the last axis of that length (MatMul: output columns)
                axis = max(i for i, d in enumerate(values.shape) if d == zero.size)
                zero = zero.reshape([-1 if i == axis else 1 for i in range(values.ndim)])
            total += values.size
            nonzero += int((values != zero).sum())
        return {"params": total, "nonzero_params": nonzero}


def vocabulary_gather(onnx_bytes: bytes, vocab_size: int) -> str:
    """Name of the Gather node that looks up the word-embedding table (vocab_size rows, FP32)."""
    graph = onnx.load_from_string(onnx_bytes).graph
    tables = {t.name for t in graph.initializer if t.data_type == 1 and len(t.dims) == 2 and t.dims[0] == vocab_size}
    nodes = [n.name for n in graph.node if n.op_type == "Gather" and n.input[0] in tables]
    require(len(nodes) == 1, f"expected one word-embedding Gather over a {vocab_size}-row table in the ONNX graph, "
                             f"found {len(nodes)}")
    return nodes[0]


INT4_SUFFIX = "_int4"  # initializers holding two 4-bit values per byte (stored_params counts both)


def gather_to_int4(onnx_bytes: bytes, node_name: str, block_size: int = 32) -> bytes:
    """Replace one FP32 Gather (the embedding table) by ONNX Runtime's GatherBlockQuantized with 4-bit
    weights: symmetric, one FP16 scale per `block_size` values of a row, two values per byte.

    The table is most of a small model's bytes and only ever looked up (no matmul), so 4 bits cost
    little accuracy there; 0.5 + 16/block_size bits per value instead of 8."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    node = next(n for n in graph.node if n.name == node_name)
    init = next(t for t in graph.initializer if t.name == node.input[0])
    table = numpy_helper.to_array(init).astype(np.float32)
    rows, dim = table.shape
    require(dim % block_size == 0 and block_size >= 16 and block_size & (block_size - 1) == 0,
            f"embedding width {dim} is not a multiple of the 4-bit block size {block_size} (a power of 2, >= 16)")
    blocks = table.reshape(rows, dim // block_size, block_size)
    scales = (np.abs(blocks).max(axis=2) / 7.0).astype(np.float16)  # symmetric range [-7, 7]
    safe = np.where(scales == 0, 1.0, scales.astype(np.float32))[..., None]
    q = (np.clip(np.rint(blocks / safe), -7, 7).astype(np.int16) + 8).astype(np.uint8).reshape(rows, dim)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # low-order nibble first (op spec)

    base = init.name
    graph.initializer.remove(init)
    graph.initializer.extend([numpy_helper.from_array(packed, base + INT4_SUFFIX),
                              numpy_helper.from_array(scales, base + "_int4_scale")])
    half = node.output[0] + "_fp16"
    index = list(graph.node).index(node)
    graph.node.remove(node)
    # zero_points omitted: 8 for 4-bit data in uint8 (the op's default). FP16 scales give FP16 output.
    graph.node.insert(index, helper.make_node(
        "GatherBlockQuantized", [base + INT4_SUFFIX, node.input[1], base + "_int4_scale"], [half],
        name=node_name + "_int4", domain="com.microsoft", bits=4, block_size=block_size, gather_axis=0,
        quantize_axis=1))
    graph.node.insert(index + 1, helper.make_node("Cast", [half], [node.output[0]], name=node_name + "_to_fp32",
                                                  to=onnx.TensorProto.FLOAT))
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model.SerializeToString()


def float_weight_nodes(onnx_bytes: bytes) -> list[str]:
    """Nodes of the graph that still compute with FP32 weights (LayerNorm, unquantized MatMul /
    Gather); bias Adds are left out: biases stay FP32 in every INT8 scheme."""
    graph = onnx.load_from_string(onnx_bytes).graph
    floats = {t.name for t in graph.initializer if t.data_type == 1 and numpy_helper.to_array(t).size > 1}
    return sorted({node.name or node.op_type for node in graph.node
                   if node.op_type not in ("Add", "Sub", "Mul", "Div") and any(i in floats for i in node.input)})
