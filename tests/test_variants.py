"""Pipeline variants (params.yaml `pipeline:`): every one runs distill → export on tiny data. A stage the
variant leaves out copies its input model byte for byte and says so in its metrics; evaluate reports only
the models that were made and names the last one, which export ships and reports."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_project, run_stage, synthetic_frame, tiny_params, venv_env, write_params

# The models evaluate must report per variant, in order. Written out, not derived from PIPELINES,
# so a wrong entry in that table fails here.
EXPECTED_ROWS = {
    "baseline": ["teacher"],
    "kd_only": ["teacher", "student"],
    "prune_only": ["teacher", "pruned"],
    "quant_only": ["teacher", "quantized"],
    "kd_prune": ["teacher", "student", "pruned"],
    "kd_quant": ["teacher", "student", "quantized"],
    "prune_quant": ["teacher", "pruned", "quantized"],
    "kd_prune_quant": ["teacher", "student", "pruned", "quantized"],
}
# stage -> (its input model, its output model); the model names are also evaluate's row names
STAGE_IO = {"distill": ("teacher", "student"), "prune": ("student", "pruned"), "quantize": ("pruned", "quantized")}


# One thread: these models are tiny, and two threads on a busy 2-core machine make every step many times
# slower (the threads wait for each other); the same goes for the latency loops (threads params).
SINGLE_THREAD = {**venv_env(), "OMP_NUM_THREADS": "1"}

# Runs stage scripts one after another in one Python process, each as `python stages/<stage>.py` would
# (runpy, as __main__). Importing torch and transformers takes ~5 s a process on 2 cores, more than most
# of these tiny stages: once per variant instead of once per stage keeps the file near 2 minutes.
STAGES_IN_ONE_PROCESS = """
import runpy, sys
for stage in sys.argv[1:]:
    sys.argv[0] = f"stages/{stage}.py"  # stage_main names its messages after it
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(repo: Path, *stages: str) -> None:
    result = subprocess.run([sys.executable, "-c", STAGES_IN_ONE_PROCESS, *stages], cwd=repo, env=SINGLE_THREAD,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{stages}:\n{result.stderr[-3000:]}"


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(f.name for f in a.iterdir())
    return names == sorted(f.name for f in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """prepare and train_teacher once; every variant starts from a copy of this repo."""
    base = tmp_path_factory.mktemp("variants")
    data = base / "synthetic.csv"
    synthetic_frame("binary", n=300).to_csv(data, index=False)
    template = copy_project(base / "template")
    params = tiny_params(data)
    # The variants are about which stages run, not how: pin the cheapest methods, whatever the defaults are,
    # and time few texts on one thread (see SINGLE_THREAD).
    params["prune"].update(method="magnitude", kd_alpha=0.0)
    params["quantize"].update(method="dynamic", embedding_bits=None)  # embedding_bits is onnx_int8's
    params["evaluate"].update(threads=1, latency_samples=5, references=False)  # the smoke test covers them
    # Mean pooling here (the default, cls, runs in test_pipeline): every stage must carry it through.
    params["teacher"]["pooling"] = "mean"
    write_params(template, params)
    _run(template, "prepare", "train_teacher")
    return template


@pytest.mark.parametrize("variant", EXPECTED_ROWS)
def test_variant_runs_only_its_stages(trained, tmp_path, variant):
    repo = tmp_path / "repo"
    shutil.copytree(trained, repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pipeline"] = variant
    write_params(repo, params)
    _run(repo, "distill", "prune", "quantize", "evaluate", "export")

    rows = EXPECTED_ROWS[variant]
    models = repo / "models"
    for stage, (src, dst) in STAGE_IO.items():
        metrics = json.loads((repo / "metrics" / f"{stage}.json").read_text())
        if dst in rows:
            assert "skipped" not in metrics, (stage, metrics)
            assert not _same_files(models / src, models / dst), stage
        else:
            assert metrics["skipped"] is True and metrics["pipeline"] == variant, (stage, metrics)
            assert _same_files(models / src, models / dst), f"{stage} left out: models/{dst} is not a copy"
    for model in ("teacher", "student", "pruned", "quantized", "final"):
        config = json.loads((models / model / "config.json").read_text())
        assert config["pooling"] == "mean", model  # the student inherits it (student.pooling: teacher)
    for plots in ("plots/distill", "plots/prune"):  # DVC outputs: they must exist either way
        assert any((repo / plots).iterdir()), plots

    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert list(summary["stages"]) == rows  # evaluate.references is off here; the smoke test covers those rows
    assert summary["pipeline"] == variant and summary["final"] == rows[-1]
    assert ("agreement_with_fp32" in summary["stages"][rows[-1]]) == (rows[-1] == "quantized")
    # export reloaded models/quantized (FP32 when quantize was left out) and reports the final row.
    exported = json.loads((repo / "metrics" / "export.json").read_text())
    assert exported["test_macro_f1"] == summary["stages"][rows[-1]]["macro_f1"]
    assert exported["method"] == ("dynamic" if rows[-1] == "quantized" else "none")


def test_unknown_pipeline_is_one_line_error(repo, tmp_path):
    data = tmp_path / "synthetic.csv"
    synthetic_frame("binary", n=300).to_csv(data, index=False)
    params = tiny_params(data)
    params["pipeline"] = "nonsense"
    write_params(repo, params)
    result = run_stage(repo, "distill")  # fails on the param, before it looks for data or models
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: distill: pipeline='nonsense' is not supported; choose one of: baseline, kd_only, "
                      "prune_only, quant_only, kd_prune, kd_quant, prune_quant, kd_prune_quant"], result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "models").exists() and not (repo / "metrics").exists()
