"""bench/compare_bench.py: a benchmark variant against the default, paired by dataset and seed, on hand-made
run records where every number is known."""
import json

import pytest

from bench import compare_bench, run_bench


def _run(seed, val_teacher, val_final, test_final, pretrain=700.0, test_rows=100):
    stages = {s: {"seconds": 10.0} for s in run_bench.PIPELINE}
    stages["pretrain"] = {"seconds": pretrain}
    rows = {"teacher": {"macro_f1": val_teacher - 0.01}, "tfidf_logreg": {"macro_f1": 0.8},
            "final": {"macro_f1": test_final, "size_bytes": 1000, "e2e_ms_p50": 1.5}}
    return {"seed": seed, "cpu": "Intel", "val": {"teacher": val_teacher, "final": val_final}, "stages": stages,
            "result": {"test_rows": test_rows, "rows": rows}}


def _save(path, runs, overrides=None):
    path.write_text(json.dumps({"command": "x", "overrides": overrides or {}, "machine": {"cpu": "c"},
                                "datasets": {"cyberbully": {"runs": runs}}}))
    return path


def test_changes_are_paired_by_seed_and_judged_against_their_noise(tmp_path):
    # base in one file, the variant a seed per file (as run one at a time): val_final +0.010 +0.012 +0.011
    base = _save(tmp_path / "b.json", [_run(s, 0.78, 0.77, 0.76) for s in (42, 43, 44)])
    new = [_save(tmp_path / f"n{s}.json", [_run(s, 0.79, 0.77 + d, 0.75, pretrain=720.0)], {"teacher.lr": 1})
           for s, d in ((43, 0.012), (42, 0.010), (44, 0.011))]
    (b, _), (n, headers) = compare_bench.load_runs([base]), compare_bench.load_runs(new)
    table = compare_bench.compare(b, n)["cyberbully"]
    assert table["seeds"] == [42, 43, 44]
    s = table["summary"]
    assert s["val_final"]["change"]["values"] == pytest.approx([0.010, 0.012, 0.011])
    assert s["val_final"]["change"]["mean"] == pytest.approx(0.011) and s["val_final"]["outside_noise"]
    assert s["test_final"]["change"]["mean"] == pytest.approx(-0.01) and s["test_final"]["outside_noise"]
    assert not s["final_size_bytes"]["outside_noise"]  # no change at all is not a result
    # the goal's gap is taken within each run (TF-IDF 0.80 in every run here): -0.04 before, -0.05 after
    assert s["test_final_minus_tfidf"]["base"]["mean"] == pytest.approx(-0.04)
    assert s["test_final_minus_tfidf"]["new"]["values"] == pytest.approx([-0.05] * 3)
    assert s["seconds_pretrain"]["change"]["mean"] == pytest.approx(20.0)
    assert s["seconds_pipeline"]["base"]["mean"] == pytest.approx(700.0 + 10.0 * (len(run_bench.PIPELINE) - 1))
    text = compare_bench.render({"command": "c", "base": [{"file": "b.json", "overrides": {}}], "new": headers,
                                 "datasets": {"cyberbully": table}})
    assert "- **new**: `teacher.lr=1`" in text and "| 42 | 0.7800 → 0.7900 (+0.0100) | 0.7700 → 0.7800 (+0.0100) |" in text
    assert "| val_final | 0.7700 ± 0.0000 | 0.7810 ± 0.0010 | +0.0110 ± 0.0010 | yes |" in text


def test_the_time_of_a_reused_stage_is_not_judged():
    """run_bench copies a reused stage's seconds from the run it took the stage from: a change in them (here
    +92 to +94 s, which would be 'outside noise') is not this pair's, nor is the pipeline's sum."""
    b = {("d", s): _run(s, 0.78, 0.77, 0.76) for s in (42, 43, 44)}
    n = {("d", s): _run(s, 0.78, 0.78, 0.76, pretrain=750.0 + s) for s in (42, 43, 44)}
    for run in n.values():
        run["stages"]["pretrain"]["reused"] = True
        run["stages"]["distill"]["seconds"] = 20.0 + run["seed"] / 100
    table = compare_bench.compare(b, n)["d"]
    s = table["summary"]
    assert s["seconds_pretrain"]["change"]["mean"] == pytest.approx(93.0)
    assert s["seconds_pretrain"]["outside_noise"] is None and s["seconds_pipeline"]["outside_noise"] is None
    assert s["seconds_distill"]["outside_noise"] is True and s["val_final"]["outside_noise"] is True
    text = compare_bench.render({"command": "c", "base": [{"file": "b", "overrides": {}}],
                                 "new": [{"file": "n", "overrides": {}}], "datasets": {"d": table}})
    assert "| +93.0 ± 1.0 | – (a stage reused: timed in another run) |" in text


def test_mixed_signs_are_noise():
    b = {("d", s): _run(s, 0.78, 0.77, 0.76) for s in (42, 43, 44)}
    n = {("d", s): _run(s, 0.78, 0.77 + d, 0.76) for s, d in ((42, 0.02), (43, -0.001), (44, 0.02))}
    assert not compare_bench.compare(b, n)["d"]["summary"]["val_final"]["outside_noise"]


def test_unpaired_duplicated_or_old_runs_are_refused(tmp_path):
    b = {("d", s): _run(s, 0.78, 0.77, 0.76) for s in (42, 43)}
    with pytest.raises(ValueError, match="only in --base: d seed 43; only in --new: none"):
        compare_bench.compare(b, {("d", 42): b["d", 42]})
    with pytest.raises(ValueError, match="d seed 42: the two runs have different test splits"):
        compare_bench.compare(b, {**b, ("d", 42): _run(42, 0.78, 0.77, 0.76, test_rows=99)})
    with pytest.raises(ValueError, match="d seed 43: the two runs were made on other CPU types"):
        compare_bench.compare(b, {**b, ("d", 43): {**b["d", 43], "cpu": "AMD EPYC"}})
    twice = _save(tmp_path / "t.json", [_run(42, 0.8, 0.8, 0.8)] * 2)
    with pytest.raises(ValueError, match="cyberbully seed 42 is given twice on one side"):
        compare_bench.load_runs([twice])
    old = _run(42, 0.8, 0.8, 0.8)
    del old["val"]
    with pytest.raises(ValueError, match="has no val scores"):
        compare_bench.load_runs([_save(tmp_path / "o.json", [old])])


def test_cli_writes_both_files_and_a_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    import sys
    base = _save(tmp_path / "b.json", [_run(42, 0.78, 0.77, 0.76)])
    monkeypatch.setattr(sys, "argv", ["compare_bench", "--base", str(base), "--new", str(base), "--out",
                                      str(tmp_path / "out/cmp")])
    compare_bench.main()
    assert json.loads((tmp_path / "out/cmp.json").read_text())["datasets"]["cyberbully"]["seeds"] == [42]
    assert (tmp_path / "out/cmp.md").read_text().startswith("# A benchmark variant against the default")
    # --screen: a run against the base's run of the same seed, the base's other runs left aside
    both = _save(tmp_path / "b2.json", [_run(42, 0.78, 0.77, 0.76), _run(43, 0.78, 0.77, 0.76)])
    one = _save(tmp_path / "n1.json", [_run(43, 0.78, 0.79, 0.76)])
    argv = ["compare_bench", "--base", str(both), "--new", str(one), "--out", str(tmp_path / "out/screen")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="only in --base: cyberbully seed 42"):
        compare_bench.main()
    monkeypatch.setattr(sys, "argv", argv + ["--screen"])
    compare_bench.main()
    screen = json.loads((tmp_path / "out/screen.json").read_text())["datasets"]["cyberbully"]
    assert screen["seeds"] == [43] and screen["summary"]["val_final"]["change"]["mean"] == pytest.approx(0.02)
    monkeypatch.setattr(sys, "argv", ["compare_bench", "--base", str(one), "--new", str(both), "--out",
                                      str(tmp_path / "x"), "--screen"])
    with pytest.raises(SystemExit, match="only in --new: cyberbully seed 42"):
        compare_bench.main()
    monkeypatch.setattr(sys, "argv", ["compare_bench", "--base", str(tmp_path / "missing.json"), "--new",
                                      str(base), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="compare_bench: .*missing.json"):
        compare_bench.main()
