"""bench.over_seeds: the multi-seed summary the distillation, pruning and quantization tables print. Pure
arithmetic on hand-made per-run results, so each rule is checked exactly."""
import pytest

from bench.over_seeds import BENCHES, markdown, summarize


def _run(no_kd_test, kd_test, no_kd_val=0.80, kd_val=0.81):
    return {"rows": {"teacher": {"val_macro_f1": 0.85, "test_macro_f1": 0.83},
                     "no_kd": {"val_macro_f1": no_kd_val, "test_macro_f1": no_kd_test},
                     "kd_v2": {"val_macro_f1": kd_val, "test_macro_f1": kd_test},
                     "logit": {"val_macro_f1": kd_val, "test_macro_f1": kd_test, "alias_of": "kd_v2"}}}


def test_change_is_paired_within_each_run_and_judged_against_its_own_spread():
    # The split moves both rows by up to 0.03 between runs, but KD adds 0.010 ± 0.001 in each: a real effect
    # that an unpaired comparison (row std 0.015) would call noise.
    per_run = {"seed42": _run(0.78, 0.791), "seed43": _run(0.81, 0.819), "seed44": _run(0.79, 0.800)}
    s = summarize(BENCHES["distill"], per_run)
    assert "logit" not in s  # an alias is the same run under another name: not a second row
    assert s["kd_v2"]["test"]["mean"] == pytest.approx((0.791 + 0.819 + 0.800) / 3)
    assert s["kd_v2"]["test"]["std"] > 0.01
    assert s["kd_v2"]["test_change"]["mean"] == pytest.approx(0.010)
    assert s["kd_v2"]["test_change"]["values"] == pytest.approx([0.011, 0.009, 0.010])
    assert s["kd_v2"]["test_change"]["std"] == pytest.approx(0.001)
    assert s["kd_v2"]["test_change_outside_noise"] is True
    assert s["kd_v2"]["val_change"]["values"] == pytest.approx([0.01, 0.01, 0.01])  # 0 spread, same sign
    assert s["kd_v2"]["val_change_outside_noise"] is True
    assert "test_change" not in s["no_kd"]  # the reference row


def test_a_change_whose_runs_disagree_in_sign_is_noise():
    per_run = {"seed42": _run(0.80, 0.820), "seed43": _run(0.80, 0.795), "seed44": _run(0.80, 0.815)}
    s = summarize(BENCHES["distill"], per_run)
    assert s["kd_v2"]["test_change"]["mean"] > 0
    assert s["kd_v2"]["test_change_outside_noise"] is False
    # One run has no spread: never "outside noise".
    one = summarize(BENCHES["distill"], {"seed42": _run(0.80, 0.9)})
    assert one["kd_v2"]["test_change"]["std"] == 0.0 and one["kd_v2"]["test_change_outside_noise"] is False


def test_a_row_missing_from_a_run_is_summarised_over_the_runs_that_have_it():
    runs = {"a": _run(0.80, 0.81), "b": _run(0.80, 0.83), "c": _run(0.80, 0.82)}
    del runs["c"]["rows"]["kd_v2"]  # e.g. refused by the quantize stage in that run
    s = summarize(BENCHES["distill"], runs)
    assert s["kd_v2"]["runs"] == 2 and s["kd_v2"]["test"]["mean"] == pytest.approx(0.82)
    assert s["no_kd"]["runs"] == 3


def test_markdown_shows_mean_std_and_the_verdict():
    per_run = {"seed42": _run(0.78, 0.791), "seed43": _run(0.81, 0.819), "seed44": _run(0.79, 0.800)}
    result = {"command": "x", "runs": list(per_run), "seeds": [42, 43, 44],
              "summary": summarize(BENCHES["distill"], per_run), "per_run": per_run}

    class Stub:  # the single-run table is the benchmark's own markdown(); not under test here
        @staticmethod
        def markdown(out):
            return "(first run)"

    bench = BENCHES["distill"]
    BENCHES["distill"] = bench.__class__(Stub, bench.ref, bench.val, bench.test, bench.label)
    try:
        text = markdown("distill", result)
    finally:
        BENCHES["distill"] = bench
    row = next(line for line in text.splitlines() if line.startswith("| kd_v2 |"))
    assert "0.8033 ± 0.0143" in row and "+0.0100 ± 0.0010" in row and row.endswith("| **yes** / **yes** |")
    assert "(first run)" in text
