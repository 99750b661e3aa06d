"""data.split_files: official train/val/test files (SentNoB) go through the same cleaning and de-duplication,
a text shared across splits is removed from the earlier split (train < val < test), the test file stays whole,
every removal is counted, and the options that only a split made here uses are errors."""
import json
import subprocess

import pandas as pd
import pytest
import yaml

from banglacompress.config import UserError
from banglacompress.data import RANDOM_SPLIT_DEFAULTS, SPLITS, near_duplicate_key, prepare_splits
from banglacompress.export import model_card
from conftest import ROOT, run_stage, synthetic_frame, tiny_params, venv_env, write_params

FILES = {"train": "tr.csv", "val": "va.csv", "test": "te.csv"}


def _write_given_splits(directory, *, train_in_test=5, train_in_val=3, val_in_test=2):
    """SentNoB-like files (Data, Label 0/1/2) with no text shared across them, then near-copies of some
    test texts put into train and val, and of some val texts into train; plus one exact and one near
    duplicate inside train. Returns the three frames as written."""
    frame = synthetic_frame("multiclass", n=360, seed=3)
    frame = frame[~frame.Data.map(near_duplicate_key).duplicated()].reset_index(drop=True)
    train, val, test = frame.iloc[:240], frame.iloc[240:290], frame.iloc[290:]
    twin = lambda rows: rows.assign(Data=rows.Data + " !! ১২")  # noqa: E731 - a near-copy: same letters
    train = pd.concat([train, twin(test.iloc[:train_in_test]), twin(val.iloc[:train_in_val]),
                       train.iloc[:1], twin(train.iloc[1:2])])
    val = pd.concat([val, twin(test.iloc[train_in_test:train_in_test + val_in_test])])
    directory.mkdir(parents=True, exist_ok=True)
    for name, part in zip(SPLITS, (train, val, test)):
        part.to_csv(directory / FILES[name], index=False)
    return train, val, test


def _cfg(directory, **overrides):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    return {**data, "path": str(directory), "text_column": "Data", "label_columns": ["Label"],
            "split_files": dict(FILES), **overrides}


def _keys(path):
    return set(pd.read_csv(path, dtype=str, keep_default_na=False).text.map(near_duplicate_key))


def test_cross_split_twins_are_removed_from_the_earlier_split_and_counted(tmp_path):
    train, val, test = _write_given_splits(tmp_path / "raw")
    out = tmp_path / "prepared"
    out.mkdir()
    metrics = prepare_splits(_cfg(tmp_path / "raw"), 0, out)
    assert metrics["task"] == "multiclass"
    assert {k: v for k, v in metrics.items() if k.startswith("cross_split")} == {
        "cross_split_train_rows_in_val": 3, "cross_split_train_rows_in_test": 5, "cross_split_train_rows_removed": 8,
        "cross_split_val_rows_in_test": 2, "cross_split_val_rows_removed": 2}
    assert metrics["splits"]["train"]["duplicate_rows_removed"] == 1
    assert metrics["splits"]["train"]["near_duplicate_rows_removed"] == 1
    keys = {name: _keys(out / f"{name}.csv") for name in SPLITS}
    assert not keys["train"] & (keys["val"] | keys["test"]) and not keys["val"] & keys["test"]
    assert pd.read_csv(out / "test.csv").text.tolist() == test.Data.tolist()  # the benchmark is untouched
    for name, raw in zip(SPLITS, (train, val, test)):  # every row read is kept or counted once
        row = metrics["splits"][name]
        removed = metrics.get(f"cross_split_{name}_rows_removed", 0)
        assert row["rows_read"] == len(raw) == (row["rows"] + row["empty_texts_dropped"] + removed
                                                + row["duplicate_rows_removed"] + row["near_duplicate_rows_removed"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split_files"] == FILES and meta["label_names"] == ["0", "1", "2"] and "cross_split_rule" in meta


@pytest.mark.parametrize("key, value", [(k, 0.2 if k != "split_seed" else 7) for k in RANDOM_SPLIT_DEFAULTS])
def test_an_option_of_the_random_split_is_an_error_with_given_splits(tmp_path, key, value):
    _write_given_splits(tmp_path / "raw")
    with pytest.raises(UserError, match=f"data.{key}={value!r} does not apply when data.split_files"):
        prepare_splits(_cfg(tmp_path / "raw", **{key: value}), 0, tmp_path)


@pytest.mark.parametrize("split_files, message", [
    ({"train": "tr.csv", "val": "va.csv"}, "must be null or {train: FILE, val: FILE, test: FILE}"),
    ({**FILES, "test": "/abs/te.csv"}, "must be a path inside the directory data.path"),
    ({**FILES, "test": "../te.csv"}, "must be a path inside the directory data.path"),
    ({**FILES, "val": "tr.csv"}, "names a file twice"),
])
def test_bad_split_files(tmp_path, split_files, message):
    with pytest.raises(UserError, match=message.replace("{", r"\{").replace("}", r"\}")):
        prepare_splits(_cfg(tmp_path, split_files=split_files), 0, tmp_path)


def test_the_defaults_are_those_of_params_yaml():
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    assert {k: data[k] for k in RANDOM_SPLIT_DEFAULTS} == RANDOM_SPLIT_DEFAULTS and data["split_files"] is None


def test_a_file_as_data_path_is_one_error_line_and_no_output(repo, tmp_path):
    _write_given_splits(tmp_path / "raw")
    params = tiny_params(tmp_path / "raw" / "tr.csv", text_column="Data", label_columns=["Label"],
                         split_files=dict(FILES))
    write_params(repo, params)
    result = run_stage(repo, "prepare")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.path must be the directory that holds the split files" in errors[0]
    assert not (repo / "data" / "prepared").exists() and not (repo / "metrics" / "data.json").exists()


def test_dvc_reruns_prepare_when_a_given_split_file_changes(repo):
    """dvc.yaml's prepare dep is ${data.path}: with given splits, their directory, so DVC sees every file."""
    _write_given_splits(repo / "data" / "raw")
    write_params(repo, tiny_params("data/raw", text_column="Data", label_columns=["Label"], split_files=dict(FILES)))

    def run(*args):
        return subprocess.run(args, cwd=repo, env=venv_env(), capture_output=True, text=True, timeout=300)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        assert run(*cmd).returncode == 0
    first = run("dvc", "repro", "prepare")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "given splits" in first.stdout and "test is kept whole" in first.stdout
    assert json.loads(run("dvc", "status", "prepare", "--json").stdout) == {}
    with open(repo / "data" / "raw" / FILES["test"], "a", encoding="utf-8") as f:
        f.write("নতুন একটি মন্তব্য,1\n")
    assert "prepare" in json.loads(run("dvc", "status", "prepare", "--json").stdout)


@pytest.mark.real_data
def test_sentnob_official_splits(shared_data, tmp_path):
    """SentNoB's own split shares 148 exact texts between train and test and 145 between train and val;
    after cleaning and with near-duplicate keys (mostly a trailing space) 436 train rows have a twin in test and
    441 in val: all leave train, and 70 val rows with a twin in test leave val. Test loses only its own
    within-file duplicates (25 rows)."""
    raw = {name: pd.read_csv(shared_data / f"sentnob_{name}.csv", dtype=str) for name in SPLITS}
    assert len(set(raw["train"].Data) & set(raw["test"].Data)) == 148
    assert len(set(raw["train"].Data) & set(raw["val"].Data)) == 145
    cfg = _cfg(shared_data, split_files={name: f"sentnob_{name}.csv" for name in SPLITS})
    metrics = prepare_splits(cfg, 42, tmp_path)
    assert metrics["task"] == "multiclass"
    assert {k: v for k, v in metrics.items() if k.startswith("cross_split")} == {
        "cross_split_train_rows_in_val": 441, "cross_split_train_rows_in_test": 436,
        "cross_split_train_rows_removed": 869, "cross_split_val_rows_in_test": 70, "cross_split_val_rows_removed": 70}
    assert {name: metrics["splits"][name]["rows"] for name in SPLITS} == {"train": 10024, "val": 1479, "test": 1561}
    keys = {name: _keys(tmp_path / f"{name}.csv") for name in SPLITS}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]


def test_the_model_card_names_the_given_files_and_the_removals():
    info = {"task": "multiclass", "label_names": ["0", "1", "2"]}
    splits = {name: {"rows": 10} for name in SPLITS}
    given = {"split_files": FILES, "cross_split_train_rows_removed": 8, "cross_split_val_rows_removed": 2,
             "splits": splits}
    card = model_card(info, None, None, given, ", ".join(FILES.values()))
    assert "source: `tr.csv, va.csv, te.csv`" in card and "from train (8 rows) and val (2)" in card
    assert "stratified" not in card
    assert "- stratified train / val / test: train 10 rows" in model_card(info, None, None, {"splits": splits}, "x.csv")
