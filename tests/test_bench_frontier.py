"""bench_frontier's --shape option: the extra student shapes a frontier run on another dataset compares."""
import argparse

import pytest

from bench.bench_frontier import parse_shape


def test_shape_names_a_student_scratch_override():
    assert parse_shape("L4_H256=4,256,4,1024") == ("L4_H256", {"layers": 4, "hidden": 256, "heads": 4, "ffn": 1024})


@pytest.mark.parametrize("text", ["L4_H256=4,256,4", "=4,256,4,1024", "L4=4,256,0,1024", "L4=4,256,four,1024"])
def test_a_malformed_shape_is_one_clear_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=LAYERS,HIDDEN,HEADS,FFN"):
        parse_shape(text)
