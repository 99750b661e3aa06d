"""bench.target_gap stops with one line on runs it cannot read, before loading anything."""
import json
import subprocess
import sys

from conftest import ROOT


def test_an_unfinished_run_is_one_clear_error():
    run = subprocess.run([sys.executable, "-m", "bench.target_gap", "--runs", "no_such_run", "--out", "x"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--runs no_such_run: not a finished run" in run.stderr.strip().splitlines()[-1]


def test_weights_outside_0_1_are_one_clear_error(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "quantize.json").write_text("{}")
    run = subprocess.run([sys.executable, "-m", "bench.target_gap", "--runs", str(tmp_path), "--weights", "1.5",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--weights must be in [0, 1]" in run.stderr.strip().splitlines()[-1]


def test_the_summary_places_teacher_targets_and_final_against_tfidf(tmp_path):
    """--render-only rewrites OUT.md from OUT.json, with each column's gap to TF-IDF (w=1) as mean ± std."""
    rows = [{"run": f"r{s}", "tfidf_weight": 0.7, "student_val_macro_f1": 0.5, "final_val_macro_f1": final,
             "final_minus_targets": final - targets,
             "targets_val_macro_f1": {"0.0": teacher, "0.7": targets, "1.0": 0.80}}
            for s, (teacher, targets, final) in enumerate([(0.77, 0.81, 0.79), (0.79, 0.83, 0.81)])]
    (tmp_path / "gap.json").write_text(json.dumps({"command": "python -m bench.target_gap", "rows": rows}))
    run = subprocess.run([sys.executable, "-m", "bench.target_gap", "--render-only", "--out", str(tmp_path / "gap")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "gap.md").read_text()
    assert "teacher (w=0) − TF-IDF (w=1), mean ± std (n − 1): -0.0200 ± 0.0141" in text
    assert "targets (run's w) − TF-IDF (w=1), mean ± std (n − 1): +0.0200 ± 0.0141" in text
    assert "final − TF-IDF (w=1), mean ± std (n − 1): +0.0000 ± 0.0141" in text
