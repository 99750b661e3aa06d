"""Every kind of bad input ends with one clear line, exit code 2, and no output that looks valid."""
import pytest

from conftest import run_stage, synthetic_frame, tiny_params, write_params


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


BAD_CSV = {
    "missing file": (None, "not found"),
    "missing column": (b"text,HateSpeech\n\xe0\xa6\x95,1\n", "has no column"),
    "empty file": (b"", "is empty"),
    "header only": (b"Comments,HateSpeech\n", "no rows"),
    "NaN text": (b"Comments,HateSpeech\n,1\n\xe0\xa6\x95,0\n", "empty or NaN text"),
    "labels not 0/1": (b"Comments,HateSpeech\na,1\nb,2\n", "binary labels must be 0/1"),
    "non-numeric label": (b"Comments,HateSpeech\na,yes\nb,0\n", "non-integer values"),
    "not UTF-8": ("Comments,HateSpeech\nকী,1\n".encode("utf-16"), "not UTF-8"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv(repo, tmp_path, case):
    content, message = BAD_CSV[case]
    path = tmp_path / "bad.csv"
    if content is not None:
        _write(path, content)
    write_params(repo, tiny_params(path))
    result = run_stage(repo, "prepare")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "data" / "prepared").exists()
    assert not (repo / "metrics" / "data.json").exists()


def test_label_too_rare_to_stratify(repo, tmp_path):
    frame = synthetic_frame("binary", n=300)
    frame["HateSpeech"] = 0
    frame.loc[:4, "HateSpeech"] = 1
    frame.to_csv(tmp_path / "rare.csv", index=False)
    write_params(repo, tiny_params(tmp_path / "rare.csv"))
    result = run_stage(repo, "prepare")
    assert result.returncode == 2 and "needed to stratify" in result.stderr
    assert not (repo / "data" / "prepared").exists()


def test_drop_empty_is_the_documented_clean_up(repo, tmp_path):
    frame = synthetic_frame("binary", n=300)
    frame.loc[0, "Comments"] = "   "
    frame.to_csv(tmp_path / "empty.csv", index=False)
    write_params(repo, tiny_params(tmp_path / "empty.csv", drop_empty=True))
    result = run_stage(repo, "prepare")
    assert result.returncode == 0, result.stderr
    assert (repo / "data" / "prepared" / "train.csv").exists()


BAD_PARAMS = {
    "unknown prune method": ("prune", "method", "lottery", "prune.method='lottery' is not supported"),
    "sparsity 1.0": ("prune", "sparsity", 1.0, "prune.sparsity=1.0 is out of range"),
    "negative sparsity": ("prune", "sparsity", -0.1, "prune.sparsity=-0.1 is out of range"),
    "unknown healing source": ("prune", "kd_from", "pruned", "prune.kd_from='pruned' is not supported"),
    "alpha above 1": ("distill", "alpha", 1.5, "distill.alpha=1.5 is out of range"),
    "unknown kd method": ("distill", "method", "magic", "distill.method='magic' is not supported"),
    "tfidf weight above 1": ("distill", "tfidf_weight", 1.5, "distill.tfidf_weight=1.5 is out of range"),
    "unknown quant method": ("quantize", "method", "int3", "quantize.method='int3' is not supported"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_params(repo, binary_csv, case):
    group, key, value, message = BAD_PARAMS[case]
    params = tiny_params(binary_csv)
    params[group][key] = value
    write_params(repo, params)
    stage = {"prune": "prune", "distill": "distill", "quantize": "quantize"}[group]
    result = run_stage(repo, stage)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (repo / "models").exists()
