"""Quantization formats on tiny models: every method round-trips through load_artifact, agrees with
FP32 on a trained model, is sized honestly; the final model directory and the predict command (ONNX models without torch)."""
import ast
import copy
import io
import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from bitsandbytes import functional as bnb_functional

from banglacompress.config import UserError
from banglacompress.data import Encoded, read_csv
from banglacompress.inference import TextClassifier
from banglacompress.artifact import count_stored_params, load_artifact, read_quant_record, save_artifact
from banglacompress.export import write_final
from banglacompress.measure import artifact_size
from banglacompress.models import build_model, count_params
from banglacompress.predict import main as predict_main
from banglacompress.runtime import OnnxClassifier
from banglacompress.onnx_format import OrtModel
from banglacompress.quantize import (FP16_FILE, INT4_FILE, OPTION_KEYS, QUANT_METHODS, activation_calibration,
                                     check_quantize_params, is_4bit)
from banglacompress.scoring import agreement, decide, macro_f1, probabilities
from banglacompress.train import fit, label_loss, predict_logits
from conftest import CUDA, ROOT, TINY_ARCH, run_stage, synthetic_frame, venv_env

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}
FRAME = synthetic_frame("binary", n=400, seed=1)
TEXTS, Y = FRAME.Comments.tolist(), FRAME[["HateSpeech"]].to_numpy(np.float32)
TRAIN, VAL, TEST = slice(0, 240), slice(240, 320), slice(320, 400)
INFO = {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5], "max_length": 32}
ARCH = dict(TINY_ARCH, hidden=64, ffn=128)

# Stated bounds: share of held-out decisions the reloaded artifact must share with FP32 (trained tiny
# model), and the largest macro-F1 change allowed. 4-bit weights are the lossiest.
MIN_AGREEMENT = {"none": 1.0, "onnx_fp32": 0.99, "fp16": 0.99, "dynamic": 0.97, "static": 0.97,
                 "onnx_int8": 0.97, "int4": 0.95}
MAX_F1_CHANGE = 0.05

CASES = [(m, {}) for m in QUANT_METHODS] + [
    ("dynamic", {"embeddings": True, "per_channel": True}), ("static", {"embeddings": True, "per_channel": False}),
    ("int4", {"embeddings": True}), ("onnx_int8", {"embeddings": False, "per_channel": True}),
    ("onnx_int8", {"embedding_bits": 4})]


def _build(**arch):
    torch.manual_seed(0)
    return build_model("m", {"model": "scratch", "scratch": dict(ARCH, **arch)}, META, TEXTS[TRAIN], 32)


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained for a few epochs on marker-word data (so decisions have real margins)."""
    model, tok = _build()
    fit(model, Encoded(tok, TEXTS[TRAIN], Y[TRAIN], 32), Encoded(tok, TEXTS[VAL], None, 32), Y[VAL], task="binary",
        loss_fn=label_loss("binary", None), epochs=4, batch_size=16, lr=0.003, patience=0)
    # fit leaves the model where accelerate trained it (a GPU when there is one); the formats are tested
    # on CPU, and the GPU tests move it there and back.
    return model.cpu().eval(), tok


def _quantize(method, model, tok, **opts):
    calib = activation_calibration(tok, TEXTS[TRAIN], 4, 16, 32) if QUANT_METHODS[method].calibrated else None
    return QUANT_METHODS[method].quantize(model, calib, **opts)


def _decisions(model, tok, rows=TEST):
    return decide("binary", probabilities("binary", predict_logits(model, Encoded(tok, TEXTS[rows], None, 32))), [0.5])


# --------------------------------------------------------------------------- round trip and agreement
@pytest.mark.parametrize("method,opts", CASES, ids=[f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
                                                     for m, o in CASES])
def test_round_trip_and_agreement_with_fp32(tmp_path, trained, method, opts):
    model, tok = trained
    ref = _decisions(model, tok)
    assert macro_f1("binary", Y[TEST], ref) > 0.9  # the model learned the task: agreement is meaningful
    quantized = _quantize(method, model, tok, **opts)
    save_artifact(tmp_path, method, quantized, tok, INFO)
    reloaded, tok2, info2 = load_artifact(tmp_path)
    test = Encoded(tok2, TEXTS[TEST], None, 32)
    assert np.allclose(predict_logits(quantized, test), predict_logits(reloaded, test), atol=1e-6)
    assert info2 == INFO
    got = _decisions(reloaded, tok2)
    assert agreement("binary", ref, got) >= MIN_AGREEMENT[method]
    assert abs(macro_f1("binary", Y[TEST], got) - macro_f1("binary", Y[TEST], ref)) <= MAX_F1_CHANGE
    if method != "none":
        record = read_quant_record(tmp_path)
        assert record["method"] == method and record["options"] == QUANT_METHODS[method].resolve(opts)
        assert set(record["files"]) | {"SHA256SUMS"} == {f.name for f in tmp_path.iterdir()}  # sums: written last


def test_static_quantizes_every_linear_and_lists_what_stays_fp32(tmp_path, trained):
    model, tok = trained
    save_artifact(tmp_path, "static", _quantize("static", model, tok), tok, INFO)
    fp32 = read_quant_record(tmp_path)["fp32_modules"]
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears and not set(linears) & set(fp32)
    assert "bert.embeddings.word_embeddings" in fp32 and any("LayerNorm" in n for n in fp32)
    save_artifact(tmp_path / "e", "static", _quantize("static", model, tok, embeddings=True), tok, INFO)
    assert "bert.embeddings.word_embeddings" not in read_quant_record(tmp_path / "e")["fp32_modules"]


def test_static_without_calibration_warns(trained):
    model, _ = trained
    with pytest.warns(UserWarning, match="calibrating on random token ids"):
        QUANT_METHODS["static"].quantize(model)


def test_onnx_lists_fp32_nodes_and_quantizes_the_embeddings(tmp_path, trained):
    model, tok = trained
    save_artifact(tmp_path / "q", "onnx_int8", _quantize("onnx_int8", model, tok), tok, INFO)
    save_artifact(tmp_path / "n", "onnx_int8", _quantize("onnx_int8", model, tok, embeddings=False), tok, INFO)
    with_emb, without = read_quant_record(tmp_path / "q")["fp32_modules"], read_quant_record(tmp_path / "n")["fp32_modules"]
    # The lookups are one fused EmbedLayerNormalization node (fuse=True): INT8 tables with embeddings, FP32 without.
    lookup = ("Gather", "EmbedLayerNormalization")
    assert with_emb and not any(k in n for n in with_emb for k in lookup)
    assert any(k in n for n in without for k in lookup)
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))  # word, position, type
    saved = artifact_size(tmp_path / "n")["size_bytes"] - artifact_size(tmp_path / "q")["size_bytes"]
    assert 2.5 * tables < saved < 3.05 * tables  # INT8 tables: ~3 of 4 bytes per embedding weight saved


def test_onnx_four_bit_embedding_table(tmp_path, trained):
    """embedding_bits=4: the word-embedding table is stored at 4 bits + one FP16 scale per 32 values."""
    model, tok = trained
    # Unfused, so the two graphs differ only in the table (fused, the 8-bit lookups are one node and the
    # 4-bit graph keeps separate ones: on a model this tiny the extra nodes outweigh the saved bytes).
    save_artifact(tmp_path / "8", "onnx_int8", _quantize("onnx_int8", model, tok, fuse=False), tok, INFO)
    save_artifact(tmp_path / "4", "onnx_int8", _quantize("onnx_int8", model, tok, embedding_bits=4, fuse=False),
                  tok, INFO)
    table = model.get_input_embeddings().weight.numel()
    saved = artifact_size(tmp_path / "8")["size_bytes"] - artifact_size(tmp_path / "4")["size_bytes"]
    assert 0.40 * table < saved < 0.45 * table  # 1 byte -> 0.5 + 2/32 bytes per value
    import onnx

    graph = onnx.load(tmp_path / "4" / "model.onnx").graph
    assert [n.op_type for n in graph.node].count("GatherBlockQuantized") == 1


def test_fp16_on_cpu_warns_and_computes_in_fp32(tmp_path, trained):
    model, tok = trained
    with pytest.warns(UserWarning, match="computed in FP32"):
        save_artifact(tmp_path, "fp16", QUANT_METHODS["fp16"].quantize(model), tok, INFO)
    with pytest.warns(UserWarning, match="computed in FP32"):
        reloaded, _, _ = load_artifact(tmp_path)
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    assert read_quant_record(tmp_path)["fp32_modules"] == []
    save_artifact(tmp_path / "f", "none", model, tok, INFO)
    ratio = (tmp_path / FP16_FILE).stat().st_size / (tmp_path / "f" / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.52


# --------------------------------------------------------------------------- size accounting
@pytest.mark.parametrize("method,opts", [("dynamic", {}), ("static", {}), ("int4", {}), ("onnx_int8", {}),
                                         ("onnx_int8", {"embedding_bits": 4})])
def test_stored_params_count_packed_weights(tmp_path, trained, method, opts):
    model, tok = trained
    dense = count_params(model)["params"]
    save_artifact(tmp_path, method, _quantize(method, model, tok, embeddings=True, **opts), tok, INFO)
    reloaded, _, _ = load_artifact(tmp_path)
    assert count_stored_params(reloaded)["params"] == dense
    if method.startswith("onnx"):  # no torch parameters at all: the graph file must hold packed weights:
        # FP32 would be 4 bytes per weight; INT8 is 1, plus FP32 biases, LayerNorms and node names (a tiny model)
        assert (tmp_path / "model.onnx").stat().st_size < 2 * dense
    else:
        assert sum(p.numel() for p in reloaded.parameters()) < dense  # packed weights are not (full) parameters


def test_int4_is_really_four_bits_on_disk(tmp_path):
    """NF4: two weights per byte plus block scales; larger layers use double-quantized scales."""
    model, tok = _build(ffn=1024)  # 64x1024 FFN layers: large enough for double quantization
    quantized = QUANT_METHODS["int4"].quantize(model)
    save_artifact(tmp_path / "q", "int4", quantized, tok, INFO)
    save_artifact(tmp_path / "f", "none", model, tok, INFO)
    record = read_quant_record(tmp_path / "q")
    ffn = [n for n in record["int4_modules"] if "intermediate" in n or "output.dense" in n]
    assert ffn and "classifier" not in record["int4_modules"] and "classifier" in record["fp32_modules"]
    assert 4.0 <= record["int4_bits_per_weight"] < 4.7
    # The bytes on disk: the safetensors file really holds uint8-packed weights, half a byte each.
    from safetensors import safe_open

    with safe_open(tmp_path / "q" / INT4_FILE, "pt") as f:
        for name in record["int4_modules"]:
            w = f.get_tensor(f"{name}.weight")
            assert w.dtype == torch.uint8 and w.numel() * 2 == model.get_submodule(name).weight.numel()
    four_bit = record["int4_weights"]
    saved = artifact_size(tmp_path / "f")["size_bytes"] - artifact_size(tmp_path / "q")["size_bytes"]
    assert 3.3 * four_bit < saved < 3.55 * four_bit  # 4 bytes -> ~0.55 bytes per 4-bit weight


def test_int4_runs_on_pruned_widths_and_computes_the_same_on_every_cpu(tmp_path):
    """A structurally pruned model has widths such as 48 (the default student's pruned attention). On a CPU with AVX-512-BF16,
    bitsandbytes repacks 4-bit weights for its own kernel on the first eval call, and that repacking fails
    unless out_features is a multiple of its block ("N must be divisible by block_n"): int4 crashed on the
    pruned default model there. Our shells take the dequantize path everywhere, so the reloaded model runs
    and computes the dequantized weights' product on any CPU."""
    model, tok = _build(hidden=96, heads=2, ffn=48)  # the FFN: 96 -> 48 (4,608 weights: over INT4_MIN_WEIGHTS)
    save_artifact(tmp_path, "int4", QUANT_METHODS["int4"].quantize(model), tok, INFO)
    reloaded, _, _ = load_artifact(tmp_path)
    layer = reloaded.get_submodule("bert.encoder.layer.0.intermediate.dense")
    assert is_4bit(layer) and layer.out_features == 48 and not layer.support_avx512bf16_for_cpu
    batch = tok(TEXTS[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = reloaded(**batch).logits  # the call that repacked and failed
        x = torch.randn(5, 96)
        expected = x @ bnb_functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float().T
        assert torch.allclose(layer(x), expected + layer.bias, atol=1e-4)
    assert torch.isfinite(logits).all()


# --------------------------------------------------------------------------- ONNX Runtime wrapper
def test_ort_model_has_the_torch_call_interface(trained):
    model, tok = trained
    ort_model = QUANT_METHODS["onnx_fp32"].quantize(model)
    assert isinstance(ort_model, OrtModel) and list(ort_model.parameters()) == [] and ort_model.eval() is ort_model
    batch = tok(TEXTS[:5], padding=True, return_tensors="pt")
    out = ort_model(**batch)  # token_type_ids (all 0) accepted
    assert torch.allclose(out.logits, model(**batch).logits, atol=1e-4)
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            ort_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            assert ort_model.session.get_session_options().intra_op_num_threads == n  # follows torch
        assert set(ort_model._sessions) == {1, 2}  # one session per count, kept: no rebuild when it switches
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="token_type_ids"):
        ort_model(input_ids=batch["input_ids"], token_type_ids=torch.ones_like(batch["input_ids"]))


# --------------------------------------------------------------------------- final model and predict
SUMMARY = {"task": "binary", "test_rows": 80, "threads": 2, "latency_samples": 20,
           "stages": {"teacher": {"macro_f1": 0.9123, "size_bytes": 4_000_000, "latency_ms_p50": 8.0,
                                  "compression": 1.0, "speedup": 1.0},
                      "quantized": {"macro_f1": 0.9012, "size_bytes": 250_000, "latency_ms_p50": 1.0,
                                    "compression": 16.0, "speedup": 8.0, "agreement_with_teacher": 0.97}}}
FINAL_FORMATS = ["none", "dynamic", "static", "fp16", "int4", "onnx_int8"]


def _final(tmp_path, trained, method):
    model, tok = trained
    save_artifact(tmp_path / "q", method, _quantize(method, model, tok), tok, INFO)
    write_final(tmp_path / "q", tmp_path / "final", summary=SUMMARY, data={"splits": {"test": {"rows": 80}}},
                dataset="synthetic.csv")
    return tmp_path / "final"


def _run_predict(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = predict_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", FINAL_FORMATS)
def test_final_model_loads_and_predict_matches_it(tmp_path, trained, capsys, method):
    final = _final(tmp_path, trained, method)
    card = (final / "README.md").read_text(encoding="utf-8")
    assert "0.9012" in card and "16.0×" in card and "load_artifact" in card and "banglacompress.predict" in card
    assert ("requirements-runtime.txt" in card) == (method == "onnx_int8")  # the torch-free deploy, ONNX only
    model, tok, info = load_artifact(final)
    texts = TEXTS[TEST][:10]
    probs = probabilities("binary", predict_logits(model, Encoded(tok, texts, None, 32)))[:, 0]
    code, out, _ = _run_predict(["--model", str(final), "--format", "jsonl", *texts], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == texts
    assert np.allclose([r["prob_HateSpeech"] for r in rows], probs, atol=1e-5)
    assert [r["HateSpeech"] for r in rows] == [int(p >= info["thresholds"][0]) for p in probs]


def test_predict_csv_column_to_csv_and_jsonl(tmp_path, trained, capsys):
    final = _final(tmp_path, trained, "onnx_int8")
    texts = TEXTS[TEST][:7] + ["", "hello world, this is English", "  ", "১২৩ !!!", "😀"]
    pd.DataFrame({"id": range(len(texts)), "Comments": texts}).to_csv(tmp_path / "in.csv", index=False)
    code, out, err = _run_predict(["--model", str(final), "--csv", str(tmp_path / "in.csv"), "--column", "Comments",
                                   "--batch-size", "4"], capsys)
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert list(df.columns) == ["text", "HateSpeech", "prob_HateSpeech"] and len(df) == len(texts)
    assert set(df.HateSpeech) <= {0, 1} and df.prob_HateSpeech.between(0, 1).all()
    code, _, _ = _run_predict(["--model", str(final), "--csv", str(tmp_path / "in.csv"), "--column", "Comments",
                               "--format", "jsonl", "-o", str(tmp_path / "out.jsonl")], capsys)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert code == 0 and len(rows) == len(texts) and rows[-1]["text"] == "😀"
    # Different batch sizes: dynamic INT8 quantizes activations with one scale per batch, so the
    # batch's other rows move probabilities slightly (not decisions, here).
    assert np.allclose([r["prob_HateSpeech"] for r in rows], df.prob_HateSpeech, atol=2e-3)


def test_predict_reads_stdin(tmp_path, trained, capsys, monkeypatch):
    final = _final(tmp_path, trained, "dynamic")
    code, out, _ = _run_predict(["--model", str(final)], capsys, stdin="আমি ভালো\n\nplain latin\n",
                                monkeypatch=monkeypatch)
    assert code == 0 and len(pd.read_csv(io.StringIO(out), keep_default_na=False)) == 3


@pytest.mark.parametrize("argv,message", [
    (["--model", "{tmp}/missing", "text"], "model directory {tmp}/missing not found"),
    (["--model", "{final}", "--csv", "{tmp}/nope.csv", "--column", "x"], "nope.csv not found"),
    (["--model", "{final}", "--csv", "{tmp}/in.csv", "--column", "body"], "has no column 'body'"),
    (["--model", "{final}", "--csv", "{tmp}/in.csv"], "choose one with --column"),
    (["--model", "{final}", "--csv", "{tmp}/latin1.csv", "--column", "a"], "is not UTF-8"),
    (["--model", "{final}", "--batch-size", "0", "x"], "--batch-size must be at least 1"),
])
def test_predict_bad_input_is_one_line_and_exit_2(tmp_path, trained, capsys, argv, message):
    final = _final(tmp_path, trained, "none")
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "latin1.csv").write_bytes("a\ncaf\xe9\n".encode("latin-1"))
    fill = {"tmp": str(tmp_path), "final": str(final)}
    code, out, err = _run_predict([a.format(**fill) for a in argv], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: predict: ") and message.format(**fill) in err


def test_predict_module_entry_point_exit_code(tmp_path):
    """`python -m banglacompress.predict` exits 2 with one line when the model directory is missing."""
    proc = subprocess.run([sys.executable, "-m", "banglacompress.predict", "--model", str(tmp_path / "nope"), "x"],
                          cwd=ROOT, env=venv_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr


# --------------------------------------------------------------------------- predict without torch (ONNX)
# Every package of the training stack, which labelling an ONNX model must not need.
TRAINING_STACK = ("torch", "transformers", "sklearn", "pandas", "onnx", "accelerate", "dvclive", "bitsandbytes")
BLOCKER = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Block())
sys.argv = ["predict", *{argv!r}]
runpy.run_module("banglacompress.predict", run_name="__main__")
"""


def _predict_without(argv, blocked=TRAINING_STACK):
    """`python -m banglacompress.predict ARGV` in a process where importing `blocked` fails."""
    code = BLOCKER.format(blocked=set(blocked), argv=list(argv))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=venv_env(), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("method", ["onnx_int8", "onnx_fp32"])
def test_predict_labels_an_onnx_model_with_the_training_stack_blocked(tmp_path, trained, method):
    """predict on an ONNX model, in a process where importing torch, transformers, scikit-learn, pandas or onnx
    fails, writes the rows that load_artifact + TextClassifier (what evaluate times) give."""
    final = _final(tmp_path, trained, method)
    texts = TEXTS[TEST][:9] + ["", "  কী   খবর ", "x" * 400]
    proc = _predict_without(["--model", str(final), "--format", "jsonl", "--threads", "1", *texts])
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    probs, decisions = TextClassifier(*load_artifact(final, threads=1))(texts)
    assert [r["text"] for r in got] == texts and [r["HateSpeech"] for r in got] == decisions[:, 0].tolist()
    assert np.allclose([r["prob_HateSpeech"] for r in got], probs[:, 0], atol=1e-6)


def test_the_blocker_fails_a_run_that_imports_what_it_blocks(tmp_path, trained):
    """The check above can fail: blocking a package the ONNX path does import (onnxruntime) stops the run."""
    final = _final(tmp_path, trained, "onnx_int8")
    proc = _predict_without(["--model", str(final), "x"], blocked=("onnxruntime",))
    assert proc.returncode != 0 and "onnxruntime is blocked" in proc.stderr


@pytest.mark.parametrize("method", ["none", "dynamic"])
def test_a_torch_format_without_the_training_stack_is_one_line_naming_what_to_install(tmp_path, trained, method):
    final = _final(tmp_path, trained, method)
    proc = _predict_without(["--model", str(final), "একটি মন্তব্য"])
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: predict: {final} holds a '{method}' model") and \
        "pip install -r requirements.txt" in proc.stderr and "onnx_int8" in proc.stderr


@pytest.mark.parametrize("method", ["onnx_int8", "onnx_fp32"])
def test_onnx_classifier_is_text_classifier(tmp_path, trained, method):
    """The ONNX path predict takes (OnnxClassifier) and the one evaluate times (TextClassifier on load_artifact)
    give the same ids, logits and decisions, one text or many, in any batch size."""
    final = _final(tmp_path, trained, method)
    lite, full = OnnxClassifier(final, threads=1), TextClassifier(*load_artifact(final, threads=1))
    texts = TEXTS[TEST] + ["", "  কী   খবর ", "x" * 400, float("nan")]
    assert lite.encode(texts) == full.encode(texts) and lite.pad_id == full.pad_id
    for batch_size in (1, 7, 64):
        assert np.array_equal(lite.logits(texts, batch_size), full.logits(texts, batch_size))
    assert np.array_equal(lite(texts)[1], full(texts)[1])
    assert lite([])[0].shape == (0, 1)
    with pytest.raises(UserError, match="holds a 'none' model, not an ONNX one"):
        OnnxClassifier(_final(tmp_path / "fp32", trained, "none"))


def test_predict_reads_a_csv_column_as_pandas_does(tmp_path, trained, capsys):
    """predict's stdlib CSV reader: a BOM, quoted commas and newlines, empty cells, as pandas reads them."""
    final = _final(tmp_path, trained, "onnx_int8")
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "Comments": ["আমি, তুমি", "দুই\nলাইন", "", "\"উদ্ধৃতি\""]})
    frame.to_csv(tmp_path / "in.csv", index=False, encoding="utf-8-sig")
    code, out, err = _run_predict(["--model", str(final), "--csv", str(tmp_path / "in.csv"), "--column", "Comments",
                                   "--format", "jsonl"], capsys)
    assert code == 0, err
    want = read_csv(tmp_path / "in.csv", keep_empty=True)["Comments"].tolist()
    assert [json.loads(line)["text"] for line in out.splitlines()] == want == frame.Comments.tolist()


# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml"}


def _imports(path) -> tuple[set[str], set[str]]:
    """(third-party top-level packages, package-relative modules) a file imports at module level."""
    third, package = set(), set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            third.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            (package if node.level == 1 else third).add(node.module.split(".")[0])
    return {m for m in third if m not in sys.stdlib_module_names and m != "__future__"}, package


def _pins(path) -> dict:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def test_requirements_runtime_covers_predicts_onnx_path_and_pins_what_requirements_pins():
    """requirements-runtime.txt names every package that predict's module-level imports need, at any depth in
    the package (and no more), at the versions requirements.txt pins."""
    package, todo, seen, needed = ROOT / "banglacompress", ["predict"], set(), set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            third, local = _imports(package / f"{module}.py")
            needed |= {DISTRIBUTIONS.get(m, m) for m in third}
            todo += sorted(local)
    assert seen == {"predict", "runtime", "config", "integrity"}
    runtime_pins, all_pins = _pins(ROOT / "requirements-runtime.txt"), _pins(ROOT / "requirements.txt")
    assert set(runtime_pins) == needed
    assert all(all_pins[name] == version for name, version in runtime_pins.items())


def test_export_stage_writes_final_model(repo, trained):
    model, tok = trained
    save_artifact(repo / "models" / "quantized", "onnx_int8", _quantize("onnx_int8", model, tok), tok, INFO)
    proc = run_stage(repo, "export")
    assert proc.returncode == 2 and "metrics/summary.json not found" in proc.stderr  # evaluate has not run
    (repo / "metrics").mkdir()
    (repo / "metrics" / "summary.json").write_text(json.dumps(SUMMARY))
    proc = run_stage(repo, "export")
    assert proc.returncode == 0, proc.stderr
    assert (repo / "models" / "final" / "README.md").exists() and (repo / "models" / "final" / "model.onnx").exists()
    assert json.loads((repo / "metrics" / "export.json").read_text())["method"] == "onnx_int8"


# --------------------------------------------------------------------------- GPU paths
@CUDA
def test_fp16_runs_in_half_on_cuda(tmp_path, trained):
    model, tok = trained
    gpu = QUANT_METHODS["fp16"].quantize(model.to("cuda"))
    model.to("cpu")
    assert next(gpu.parameters()).dtype == torch.float16
    save_artifact(tmp_path, "fp16", gpu, tok, INFO)
    reloaded, _, _ = load_artifact(tmp_path, device="cuda")
    assert next(reloaded.parameters()).dtype == torch.float16 and next(reloaded.parameters()).is_cuda
    test = Encoded(tok, TEXTS[TEST], None, 32)
    assert np.allclose(predict_logits(gpu, test), predict_logits(reloaded, test), atol=1e-3)
    assert agreement("binary", _decisions(model, tok), _decisions(reloaded, tok)) >= MIN_AGREEMENT["fp16"]


@CUDA
def test_int4_round_trip_on_cuda(tmp_path, trained):
    model, tok = trained
    gpu = QUANT_METHODS["int4"].quantize(model.to("cuda"), embeddings=True)
    model.to("cpu")
    save_artifact(tmp_path, "int4", gpu, tok, INFO)
    reloaded, _, _ = load_artifact(tmp_path, device="cuda")
    assert next(reloaded.parameters()).is_cuda
    test = Encoded(tok, TEXTS[TEST], None, 32)
    assert np.allclose(predict_logits(gpu, test), predict_logits(reloaded, test), atol=1e-5)
    assert agreement("binary", _decisions(model, tok), _decisions(reloaded, tok)) >= MIN_AGREEMENT["int4"]


@CUDA
@pytest.mark.parametrize("method", ["dynamic", "static", "onnx_int8"])
def test_a_cpu_format_is_made_from_a_cpu_copy_of_a_model_on_cuda(trained, method):
    """Where fit() leaves a model on the GPU, a CPU-only format (cpu_only in its spec) quantizes a CPU
    copy: the same decisions as from the CPU model, and the input stays on the GPU."""
    model, tok = trained
    on_cpu = _decisions(_quantize(method, model, tok), tok)
    try:
        from_gpu = _quantize(method, model.to("cuda"), tok)
        assert next(model.parameters()).is_cuda
    finally:
        model.to("cpu")
    assert QUANT_METHODS[method].cpu_only
    assert np.array_equal(_decisions(from_gpu, tok), on_cpu)


def test_an_option_the_method_does_not_take_is_an_error_that_names_it(trained):
    """Options are derived from the methods: a misplaced one (embedding_bits is onnx_int8's) stops the stage."""
    model, tok = trained
    with pytest.raises(UserError, match=r"quantize.embedding_bits=4 is set, but quantize.method=dynamic does not "
                                        r"take it \(it takes: per_channel, embeddings\)"):
        QUANT_METHODS["dynamic"].quantize(model, None, name="dynamic", embedding_bits=4)
    check_quantize_params({"method": "onnx_int8", "embedding_bits": 4, "per_channel": None})
    with pytest.raises(UserError, match="quantize.embedding_bits=5 must be one of 4, 8 or null"):
        check_quantize_params({"method": "onnx_int8", "embedding_bits": 5})
    assert set(OPTION_KEYS) == {"per_channel", "embeddings", "embedding_bits", "fuse", "threads"}
    with pytest.raises(UserError, match=r"quantize.fuse=True is set, but quantize.method=dynamic does not take it"):
        QUANT_METHODS["dynamic"].quantize(model, None, name="dynamic", fuse=True)


@pytest.mark.parametrize("victim", ["model.onnx", "tokenizer.json"])
def test_a_corrupt_file_is_one_line_naming_it_and_the_fix(tmp_path, trained, capsys, victim):
    """A truncated models/final/model.onnx used to give predict an ONNX Runtime protobuf traceback."""
    final = _final(tmp_path, trained, "onnx_int8")
    path = final / victim
    path.write_bytes(path.read_bytes()[:1000])
    code, out, err = _run_predict(["--model", str(final), "একটি মন্তব্য"], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: predict: {path} is corrupt or truncated (its sha256 differs from SHA256SUMS): restore it with "
        f"`dvc checkout {final}` (or `dvc pull {final}` if the cache lacks it), or rerun the stage that writes it"]
    with pytest.raises(UserError, match="is corrupt or truncated"):
        load_artifact(final)
    path.unlink()
    with pytest.raises(UserError, match=f"{path} is missing"):
        load_artifact(final)


# --------------------------------------------------------------------------- graph fusion and the inference path
@pytest.mark.parametrize("pruned", [False, True])
def test_fusion_makes_one_node_per_attention_block_and_keeps_the_logits(trained, pruned):
    """ONNX Runtime's transformer optimizer fuses each block's attention into one node (also after
    structured pruning removed heads, when every block keeps the same count), and the fused graph
    computes what torch does; fuse=False keeps the exported graph."""
    from banglacompress.prune import start_pruning
    model, tok = trained
    if pruned:
        model = copy.deepcopy(model)
        start_pruning(model, "structured", 0.5, importance="weight")
    fused = QUANT_METHODS["onnx_fp32"].quantize(model)
    plain = QUANT_METHODS["onnx_fp32"].quantize(model, fuse=False)
    blocks = model.config.num_hidden_layers
    assert fused.report["fused_ops"]["Attention"] == blocks
    assert fused.report["fused_ops"]["SkipLayerNormalization"] == 2 * blocks
    nodes = lambda m: len(onnx.load_from_string(m.onnx_bytes).graph.node)  # noqa: E731
    assert nodes(fused) < 0.6 * nodes(plain) and plain.report["fused_ops"] == {}
    batch = tok(TEXTS[TEST], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**batch).logits
    assert torch.allclose(fused(**batch).logits, want, atol=1e-4)


def test_attention_left_unfused_is_said(trained, monkeypatch):
    """An onnxruntime that fuses no attention here (1.30 did not: it ran unfused and slower, silently)
    gets a warning naming its version; the pinned one fuses every block and says nothing."""
    from banglacompress import onnx_format
    model, _ = trained
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fused = QUANT_METHODS["onnx_fp32"].quantize(model).report["fused_ops"]
    assert fused["Attention"] == model.config.num_hidden_layers
    assert not [w for w in seen if "fused no attention" in str(w.message)]

    class NoAttentionFusion(onnx_format.FusionOptions):
        def __init__(self, model_type):
            super().__init__(model_type)
            self.enable_attention = False

    monkeypatch.setattr(onnx_format, "FusionOptions", NoAttentionFusion)
    with pytest.warns(UserWarning, match=r"ONNX Runtime \S+ fused no attention block of this model"):
        out = QUANT_METHODS["onnx_fp32"].quantize(model)
    assert "Attention" not in out.report["fused_ops"]


def test_a_wrong_fusion_is_not_kept(trained, monkeypatch):
    """fuse_graph checks the fused graph against torch: a fusion that changes the logits is dropped."""
    from banglacompress import onnx_format
    model, _ = trained
    real = onnx_format._export_error
    calls = []

    def wrong_after_fusion(m, data):
        calls.append(1)
        return real(m, data) if len(calls) == 1 else 1.0  # the export is fine; the fused graph is "wrong"

    monkeypatch.setattr(onnx_format, "_export_error", wrong_after_fusion)
    out = QUANT_METHODS["onnx_fp32"].quantize(model)
    assert out.report["fused_ops"] == {} and len(calls) == 2


@pytest.mark.parametrize("method", ["none", "onnx_int8"])
def test_text_classifier_is_what_scoring_and_the_tokenizer_give(trained, tmp_path, method):
    """The inference path predict runs and evaluate times: the Rust tokenizer called directly gives the
    same ids as the transformers tokenizer, and the decisions are score_split's, one text or many."""
    from banglacompress.train import score_split
    model, tok = trained
    save_artifact(tmp_path, method, _quantize(method, model, tok), tok, INFO)
    loaded, tok2, info = load_artifact(tmp_path)
    classify = TextClassifier(loaded, tok2, info)
    texts = TEXTS[TEST] + ["", "  কী   খবর ", "x" * 400, float("nan")]
    assert classify.encode(texts[:-1]) == tok2([t if isinstance(t, str) else "" for t in
                                                [" ".join(t.split()) for t in texts[:-1]]],
                                               truncation=True, max_length=32)["input_ids"]
    probs, decisions = classify(texts, batch_size=7)
    _, want, want_probs = score_split(loaded, tok2, info, TEXTS[TEST], Y[TEST], 32)
    assert np.array_equal(decisions[: len(want)], want)
    # Dynamic INT8 scales activations per batch: other batches, slightly other probabilities (same decisions).
    assert np.allclose(probs[: len(want)], want_probs, atol=1e-5 if method == "none" else 2e-3)
    one = [classify([t])[1][0] for t in TEXTS[TEST][:10]]
    assert np.array_equal(np.stack(one), want[:10])
    assert classify([])[0].shape == (0, 1)
