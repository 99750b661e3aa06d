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


def test_a_run_dirs_own_copy_of_the_package_is_refused_when_it_differs(tmp_path):
    """In a run dir `python -m` imports the run's copy of banglacompress first: a screen of changed code would
    silently run the run's old code (it did: a first subword_alpha screen reproduced the default to the last digit)."""
    import shutil

    import banglacompress
    from bench.run_bench import ROOT, check_imported_package
    check_imported_package(banglacompress.__file__)  # the repo's own
    shutil.copytree(ROOT / "banglacompress", tmp_path / "banglacompress",
                    ignore=shutil.ignore_patterns("__pycache__"))
    check_imported_package(str(tmp_path / "banglacompress" / "__init__.py"))  # an equal copy is fine
    with open(tmp_path / "banglacompress" / "distill.py", "a", encoding="utf-8") as f:
        f.write("\n# changed since the run\n")
    with pytest.raises(SystemExit, match="run it with PYTHONSAFEPATH=1"):
        check_imported_package(str(tmp_path / "banglacompress" / "__init__.py"))
