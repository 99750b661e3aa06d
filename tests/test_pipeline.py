"""The DVC pipeline end to end on a small share of real data (synthetic when ../shared is absent)."""
import ast
import json
import re
import subprocess
from pathlib import Path

import yaml

from conftest import SHARED_DATA, synthetic_frame, tiny_params, venv_env, write_params

STAGES = ["prepare", "train_teacher", "distill", "prune", "quantize", "evaluate", "export"]


def _run(args, cwd):
    result = subprocess.run(args, cwd=cwd, env=venv_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_dvc_repro_smoke_and_caching(repo, tmp_path):
    real = SHARED_DATA / "hatespeech_binary.csv"
    if real.exists():
        data, overrides = real, {"fraction": 0.08}
    else:
        data, overrides = tmp_path / "synthetic.csv", {}
        synthetic_frame("binary", n=1200).to_csv(data, index=False)
    write_params(repo, tiny_params(data, **overrides))
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)

    out = _run(["dvc", "repro"], repo)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert set(summary["stages"]) == {"teacher", "student", "pruned", "quantized"}
    for row in summary["stages"].values():
        for key in ("macro_f1", "size_bytes", "gzip_bytes", "params", "nonzero_params", "latency_ms_p50",
                    "latency_ms_p95", "speedup", "compression"):
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row["stage"], key)
    assert summary["stages"]["teacher"]["speedup"] == 1.0
    pruned = summary["stages"]["pruned"]
    assert pruned["nonzero_params"] < summary["stages"]["student"]["nonzero_params"]
    assert json.loads((repo / "metrics" / "prune.json").read_text())["sparsity"] == \
        __import__("pytest").approx(0.5, abs=0.01)
    assert (repo / "models" / "teacher" / "inference.json").exists()
    card = (repo / "models" / "final" / "README.md").read_text(encoding="utf-8")
    assert f"{summary['stages']['quantized']['macro_f1']:.4f}" in card  # the card carries evaluate's numbers
    pooling = yaml.safe_load((repo / "params.yaml").read_text())["teacher"]["pooling"]
    for model in ("teacher", "student", "pruned", "final"):  # the student inherits the teacher's pooling
        assert json.loads((repo / "models" / model / "config.json").read_text())["pooling"] == pooling, model
    assert f"- pooling: `{pooling}`" in card

    again = _run(["dvc", "repro"], repo)
    assert "Running stage" not in again

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["distill"]["alpha"] = 0.5
    write_params(repo, params)
    status = json.loads(_run(["dvc", "status", "--json"], repo))
    assert set(status) == {"distill"}, status  # the changed param touches distill directly...
    rerun = _run(["dvc", "repro"], repo)  # ...and everything downstream of it reruns, nothing upstream
    assert re.findall(r"Running stage '(\w+)'", rerun) == ["distill", "prune", "quantize", "evaluate", "export"], rerun


def _package_imports(path: Path) -> set[str]:
    """banglacompress modules a file imports, at any depth of the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:  # from .x import y / from . import x
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif (node.module or "").startswith("banglacompress."):
            found.add(node.module.split(".")[1])
    return found


def test_every_stage_depends_on_the_package_modules_it_imports():
    """A module a stage imports but does not list as a dep would not rerun the stage when it changes."""
    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert list(stages) == STAGES
    for name, stage in stages.items():
        todo, closure = sorted(_package_imports(root / "stages" / f"{name}.py")), set()
        while todo:
            module = todo.pop()
            if module not in closure and (root / "banglacompress" / f"{module}.py").exists():
                closure.add(module)
                todo += _package_imports(root / "banglacompress" / f"{module}.py")
        listed = {d for d in stage["deps"] if d.startswith("banglacompress/")}
        assert listed == {f"banglacompress/{m}.py" for m in closure}, name
