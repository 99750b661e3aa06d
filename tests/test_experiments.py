"""scripts/queue_experiments.py: the predecessor's planned experiments with the right overrides, every
override naming a real params.yaml key, and one experiment really queued with DVC."""
import copy
import importlib.util
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from banglacompress.config import ParamsLoader, UserError, load_params
from banglacompress.distill import check_distill_params
from banglacompress.prune import check_prune_params
from banglacompress.quantize import check_quantize_params
from conftest import ROOT, venv_env

SCRIPT = ROOT / "scripts" / "queue_experiments.py"

# Written out here, not imported from the script, so a changed value in its table fails this test.
PLANNED = {
    "baseline_v1": {"pipeline": "baseline", "teacher.batch_size": 32, "teacher.lr": 2e-5, "teacher.epochs": 15},
    "baseline_v2": {"pipeline": "baseline", "teacher.batch_size": 32, "teacher.lr": 1e-5, "teacher.epochs": 20},
    "baseline_v3": {"pipeline": "baseline", "teacher.batch_size": 64, "teacher.lr": 3e-5, "teacher.epochs": 15},
    "baseline_v4": {"pipeline": "baseline", "teacher.freeze_base": True},
    "kd_v1": {"pipeline": "kd_only", "distill.alpha": 0.5, "distill.temperature": 4},
    "kd_v2": {"pipeline": "kd_only", "distill.alpha": 0.7, "distill.temperature": 4},
    "kd_v3": {"pipeline": "kd_only", "distill.alpha": 0.2, "distill.temperature": 2},
    "prune_v1": {"pipeline": "kd_prune", "prune.method": "magnitude", "prune.sparsity": 0.3,
                 "prune.fine_tune_epochs": 3},
    "prune_v2": {"pipeline": "kd_prune", "prune.method": "magnitude", "prune.sparsity": 0.5,
                 "prune.fine_tune_epochs": 5},
    "prune_v3": {"pipeline": "kd_prune", "prune.method": "wanda", "prune.sparsity": 0.5, "prune.fine_tune_epochs": 5},
    "quant_v1": {"pipeline": "kd_prune_quant", "quantize.method": "dynamic"},
    "quant_v2": {"pipeline": "kd_prune_quant", "quantize.method": "static"},
    "quant_v3": {"pipeline": "kd_prune_quant", "quantize.method": "int4"},
    "quant_v4": {"pipeline": "kd_prune_quant", "quantize.method": "fp16"},
}


def _script(*args, cwd=ROOT, timeout=60):
    return subprocess.run([sys.executable, str(cwd / "scripts" / SCRIPT.name), *args], cwd=cwd, env=venv_env(),
                          capture_output=True, text=True, timeout=timeout)


def _queued_overrides(stdout: str) -> dict:
    """`dvc exp run --queue -n NAME -S k=v ...` lines -> {NAME: {k: v}}, values read the way the stages read
    params.yaml (DVC writes 2e-5 back as 2e-05, which load_params reads as a float)."""
    queued = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words[:4] == ["dvc", "exp", "run", "--queue"] and words[4] == "-n", line
        pairs = [words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-S"]
        queued[words[5]] = {key: yaml.load(value, Loader=ParamsLoader) for key, value in pairs}
    return queued


def _has_key(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_dry_run_queues_every_planned_experiment_with_its_overrides():
    result = _script("--dry-run")
    assert result.returncode == 0, result.stderr
    assert _queued_overrides(result.stdout) == PLANNED


def test_every_override_is_a_params_key():
    params = load_params(ROOT / "params.yaml")
    keys = {key for overrides in PLANNED.values() for key in overrides}
    assert [k for k in sorted(keys) if not _has_key(params, k)] == []
    # ...and the script itself refuses a table with a typo, before queuing anything.
    spec = importlib.util.spec_from_file_location("queue_experiments", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.EXPERIMENTS["typo_v1"] = {"teacher.lrr": 1e-4}
    assert module.unknown_keys(params) == ["typo_v1: teacher.lrr"]


def test_every_experiment_passes_the_stage_param_checks():
    """An option the chosen method does not take is an error, so each experiment must unset the options of
    the default method it replaces (embedding_bits is onnx_int8's): checked here, not an hour into a queue."""
    base = load_params(ROOT / "params.yaml")
    for name, overrides in PLANNED.items():
        params = copy.deepcopy(base)
        for key, value in overrides.items():
            group, _, leaf = key.rpartition(".")
            (params[group] if group else params)[leaf] = value
        check_distill_params(params["distill"])
        check_prune_params(params["prune"])
        check_quantize_params(params["quantize"])
    params = copy.deepcopy(base)
    params["quantize"].update(method="dynamic", embedding_bits=4)  # onnx_int8's option left set
    with pytest.raises(UserError, match="quantize.embedding_bits=4 is set, but quantize.method=dynamic"):
        check_quantize_params(params["quantize"])


def test_unknown_name_is_one_line_error():
    result = _script("--dry-run", "--only", "kd_v1", "kd_v9")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: queue_experiments: unknown experiment(s): kd_v9; choose from: baseline_v1")
    assert len(result.stderr.strip().splitlines()) == 1


def test_queues_one_experiment_in_a_dvc_repo(repo):
    (repo / "scripts").mkdir()
    shutil.copy(SCRIPT, repo / "scripts")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(args, cwd=repo, env=venv_env(), check=True, capture_output=True)
    try:
        result = _script("--only", "kd_v1", cwd=repo)
        status = subprocess.run(["dvc", "queue", "status"], cwd=repo, env=venv_env(), capture_output=True, text=True,
                                timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("queuing with DVC took over 60 s on this machine")
    assert result.returncode == 0, result.stderr
    assert "dvc queue start -j 1" in result.stdout and "dvc exp apply NAME" in result.stdout
    assert status.returncode == 0, status.stderr
    assert any("kd_v1" in line and "Queued" in line for line in status.stdout.splitlines()), status.stdout
