"""The DVC pipeline end to end on synthetic data whose labels a tiny model can learn (marker words):
stages, caching, what reruns after a change, and that every stage really learned."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import STAGES, synthetic_frame, tiny_params, venv_env, write_params

ROWS = {"teacher", "teacher_onnx_fp32", "teacher_onnx_int8", "student", "pruned", "quantized"}


def _run(args, cwd):
    result = subprocess.run(args, cwd=cwd, env=venv_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_dvc_repro_smoke_and_caching(repo, tmp_path):
    # Always synthetic: the same data on every machine, so the quality bars below mean the same everywhere
    # (real data is exercised by the marked real-data tests and the benchmarks).
    data, overrides = tmp_path / "synthetic.csv", {}
    synthetic_frame("binary", n=1200).to_csv(data, index=False)
    params = tiny_params(data, **overrides)
    params["pretrain"]["enabled"] = "auto"  # as shipped: the scratch teacher starts from models/pretrained
    params["distill"]["transfer"] = "corpus"  # as shipped: distilled on the pretraining corpus too
    # Fine-tuning a pretrained encoder wants a lower lr (as the default teacher.lr): at tiny_params' 0.003
    # over 3 epochs this tiny pretrained teacher stayed at the majority class; 0.001 over 4 learns it.
    params["teacher"].update(lr=0.001, epochs=4)
    write_params(repo, params)
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)

    out = _run(["dvc", "repro"], repo)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    speed = json.loads((repo / "metrics" / "speed.json").read_text())
    assert set(summary["stages"]) == set(speed["stages"]) == ROWS
    rows = summary["stages"]
    # Marker words decide the label: a teacher that learned nothing scores ~0.33-0.5; every stage must have learned.
    assert rows["teacher"]["macro_f1"] > 0.9, rows["teacher"]["macro_f1"]
    for name in ROWS - {"teacher"}:
        assert rows[name]["f1_retained"] > 0.9, (name, rows[name]["macro_f1"])
    # The ONNX references are the teacher: the same decisions; INT8 is smaller; the chain is smaller still.
    assert rows["teacher_onnx_fp32"]["agreement_with_teacher"] > 0.99
    assert rows["teacher_onnx_int8"]["size_bytes"] < 0.5 * rows["teacher_onnx_fp32"]["size_bytes"]
    assert rows["quantized"]["size_bytes"] < rows["pruned"]["size_bytes"] < rows["student"]["size_bytes"]
    assert rows["quantized"]["compression_vs_teacher_onnx_int8"] == \
        rows["teacher_onnx_int8"]["size_bytes"] / rows["quantized"]["size_bytes"]
    for row in rows.values():
        assert not any("latency" in key or "speedup" in key or "throughput" in key or "e2e" in key for key in row)
    for name, row in speed["stages"].items():
        for key in ("e2e_ms_p50", "e2e_ms_p95", "e2e_throughput_b64", "latency_ms_p50", "throughput_per_s",
                    "speedup", "speedup_vs_teacher_onnx_int8"):
            assert isinstance(row[key], float) and row[key] > 0, (name, key)
        assert row["e2e_ms_p50"] <= row["e2e_ms_p95"]
    assert speed["stages"]["teacher"]["speedup"] == speed["stages"]["teacher_onnx_int8"][
        "speedup_vs_teacher_onnx_int8"] == 1.0
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
    # The teacher was fine-tuned from the pretrained encoder: its tokenizer is the pretraining one, and
    # the pretraining really ran (one epoch on the train split, no evaluation text).
    pretrained = json.loads((repo / "metrics" / "pretrain.json").read_text())
    assert "skipped" not in pretrained and pretrained["epochs"] == 1, pretrained
    assert (repo / "models" / "teacher" / "tokenizer.json").read_bytes() == \
        (repo / "models" / "pretrained" / "tokenizer.json").read_bytes()
    assert json.loads((repo / "metrics" / "pretrain_corpus.json").read_text())["total"]["eval_overlap"] == 0

    again = _run(["dvc", "repro"], repo)
    assert "Running stage" not in again

    # A fine-tuning param reruns train_teacher and what follows, never the pretraining.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"]["lr"] = 0.002
    write_params(repo, params)
    assert set(json.loads(_run(["dvc", "status", "--json"], repo))) == {"train_teacher"}
    params["teacher"]["lr"] = 0.001
    write_params(repo, params)
    assert "Running stage" not in _run(["dvc", "repro"], repo)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["distill"]["alpha"] = 0.5
    write_params(repo, params)
    status = json.loads(_run(["dvc", "status", "--json"], repo))
    assert set(status) == {"distill"}, status  # the changed param touches distill directly...
    rerun = _run(["dvc", "repro"], repo)  # ...and everything downstream of it reruns, nothing upstream
    assert re.findall(r"Running stage '(\w+)'", rerun) == ["distill", "prune", "quantize", "evaluate", "export"], rerun

    # Rewording the model card touches export.py, which only the export stage imports: export alone reruns,
    # and the new wording is what ships.
    export_py = repo / "banglacompress" / "export.py"
    text = export_py.read_text(encoding="utf-8")
    assert text.count("## Intended use and limits") == 1
    export_py.write_text(text.replace("## Intended use and limits", "## What it is for, and its limits"),
                         encoding="utf-8")
    assert set(json.loads(_run(["dvc", "status", "--json"], repo))) == {"export"}
    rerun = _run(["dvc", "repro"], repo)
    assert re.findall(r"Running stage '(\w+)'", rerun) == ["export"], rerun
    assert "## What it is for, and its limits" in (repo / "models" / "final" / "README.md").read_text(encoding="utf-8")


def _package_graph(root: Path) -> dict[str, set[str]]:
    return {p.stem: _package_imports(p) for p in sorted((root / "banglacompress").glob("*.py")) if p.stem != "__init__"}


def test_package_imports_run_one_way_and_sit_at_the_top():
    """Every module imports only modules listed before it in the package docstring's module map (so the
    import graph has no cycle), and only at module level: an import hidden inside a function is how the
    old quantize <-> export <-> evaluate circle was dodged, and it hides a dependency from dvc.yaml."""
    import banglacompress

    root = Path(__file__).resolve().parents[1]
    graph = _package_graph(root)
    order = [line.split()[0] for line in banglacompress.__doc__.splitlines() if line.startswith("    ")]
    assert sorted(order) == sorted(graph), "the module map in banglacompress/__init__.py lists every module once"
    for module, imports in graph.items():
        above = set(order[: order.index(module)])
        assert imports <= above, f"{module} imports {sorted(imports - above)}, which are not below it"
    for path in (root / "banglacompress").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        nested = [node.lineno for node in ast.walk(tree)
                  if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top
                  and not _lazy_third_party(path.stem, node)]
        assert not nested, f"{path.name}: imports inside functions at lines {nested}"


# The exceptions: a heavy backend that only some inputs need, imported by the one function that hands it out.
# module -> (packages, package modules, why). Package modules only in predict, which no stage imports (a test
# below), so no stage's dvc.yaml deps can miss them.
LAZY_IMPORTS = {"quantize": (("bitsandbytes",), (), "~2 s of import (torch._inductor; bench/import_time.md) in every "
                                                    "quantize, evaluate, export and predict process; only int4 uses it"),
                "predict": (("torch",), ("artifact", "inference"),
                            "an ONNX model is labelled without the training stack (requirements-runtime.txt only; "
                            "bench/cold_start.md); only the other formats need load_artifact")}


def _lazy_third_party(module: str, node) -> bool:
    """`import <package>[.sub]` of a LAZY_IMPORTS package, or `from .<module> import ...` of a LAZY_IMPORTS
    package module, of this module."""
    packages, modules, _ = LAZY_IMPORTS.get(module, ((), (), ""))
    if isinstance(node, ast.ImportFrom):
        return node.level == 1 and node.module in modules
    return all(any(a.name == p or a.name.startswith(p + ".") for p in packages) for a in node.names)


def test_no_stage_imports_predict():
    """predict's lazy imports of package modules are safe only while no stage depends on predict."""
    root = Path(__file__).resolve().parents[1]
    for name in STAGES:
        todo, closure = sorted(_package_imports(root / "stages" / f"{name}.py")), set()
        while todo:
            module = todo.pop()
            if module not in closure:
                closure.add(module)
                todo += _package_imports(root / "banglacompress" / f"{module}.py")
        assert "predict" not in closure, name


def test_only_int4_imports_bitsandbytes():
    """Loading and evaluating any non-int4 model never imports bitsandbytes (LAZY_IMPORTS says why): the
    stages that handle quantized models and the predict CLI start without it; int4 itself still gets it."""
    code = ("import sys, stages.quantize, stages.evaluate, stages.export, banglacompress.predict\n"
            "assert 'bitsandbytes' not in sys.modules, 'bitsandbytes imported at start-up'\n"
            "from banglacompress.quantize import bnb\n"
            "assert bnb().nn.Linear4bit and bnb().functional.dequantize_4bit and 'bitsandbytes' in sys.modules\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=venv_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_cycle_check_catches_a_cycle():
    """The check above fails on the circle it names (quantize -> artifact -> quantize)."""
    root = Path(__file__).resolve().parents[1]
    graph = _package_graph(root)
    graph["quantize"] = graph["quantize"] | {"artifact"}
    assert _cycle(graph) in (["quantize", "artifact", "quantize"], ["artifact", "quantize", "artifact"])
    assert _cycle(_package_graph(root)) is None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as a path, or None (depth-first search)."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_prune_stage_does_not_depend_on_export_quantize_or_onnx_code():
    root = Path(__file__).resolve().parents[1]
    deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["prune"]["deps"]
    assert not {f"banglacompress/{m}.py" for m in ("export", "quantize", "onnx_format", "artifact", "evaluate")} \
        & set(deps)


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
