"""bench_frontier's --shape option: the extra student shapes a frontier run on another dataset compares."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_frontier import parse_shape


def test_shape_names_a_student_scratch_override():
    assert parse_shape("L4_H256=4,256,4,1024") == ("L4_H256", {"layers": 4, "hidden": 256, "heads": 4, "ffn": 1024})


@pytest.mark.parametrize("text", ["L4_H256=4,256,4", "=4,256,4,1024", "L4=4,256,0,1024", "L4=4,256,four,1024"])
def test_a_malformed_shape_is_one_clear_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=LAYERS,HIDDEN,HEADS,FFN"):
        parse_shape(text)


@pytest.mark.parametrize("args, message", [(["--only", "L9"], "--only L9: not a candidate"),
                                           (["--only"], "none was given"),
                                           (["--corpus", "no_such_corpus.txt"], "--corpus no_such_corpus.txt: no such file"),
                                           (["--set", "teacher.lr=0.1"], "--set teacher.lr: the frontier reuses"),
                                           (["--set", "distill.alfa=1"], "--set distill.alfa: params.yaml has no such key")])
def test_a_run_with_no_or_unknown_candidates_stops_before_any_work(args, message):
    run = subprocess.run([sys.executable, "-m", "bench.bench_frontier", *args], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 2 and message in run.stderr.strip().splitlines()[-1]
