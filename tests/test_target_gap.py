"""bench.target_gap stops with one line on runs it cannot read, before loading anything."""
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
