"""Robustness: CSV quirks that must be cleaned up (not lost), stray delimiters that must be refused,
and a stage killed mid-run that leaves nothing DVC would accept and recovers on the next repro."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from conftest import run_stage, synthetic_frame, tiny_params, venv_env, write_params


def _quirky_csv(path, n=300):
    """BOM, CRLF line ends, a quoted newline inside a comment and stray spaces: all legal CSV."""
    frame = synthetic_frame("binary", n=n)
    frame.loc[0, "Comments"] = "প্রথম লাইন\nদ্বিতীয় লাইন"
    frame.loc[1, "Comments"] = "  ফাঁকা   জায়গা  "
    text = frame.to_csv(index=False, lineterminator="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return frame


def test_bom_crlf_and_quoted_newlines_are_cleaned_not_lost(repo, tmp_path):
    frame = _quirky_csv(tmp_path / "quirky.csv")
    write_params(repo, tiny_params(tmp_path / "quirky.csv"))
    result = run_stage(repo, "prepare")
    assert result.returncode == 0, result.stderr
    splits = [pd.read_csv(repo / "data" / "prepared" / f"{s}.csv", dtype=str) for s in ("train", "val", "test")]
    texts = pd.concat(splits)["text"].tolist()
    assert "প্রথম লাইন দ্বিতীয় লাইন" in texts and "ফাঁকা জায়গা" in texts  # one space, no \r, no BOM
    assert not any("\r" in t or "\ufeff" in t for t in texts)
    data = json.loads((repo / "metrics" / "data.json").read_text())
    kept = sum(s["rows"] for s in data["splits"].values())
    assert kept == frame["Comments"].map(lambda t: " ".join(t.split())).nunique()  # only duplicates removed


def test_stray_delimiter_is_refused_with_the_line(repo, tmp_path):
    path = tmp_path / "stray.csv"
    path.write_text("Comments,HateSpeech\nভালো,0\nখারাপ,1,extra\n", encoding="utf-8")
    write_params(repo, tiny_params(path))
    result = run_stage(repo, "prepare")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a well-formed CSV" in result.stderr and "line 3" in result.stderr, result.stderr
    assert not (repo / "data" / "prepared").exists()


def _git_dvc(repo, *args):
    return subprocess.run(args, cwd=repo, env=venv_env(), capture_output=True, text=True, timeout=600)


def test_killed_stage_leaves_nothing_dvc_accepts_and_repro_recovers(repo, tmp_path):
    synthetic_frame("binary", n=600).to_csv(tmp_path / "data.csv", index=False)
    params = tiny_params(tmp_path / "data.csv")
    # Far more epochs than can finish before the kill on any machine (30 once finished in time on a fast
    # CPU, and the test passed without killing anything): 1000 is teacher.epochs' maximum.
    params["teacher"].update(epochs=1000, patience=1000)
    write_params(repo, params)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        assert _git_dvc(repo, *cmd).returncode == 0
    assert _git_dvc(repo, "dvc", "repro", "prepare").returncode == 0

    log = tmp_path / "train_teacher.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "stages/train_teacher.py"], cwd=repo, env=venv_env(),
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and "epoch 1/1000 loss" not in log.read_text():
        time.sleep(0.2)  # the first epoch is done: the stage is inside its training loop, outputs open
    assert proc.poll() is None, f"train_teacher ended before it could be killed:\n{log.read_text()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (repo / "models" / "teacher").exists()  # only a hidden temporary, never the real name
    assert not (repo / "metrics" / "train_teacher.json").exists()
    status = json.loads(_git_dvc(repo, "dvc", "status", "--json").stdout)
    assert "train_teacher" in status  # DVC does not accept what was left

    params["teacher"].update(epochs=1, patience=0)
    write_params(repo, params)
    rerun = _git_dvc(repo, "dvc", "repro", "train_teacher")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (repo / "models" / "teacher" / "inference.json").exists()
    assert not list((repo / "models").glob(".teacher.tmp-*"))  # the killed run's temporary was cleaned up
