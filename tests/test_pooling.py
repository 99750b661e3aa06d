"""teacher.pooling / student.pooling: cls, mean or max. The pooled vector must be what the head sees,
padding must not change it, and the choice must survive every way a model leaves this package:
save / reload, structured pruning, each quantized format and the ONNX export."""
import copy
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from banglacompress.config import UserError
from banglacompress.distill import build_student
from banglacompress.artifact import load_artifact, save_artifact
from banglacompress.models import SCRATCH_FAMILIES, build_model, from_pretrained_pruned, load_model_dir, save_model_dir
from banglacompress.pooling import POOLINGS, masked_max, masked_mean, pooling_of, set_pooling
from banglacompress.onnx_format import export_onnx
from banglacompress.prune import start_pruning
from banglacompress.quantize import QUANT_METHODS, activation_calibration
from conftest import TINY_ARCH, synthetic_frame

torch.set_num_threads(1)

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}
TEXTS = synthetic_frame("binary", n=120).Comments.tolist()
INFO = {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5], "max_length": 32}


def _model(pooling="mean", family="bert"):
    torch.manual_seed(0)
    model, tok = build_model("teacher", {"model": "scratch", "scratch": dict(TINY_ARCH, family=family),
                                         "pooling": pooling}, META, TEXTS, 32)
    return model.eval(), tok


def _batch(tok, texts=TEXTS[:6]):
    return dict(tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt"))


@torch.no_grad()
def _logits(model, batch):
    return model(**batch).logits


def test_reducers_ignore_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(masked_mean(hidden, mask), torch.tensor([[2.0, -1.0]]))
    assert torch.equal(masked_max(hidden, mask), torch.tensor([[3.0, 2.0]]))


@torch.no_grad()
def test_mean_pooling_is_what_the_bert_head_sees():
    model, tok = _model("mean")
    batch = _batch(tok)
    hidden = model.bert(**batch).last_hidden_state  # the hook already replaced position 0 ...
    set_pooling(model, "cls")
    plain = model.bert(**batch).last_hidden_state  # ... so compare against the unhooked encoder
    expected = masked_mean(plain, batch["attention_mask"])
    assert torch.allclose(hidden[:, 0], expected, atol=1e-6)
    set_pooling(model, "mean")
    by_hand = model.classifier(model.bert.pooler(expected[:, None, :]))
    assert torch.allclose(_logits(model, batch), by_hand, atol=1e-6)


@pytest.mark.parametrize("family", SCRATCH_FAMILIES)
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooling_changes_the_head_input_but_not_with_padding(family, pooling):
    model, tok = _model(pooling, family)
    batch = _batch(tok)
    pooled = _logits(model, batch)
    lengths = batch["attention_mask"].sum(1)
    shortest = int(lengths.argmin())
    alone = {k: v[shortest:shortest + 1, :int(lengths[shortest])] for k, v in batch.items()}
    assert lengths.min() < lengths.max(), "the batch needs padding for this test to mean anything"
    assert torch.allclose(_logits(model, alone), pooled[shortest:shortest + 1], atol=1e-5)
    set_pooling(model, "cls")
    assert not torch.allclose(_logits(model, batch), pooled, atol=1e-4)


@pytest.mark.parametrize("family", SCRATCH_FAMILIES)
def test_pooling_survives_save_and_reload(tmp_path, family):
    model, tok = _model("mean", family)
    batch = _batch(tok)
    save_model_dir(tmp_path, model, tok, INFO)
    assert json.loads((tmp_path / "config.json").read_text())["pooling"] == "mean"
    reloaded, _, _ = load_model_dir(tmp_path)
    assert pooling_of(reloaded) == "mean"
    assert torch.allclose(_logits(model, batch), _logits(reloaded, batch), atol=1e-6)
    # The documented limit: the bare Auto class does not know the key and pools the first token.
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not torch.allclose(_logits(plain, batch), _logits(model, batch), atol=1e-4)


def test_set_pooling_is_idempotent_and_deepcopy_keeps_it():
    model, tok = _model("mean")
    batch = _batch(tok)
    once = _logits(model, batch)
    set_pooling(model, "mean")  # a second hook would pool the pooled vector again
    assert torch.allclose(_logits(model, batch), once, atol=1e-6)
    assert torch.allclose(_logits(copy.deepcopy(model), batch), once, atol=1e-6)


def test_bad_pooling_is_a_user_error():
    with pytest.raises(UserError, match="teacher.pooling"):
        _model("attention")


def test_onnx_export_pools_like_torch():
    model, tok = _model("mean")
    batch = _batch(tok)
    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in batch.items() if k in ("input_ids", "attention_mask")})[0]
    assert np.allclose(got, _logits(model, batch).numpy(), atol=1e-4)


def test_structured_pruned_model_reloads_with_its_pooling(tmp_path):
    model, tok = _model("max")
    start_pruning(model, "structured", 0.5, importance="weight")
    batch = _batch(tok)
    save_model_dir(tmp_path, model, tok, INFO)
    reloaded = from_pretrained_pruned(tmp_path)
    assert pooling_of(reloaded) == "max"
    assert torch.allclose(_logits(model.eval(), batch), _logits(reloaded, batch), atol=1e-6)


@pytest.mark.parametrize("method", QUANT_METHODS)
def test_quantized_artifacts_keep_the_pooling(tmp_path, method):
    model, tok = _model("mean")
    calib = activation_calibration(tok, TEXTS, 2, 16, 32) if QUANT_METHODS[method].calibrated else None
    quantized = QUANT_METHODS[method].quantize(model, calib)
    save_artifact(tmp_path, method, quantized, tok, INFO)
    reloaded, _, _ = load_artifact(tmp_path)
    batch = _batch(tok)
    assert torch.allclose(torch.as_tensor(_logits(quantized, batch)), torch.as_tensor(_logits(reloaded, batch)),
                          atol=1e-5)
    # Quantization error is far smaller than the change pooling makes (~50x for this model): the
    # reloaded artifact is near the mean-pooled FP32 model and far from the same weights pooling cls.
    got = torch.as_tensor(_logits(reloaded, batch))
    to_mean = (got - _logits(model, batch)).abs().max()
    to_cls = (got - _logits(set_pooling(copy.deepcopy(model), "cls"), batch)).abs().max()
    assert to_mean < 0.2 * to_cls, (float(to_mean), float(to_cls))


@pytest.mark.parametrize("student_pooling,expected", [(None, "mean"), ("teacher", "mean"), ("cls", "cls"),
                                                       ("max", "max")])
@pytest.mark.parametrize("start", ["scratch", "from_teacher"])
def test_student_inherits_or_overrides_the_teacher_pooling(student_pooling, expected, start):
    teacher, tok = _model("mean")
    cfg = {"model": start, "scratch": dict(TINY_ARCH, layers=1), "tokenizer": "teacher"}
    if student_pooling:
        cfg["pooling"] = student_pooling
    student, _, info = build_student(cfg, META, TEXTS, 32, teacher, tok)
    assert pooling_of(student) == info["student_pooling"] == expected
    batch = _batch(tok)
    hooked = _logits(student.eval(), batch)
    set_pooling(student, "cls")
    assert torch.allclose(_logits(student, batch), hooked, atol=1e-6) == (expected == "cls")


def test_student_pooling_rejects_unknown_names():
    teacher, tok = _model("cls")
    with pytest.raises(UserError, match="student.pooling"):
        build_student({"model": "scratch", "scratch": TINY_ARCH, "pooling": "sum"}, META, TEXTS, 32, teacher, tok)


def test_every_pooling_is_tested():
    assert set(POOLINGS) == {"cls", "mean", "max"}
