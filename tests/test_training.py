import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from banglacompress.config import UserError
from banglacompress.data import Encoded, class_weights, prepare_splits
from banglacompress.distill import check_teacher, logit_kd, soft_logit_loss
from banglacompress.models import build_model, load_model_dir
from banglacompress.scoring import decide, macro_f1, probabilities, tune_thresholds
from banglacompress.train import check_teacher_params, fit, label_loss, predict_logits, train_teacher
from conftest import (CUDA, TINY_ARCH, linear_output_dtypes, run_stage, synthetic_frame, tiny_params, venv_env,
                      write_params)

import pytest


def _task_data(task, n=400):
    frame = synthetic_frame(task, n=n, seed=1)
    text_col = {"binary": "Comments", "multilabel": "comment", "multiclass": "Data"}[task]
    labels = {"binary": ["HateSpeech"], "multilabel": ["hate", "sexual", "religious"], "multiclass": ["Label"]}[task]
    texts = frame[text_col].tolist()
    y = frame["Label"].to_numpy() if task == "multiclass" else frame[labels].to_numpy(np.float32)
    names = ["0", "1", "2"] if task == "multiclass" else labels
    meta = {"task": task, "label_names": names, "num_labels": 1 if task == "binary" else 3}
    return texts, y, meta


@pytest.mark.parametrize("task", ["binary", "multilabel", "multiclass"])
def test_fit_learns_and_restores_best_epoch(task):
    texts, y, meta = _task_data(task, n=700)
    model, tok = build_model("t", {"model": "scratch", "scratch": TINY_ARCH}, meta, texts, 32)
    train, val = Encoded(tok, texts[:500], y[:500], 32), Encoded(tok, texts[500:], None, 32)
    result = fit(model, train, val, y[500:], task=task, loss_fn=label_loss(task, class_weights(y[:500], task)),
                 epochs=6, batch_size=16, lr=0.005, patience=0)
    f1s = [h["val_macro_f1"] for h in result["history"]]
    assert result["best_val_macro_f1"] == max(f1s) > 0.5  # chance level is 0.18-0.5 here
    pred = decide(task, probabilities(task, predict_logits(model, val)))
    assert macro_f1(task, y[500:], pred) == pytest.approx(max(f1s))  # the best epoch's weights are back


def test_thresholds_are_tuned_per_label():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 2)) < 0.3).astype(np.float32)
    probs = np.clip(y * 0.35 + rng.random((500, 2)) * 0.3, 0, 1)  # positives sit in 0.35-0.65
    t = tune_thresholds("multilabel", y, probs)
    assert len(t) == 2 and all(0.3 <= x <= 0.4 for x in t)
    assert macro_f1("multilabel", y, decide("multilabel", probs, t)) > macro_f1("multilabel", y, decide("multilabel", probs))


@pytest.mark.parametrize("task,shape", [("binary", (8, 1)), ("multilabel", (8, 3)), ("multiclass", (8, 3))])
def test_soft_loss_is_zero_at_match_and_decreases(task, shape):
    torch.manual_seed(0)
    teacher = torch.randn(shape) * 3
    assert soft_logit_loss(task, teacher.clone(), teacher, 4.0).abs() < 1e-6
    student = torch.zeros(shape, requires_grad=True)
    opt = torch.optim.SGD([student], lr=1.0)
    losses = []
    for _ in range(20):
        loss = soft_logit_loss(task, student, teacher, 2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.75 * losses[0] and np.all(np.diff(losses) < 0)


def test_logit_kd_uses_cached_teacher_rows_by_index():
    texts, y, meta = _task_data("binary", n=60)
    model, tok = build_model("s", {"model": "scratch", "scratch": TINY_ARCH}, meta, texts, 32)
    model.eval()  # no dropout, so the two forward passes below are comparable
    ds = Encoded(tok, texts, y, 32)
    batch = ds.collate([5, 7])
    teacher = torch.zeros(60, 1)
    teacher[5], teacher[7] = 10.0, -10.0
    pure_kd = logit_kd("binary", teacher, alpha=1.0, temperature=1.0)(model, batch)
    with torch.no_grad():
        s = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert pure_kd.item() == pytest.approx(soft_logit_loss("binary", s, teacher[[5, 7]], 1.0).item(), rel=1e-5)
    pure_kd.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_teacher_check_rejects_chance_teacher():
    from banglacompress.config import UserError
    rng = np.random.default_rng(0)
    y = (rng.random((200, 1)) < 0.5).astype(np.float32)
    # the message names the likely causes, a stalled pretraining among them (bench/PRETRAIN.md, seed 44)
    with pytest.raises(UserError, match="majority-class baseline.*check that the pretraining took off"):
        check_teacher("binary", np.zeros((200, 1)), y, y, [0.5], margin=0.02)
    good = check_teacher("binary", (y - 0.5) * 4, y, y, [0.5], margin=0.02)
    assert good["teacher_val_macro_f1"] == 1.0


@pytest.mark.parametrize("task,shape", [("binary", (6, 1)), ("multilabel", (6, 3)), ("multiclass", (6, 3))])
def test_focal_loss_is_cross_entropy_at_gamma_zero_and_smaller_above(task, shape):
    from banglacompress.train import hard_loss
    torch.manual_seed(0)
    logits = torch.randn(shape) * 2
    labels = torch.randint(0, 3, (6,)) if task == "multiclass" else (torch.rand(shape) < 0.5).float()
    ce = hard_loss(task, logits, labels, loss="ce")
    assert hard_loss(task, logits, labels, loss="focal", gamma=0.0) == pytest.approx(ce.item(), rel=1e-5)
    assert hard_loss(task, logits, labels, loss="focal", gamma=2.0) < ce


def test_freeze_base_trains_only_the_head():
    from banglacompress.train import freeze_base
    texts, y, meta = _task_data("binary", n=120)
    model, tok = build_model("t", {"model": "scratch", "scratch": TINY_ARCH}, meta, texts, 32)
    freeze_base(model)
    base_before = [p.clone() for p in model.bert.parameters()]
    head_before = model.classifier.weight.clone()
    fit(model, Encoded(tok, texts[:100], y[:100], 32), Encoded(tok, texts[100:], None, 32), y[100:], task="binary",
        loss_fn=label_loss("binary", None), epochs=1, batch_size=16, lr=0.01, patience=0, select_best=False)
    model.cpu()  # fit leaves it where it trained (a GPU when there is one)
    assert all(torch.equal(a, b) for a, b in zip(base_before, model.bert.parameters()))
    assert not torch.equal(head_before, model.classifier.weight)


def test_cross_validation_reports_every_fold():
    from banglacompress.train import cross_validate, fold_ids
    texts, y, meta = _task_data("binary", n=150)
    ids = fold_ids("binary", y, 3, seed=0)
    assert sorted(set(ids)) == [0, 1, 2] and abs(y[ids == 0].mean() - y.mean()) < 0.08

    def build(train_texts):
        return build_model("t", {"model": "scratch", "scratch": TINY_ARCH}, meta, train_texts, 32)

    report = cross_validate(build, texts, y, task="binary", folds=3, seed=0, max_length=32,
                            make_loss=lambda yy: label_loss("binary", None), epochs=1, batch_size=16, lr=0.005,
                            patience=0)
    folds = report["cv_macro_f1_per_fold"]
    assert len(folds) == 3 and all(0 < f <= 1 for f in folds)
    assert len(set(folds)) > 1, "three folds trained on different rows scored identically"
    assert report["cv_macro_f1_mean"] == pytest.approx(np.mean(folds))
    assert report["cv_macro_f1_std"] == pytest.approx(np.std(folds)) and report["cv_macro_f1_std"] > 0


def _prepared_stage_repo(repo: Path, tmp_path: Path, rows: int = 300, teacher_epochs: int = 2) -> Path:
    """The repo copy with tiny params, a first commit (dvclive wants a git repository with one) and the
    prepare stage run: ready for the training stages as scripts."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    synthetic_frame("binary", n=rows).to_csv(tmp_path / "data.csv", index=False)
    params = tiny_params(tmp_path / "data.csv")
    params["teacher"].update(epochs=teacher_epochs, patience=0)
    write_params(repo, params)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    assert run_stage(repo, "prepare").returncode == 0
    return repo


def test_train_teacher_runs_unchanged_as_two_process_cpu_data_parallel(repo, tmp_path):
    """`torchrun --nproc_per_node 2` with ACCELERATE_USE_CPU=1 on the unchanged stage script: accelerate
    shards the batches over two gloo processes, both ranks share rank 0's tokenizer, and only rank 0
    writes the model, which reloads. (`accelerate launch --cpu --num_processes 2` starts one process
    here: its multi-CPU launcher needs MPI.)"""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this interpreter")
    _prepared_stage_repo(repo, tmp_path)
    env = {**venv_env(), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533",
                             "stages/train_teacher.py"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data-parallel over 2 processes" in result.stderr and "rank 1" in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("[train_teacher] done") == 2
    model, tokenizer, info = load_model_dir(repo / "models" / "teacher")
    assert info["task"] == "binary" and len(tokenizer) > 10
    assert not list(repo.glob("models/.teacher.tmp-*"))


def _accelerate_launch(repo: Path, stage: str, precision: str) -> subprocess.CompletedProcess:
    """`accelerate launch --mixed_precision P stages/<stage>.py` on one GPU, as the README shows it."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
           "--dynamo_backend", "no", "--mixed_precision", precision, f"stages/{stage}.py"]
    return subprocess.run(cmd, cwd=repo, env=venv_env(), capture_output=True, text=True, timeout=600)


@CUDA
def test_stages_run_unchanged_under_accelerate_launch_on_one_cuda_gpu(repo, tmp_path):
    """The README's one-GPU commands on the unchanged stage scripts: the teacher under
    `accelerate launch --mixed_precision fp16`, the student under bf16, then prune (a plain run, which
    accelerate puts on the GPU), quantize and evaluate. Each loop autocasts on cuda, the saved models stay
    FP32, and every stage learned the marker words (a model that learned nothing scores 0.33-0.5).
    The same data and bars as test_pipeline's DVC smoke test, there without pretraining."""
    _prepared_stage_repo(repo, tmp_path, rows=1200, teacher_epochs=3)
    for stage, precision in (("train_teacher", "fp16"), ("distill", "bf16")):
        result = _accelerate_launch(repo, stage, precision)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"mixed precision {precision} (autocast on cuda)" in result.stderr, result.stderr[-2000:]
    for stage in ("prune", "quantize", "evaluate"):
        result = run_stage(repo, stage, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    for name in ("teacher", "student", "pruned"):
        model, _, _ = load_model_dir(repo / "models" / name)
        assert {p.dtype for p in model.parameters()} == {torch.float32}, name
    rows = json.loads((repo / "metrics" / "summary.json").read_text())["stages"]
    assert rows["teacher"]["macro_f1"] > 0.9, rows["teacher"]["macro_f1"]
    assert all(row["f1_retained"] > 0.9 for name, row in rows.items() if name != "teacher"), rows


@CUDA
def test_train_teacher_on_cuda_is_bitwise_reproducible(repo, tmp_path):
    """Two plain runs of train_teacher on a GPU give the same weights, bit for bit (configure_torch's
    deterministic algorithms); a CPU run gives other weights, which shows the two runs were on the GPU."""
    _prepared_stage_repo(repo, tmp_path)

    def weights(env=None):
        result = run_stage(repo, "train_teacher", timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return load_file(repo / "models" / "teacher" / "model.safetensors")

    first, second = weights(), weights()
    cpu = weights({**venv_env(), "ACCELERATE_USE_CPU": "1"})
    differ = [name for name in first if not torch.equal(first[name], second[name])]
    assert not differ, f"{len(differ)} of {len(first)} tensors differ between two CUDA runs, e.g. {differ[:3]}"
    assert any(not torch.equal(first[name], cpu[name]) for name in first)


@pytest.mark.parametrize("device,precision,expected", [
    ("cpu", "bf16", torch.bfloat16), ("cpu", "fp16", torch.float32),
    pytest.param("cuda", "fp16", torch.float16, marks=CUDA), pytest.param("cuda", "bf16", torch.bfloat16, marks=CUDA)])
def test_mixed_precision_from_accelerate_launch(fresh_accelerate_state, capsys, device, precision, expected):
    """`accelerate launch --mixed_precision X` sets ACCELERATE_MIXED_PRECISION; fit picks it up unchanged.
    On CPU bf16 autocasts (the Linear layers compute in bfloat16) while the weights and the saved model
    stay FP32; fp16 is GPU-only in accelerate, which would silently train in FP32: fit says so. On a GPU
    both autocast. (ACCELERATE_USE_CPU pins the CPU cases to the CPU on a machine that has a GPU.)"""
    fresh_accelerate_state.setenv("ACCELERATE_MIXED_PRECISION", precision)
    if device == "cpu":
        fresh_accelerate_state.setenv("ACCELERATE_USE_CPU", "1")
    meta = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}
    frame = synthetic_frame("binary", n=120)
    texts, y = frame.Comments.tolist(), frame[["HateSpeech"]].to_numpy(np.float32)
    model, tok = build_model("t", {"model": "scratch", "scratch": TINY_ARCH}, meta, texts, 32)
    seen = set()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    fit(model, Encoded(tok, texts[:80], y[:80], 32), Encoded(tok, texts[80:], None, 32), y[80:], task="binary",
        loss_fn=label_loss("binary", None), epochs=1, batch_size=16, lr=1e-3, patience=0)
    err = capsys.readouterr().err
    assert expected in seen, seen
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert next(model.parameters()).device.type == device
    if device == "cuda" or precision == "bf16":
        assert f"mixed precision {precision} (autocast on {device})" in err
    else:
        assert "warning: mixed precision fp16 is not available on cpu; training in FP32" in err


@pytest.mark.parametrize("param,launcher,expected", [
    ("bf16", None, {torch.bfloat16}), ("bf16", "no", {torch.bfloat16}), ("fp32", "bf16", {torch.float32}),
    (None, "bf16", {torch.bfloat16}), (None, None, {torch.float32})])
def test_teacher_mixed_precision_param_wins_over_the_launcher(fresh_accelerate_state, tmp_path, param, launcher,
                                                              expected):
    """teacher.mixed_precision (hashed by DVC with the params) sets the precision of train_teacher's loop,
    whatever `accelerate launch` says; null leaves it to the launcher (FP32 under plain python)."""
    fresh_accelerate_state.setenv("ACCELERATE_USE_CPU", "1")
    if launcher:
        fresh_accelerate_state.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    frame = synthetic_frame("binary", n=120)
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    params = tiny_params(csv)
    (tmp_path / "prepared").mkdir()
    prepare_splits(params["data"], 0, tmp_path / "prepared")
    cfg = {**params["teacher"], "epochs": 1, "mixed_precision": param}
    with linear_output_dtypes() as seen:
        train_teacher(cfg, prepared=tmp_path / "prepared", out_dir=tmp_path / "teacher", seed=0, max_length=32)
    # the val predictions run unwrapped, in FP32: only the training steps can add bfloat16
    assert seen - {torch.float32} == expected - {torch.float32}, seen
    saved = load_file(tmp_path / "teacher" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in saved.values())


@pytest.mark.parametrize("value", ["no", False, "bfloat16"])
def test_a_bad_mixed_precision_is_one_line_error(value):
    with pytest.raises(UserError, match=r"teacher.mixed_precision=.* is not supported; choose one of: fp32, bf16, "
                                        r"fp16$"):
        check_teacher_params({"epochs": 1, "lr": 1e-3, "batch_size": 8, "mixed_precision": value})
