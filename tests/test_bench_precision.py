"""bench/bench_precision.py: both precisions start from the same saved model and see the same batches, so
they differ by precision only, and the table reads its numbers from the record."""
import math

import torch

from bench import bench_precision as bp
from conftest import TINY_ARCH, linear_output_dtypes
from test_pretrain import _cfg, _chains


def test_both_precisions_run_from_one_start_and_differ_by_precision_only(fresh_accelerate_state, monkeypatch):
    fresh_accelerate_state.setenv("ACCELERATE_USE_CPU", "1")
    seen = {}
    real = bp.pretrain_mlm

    def spy(cfg, **kwargs):
        with linear_output_dtypes() as dtypes:
            metrics = real(cfg, **kwargs)
        seen.setdefault(cfg["mixed_precision"], []).append((kwargs["teacher_cfg"]["model"], dtypes))
        return metrics

    monkeypatch.setattr(bp, "pretrain_mlm", spy)
    row = bp.time_shape(TINY_ARCH, _chains(), _chains(), _cfg(epochs=1), repeats=2, max_length=32, seed=0)
    assert set(seen) == {"fp32", "bf16"} and all(len(calls) == 2 for calls in seen.values())
    assert len({start for calls in seen.values() for start, _ in calls}) == 1  # one saved start for all calls
    assert all(dtypes == {torch.float32} for _, dtypes in seen["fp32"])
    assert all(dtypes == {torch.bfloat16} for _, dtypes in seen["bf16"])
    ppl = row["val_perplexity"]
    assert ppl["fp32"] != ppl["bf16"] and abs(math.log(ppl["fp32"] / ppl["bf16"])) < 0.05  # close, not equal
    assert row["fp32_over_bf16"] == row["median_seconds"]["fp32"] / row["median_seconds"]["bf16"] > 0
    table = bp.markdown({"machine": {"cpu": "X", "date": "D"}, "command": "c", "corpus_texts": 96, "texts": 96, "repeats": 2,
                         "cpu_bf16_flags": [], "shapes": {"tiny": row}})
    assert f"{row['fp32_over_bf16']:.2f}x" in table and "CPU bf16 flags: none" in table
