"""Pruning, quantization and measurement on tiny random-init models."""
import time

import numpy as np
import pytest
import torch

from banglacompress.data import Encoded
from banglacompress.artifact import count_stored_params, load_artifact, save_artifact
from banglacompress.models import build_model, count_params
from banglacompress.prune import apply_masks, prunable_layers, prune, sparsity_report
from banglacompress.measure import _interleaved, artifact_size, measure_speed
from banglacompress.quantize import QUANT_METHODS
from banglacompress.train import fit, label_loss, predict_logits
from conftest import TINY_ARCH, synthetic_frame

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}
FRAME = synthetic_frame("binary", n=200)
TEXTS, Y = FRAME.Comments.tolist(), FRAME[["HateSpeech"]].to_numpy(np.float32)


def _model(**arch):
    torch.manual_seed(0)
    return build_model("m", {"model": "scratch", "scratch": dict(TINY_ARCH, **arch)}, META, TEXTS, 32)


@pytest.mark.parametrize("granularity", ["global", "layer", "row"])
@pytest.mark.parametrize("scope", ["all", "attention", "ffn"])
def test_magnitude_hits_target_and_spares_head_and_embeddings(scope, granularity):
    model, _ = _model()
    emb = model.bert.embeddings.word_embeddings.weight.clone()
    head = model.classifier.weight.clone()
    masks = prune(model, "magnitude", 0.5, scope=scope, granularity=granularity)
    assert set(masks) == set(prunable_layers(model, scope))
    assert sparsity_report(model, masks)["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert torch.equal(emb, model.bert.embeddings.word_embeddings.weight)
    assert torch.equal(head, model.classifier.weight)


def test_global_magnitude_removes_the_smallest_weights():
    model, _ = _model()
    before = torch.cat([m.weight.detach().abs().flatten() for m in prunable_layers(model).values()])
    prune(model, "magnitude", 0.3)
    after = torch.cat([m.weight.detach().abs().flatten() for m in prunable_layers(model).values()])
    cut = torch.quantile(before, 0.3)
    assert (before[after == 0] <= cut + 1e-7).all() and (before[after != 0] >= cut - 1e-7).all()


def test_masks_survive_fine_tuning():
    model, tok = _model()
    masks = prune(model, "magnitude", 0.6)
    train, val = Encoded(tok, TEXTS[:150], Y[:150], 32), Encoded(tok, TEXTS[150:], None, 32)
    fit(model, train, val, Y[150:], task="binary", loss_fn=label_loss("binary", None), epochs=2, batch_size=16,
        lr=0.01, patience=0, after_step=lambda m: apply_masks(m, masks))
    assert sparsity_report(model, masks)["sparsity"] == pytest.approx(0.6, abs=0.01)
    # Without the masks re-applied the same training regrows the pruned weights.
    fit(model, train, val, Y[150:], task="binary", loss_fn=label_loss("binary", None), epochs=1, batch_size=16,
        lr=0.01, patience=0, select_best=False)
    assert sparsity_report(model, masks)["sparsity"] < 0.5


@pytest.mark.parametrize("method", QUANT_METHODS)
def test_quantized_artifact_round_trip(tmp_path, method):
    model, tok = _model(hidden=64, ffn=128)
    model.eval()
    quantized = QUANT_METHODS[method].quantize(model)
    info = {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5], "max_length": 32}
    save_artifact(tmp_path, method, quantized, tok, info)
    reloaded, tok2, info2 = load_artifact(tmp_path)
    ds = Encoded(tok2, TEXTS, None, 32)
    assert np.allclose(predict_logits(quantized, ds), predict_logits(reloaded, ds), atol=1e-6)
    assert info2["thresholds"] == [0.5]
    # Close to FP32 in absolute terms (agreement on a trained model is checked in test_quantize.py).
    assert np.abs(predict_logits(model, ds) - predict_logits(reloaded, ds)).max() < 0.05


def test_int8_params_and_size_count_packed_weights(tmp_path):
    model, tok = _model(hidden=64, ffn=128)
    dense = count_params(model)["params"]
    quantized = QUANT_METHODS["dynamic"].quantize(model)
    assert count_stored_params(quantized)["params"] == dense  # packed weights are not nn.Parameters
    assert sum(p.numel() for p in quantized.parameters()) < dense
    info = {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5]}
    save_artifact(tmp_path / "q", "dynamic", quantized, tok, info)
    save_artifact(tmp_path / "f", "none", model, tok, info)
    linear_bytes = sum(m.weight.numel() for m in prunable_layers(model).values())
    q, f = artifact_size(tmp_path / "q")["size_bytes"], artifact_size(tmp_path / "f")["size_bytes"]
    # INT8 saves ~3 bytes per encoder weight, no more: the packed weights are in the file.
    assert 2.5 * linear_bytes < f - q < 3.2 * linear_bytes


class _Sleepy:
    """A stand-in TextClassifier whose forward pass takes a known time: the measurement must attribute
    each model's own time to it, end to end and forward-only."""

    def __init__(self, seconds):
        self.seconds, self.info = seconds, {"task": "binary", "label_names": ["x"]}

    def encode(self, texts):
        return [[2, 5, 3] for _ in texts]

    def pad(self, ids):
        return np.asarray(ids), np.ones((len(ids), 3))

    def forward(self, ids, mask):
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:  # busy wait: sleep() may overshoot by a scheduler tick
            pass
        return np.zeros((len(ids), 1))

    def __call__(self, texts, batch_size=64):
        return self.forward(*self.pad(self.encode(texts))), None


def test_measure_speed_attributes_each_models_time_to_it():
    # 20 ms per call: on a loaded machine (two test workers on two cores) the busy wait can be descheduled for a
    # few ms, which at 4 ms per call was enough to look like the bug the throughput bounds catch (warm-up
    # calls counted).
    step = 0.02
    out = measure_speed({"slow": _Sleepy(step), "fast": _Sleepy(0.0)}, ["a"] * 20, threads=1, batch_size=5,
                        warmup=1)
    slow, fast = out["slow"], out["fast"]
    ms = 1000 * step
    assert ms <= slow["e2e_ms_p50"] < 2 * ms and fast["e2e_ms_p50"] < 1.0
    assert ms <= slow["latency_ms_p50"] < 2 * ms and fast["latency_ms_p50"] < 1.0
    assert slow["latency_ms_p50"] <= slow["latency_ms_p95"]
    # 20 texts in 4 batches of 5: 4 forward calls of `step` each -> at most 20 / (4 step) texts per second.
    assert 20 / (4 * step) * 0.5 < slow["throughput_per_s"] <= 20 / (4 * step)
    assert 20 / step * 0.5 < slow["e2e_throughput_b64"] <= 20 / step  # one call of 20 texts


def test_interleaving_randomises_the_order_and_times_every_model_warm():
    """The old fixed rotation made each model always follow the same model (quantized always after
    pruned): a model's number then depended on its neighbour. Here each model follows several different
    models, and every timed call comes right after an untimed call of the same model."""
    calls = []
    times = _interleaved(["a", "b", "c"], list(range(30)), lambda n, item: calls.append((n, item)),
                         np.random.default_rng(0), "test")
    assert all(len(v) == 30 for v in times.values())
    assert len(calls) == 2 * 3 * 30
    warm, timed = calls[0::2], calls[1::2]
    assert [w[0] for w in warm] == [t[0] for t in timed]  # the warm-up call is the same model
    assert all(w[1] == (t[1] - 1) % 30 for w, t in zip(warm, timed))  # ... on the previous item
    predecessors = {n: set() for n in "abc"}
    for i in range(30):
        order = [n for n, _ in timed[3 * i: 3 * i + 3]]
        for before, after in zip(order, order[1:]):
            predecessors[after].add(before)
    assert all(len(p) == 2 for p in predecessors.values()), predecessors
