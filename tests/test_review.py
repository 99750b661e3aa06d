"""The pull-request workflow and `make report` are wired to what they claim to run, and the report reads
as its rules say: a per-stage table (base, new, change) first, every change marked against the seed noise
in bench/SEEDS.json, timing labelled noisy and never counted, the full dvc diffs in a <details> block,
PNG plots at the paths the markdown references, and no change outside timing on an unchanged workspace.

Most checks run scripts/report.py in a small git + DVC repo built from tests/fixtures_report/, in three
states: unchanged, timings re-measured only, and changed (new speed.json layout, SEEDS.json, a param)."""
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures_report"
SCRIPT = ROOT / "scripts" / "report.py"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
TIMING_HEADING = "## Timing per stage (timing: noisy, machine-dependent)"
MARKS = ("within noise", "outside noise", "noise unknown")


@functools.cache
def _report_module():
    spec = importlib.util.spec_from_file_location("review_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, cwd, timeout=120):
    out = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stderr}"
    return out.stdout


def _report(repo) -> str:
    _run([sys.executable, str(SCRIPT), "HEAD", "--out", "report.md", "--skip-dvc-plots"], repo)
    return (repo / "report.md").read_text(encoding="utf-8")


def _curve(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step\tmacro_f1\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))


def _section(md: str, heading: str) -> str:
    start = md.index(heading)
    end = md.find("\n## ", start + len(heading))
    return md[start:] if end < 0 else md[start:end]


def _table(section: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, stage -> column -> cell) of the first markdown table in `section`."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header = cells[0]
    return header, {row[0].strip("`"): dict(zip(header, row)) for row in cells[2:]}


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    repo = tmp_path_factory.mktemp("review_repo")
    _run(["git", "init", "-q"], repo)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    (repo / "metrics").mkdir()
    shutil.copy(FIXTURES / "base_summary.json", repo / "metrics" / "summary.json")
    shutil.copy(FIXTURES / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(FIXTURES / "params.yaml", repo / "params.yaml")
    curves = {stage: repo / "plots" / stage / "plots" / "metrics" / "val" / "macro_f1.tsv"
              for stage in ("train_teacher", "distill", "prune")}
    for stage, path in curves.items():
        _curve(path, [0.70, 0.75, 0.78])
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "base"], repo)
    out = {"repo": repo, "unchanged": _report(repo)}

    # Timings re-measured, nothing else: still no change outside the timing section.
    summary = json.loads((FIXTURES / "base_summary.json").read_text())
    for row in summary["stages"].values():
        row["latency_ms_p50"] *= 1.5
        row["throughput_per_s"] /= 1.5
        row["speedup"] *= 1.1
    (repo / "metrics" / "summary.json").write_text(json.dumps(summary, indent=1))
    out["timing_only"] = _report(repo)

    # Changed: quality/size moved on both sides of 2 x std, timings move to metrics/speed.json.
    shutil.copy(FIXTURES / "new_summary.json", repo / "metrics" / "summary.json")
    shutil.copy(FIXTURES / "new_speed.json", repo / "metrics" / "speed.json")
    (repo / "bench").mkdir()
    shutil.copy(FIXTURES / "SEEDS.json", repo / "bench" / "SEEDS.json")
    (repo / "params.yaml").write_text((FIXTURES / "params.yaml").read_text().replace("0.7", "0.5"))
    _curve(curves["distill"], [0.72, 0.77, 0.79, 0.80])
    out["changed"] = _report(repo)
    out["metrics_diff"] = _run([sys.executable, "-m", "dvc", "metrics", "diff", "HEAD", "--md"], repo)
    out["params_diff"] = _run([sys.executable, "-m", "dvc", "params", "diff", "HEAD", "--md"], repo)
    return out


def test_workflow_yaml_is_valid_and_runs_pipeline_and_cml():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pipeline-review.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in triggers
    steps = workflow["jobs"]["review"]["steps"]
    commands = "\n".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps]
    assert "make repro" in commands and "make report" in commands and "cml comment create" in commands
    assert any(u.startswith("iterative/setup-cml") for u in uses)
    assert any(u.startswith("actions/checkout") for u in uses)


def test_make_report_writes_report_md_beside_its_plots_which_git_ignores():
    """CML resolves an image path against report.md's folder: the workflow comments ./report.md, and
    `make report` writes it with report_plots/ beside it (both ignored by git)."""
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\nreport:"):].split("\n\n")[0]
    assert "scripts/report.py $(BASE) --out report.md" in target
    workflow = (ROOT / ".github" / "workflows" / "pipeline-review.yml").read_text()
    assert re.search(r"cml comment create .*\breport\.md\b", workflow)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "report.md" in ignored and any(line.strip("/") == "report_plots" for line in ignored)


def test_report_opens_with_a_stage_table_with_base_new_and_change(review):
    md = review["changed"]
    assert md.index("## Quality and size per stage") < md.index(TIMING_HEADING) < md.index("<details>")
    assert not re.search(r"^## ", md[:md.index("## Quality and size per stage")], re.M)  # the first section
    header, rows = _table(_section(md, "## Quality and size per stage"))
    assert header == ["stage"] + [f"{m} {side}" for m in ("test macro-F1", "size (MB)")
                                  for side in ("base", "new", "change")]
    assert list(rows) == ["teacher", "student", "pruned", "quantized", "teacher_onnx_int8"]
    assert rows["teacher"]["size (MB) base"] == "20.000" and rows["teacher"]["test macro-F1 new"] == "0.8030"
    # a row that does not exist at base shows a dash, not a change
    onnx = rows["teacher_onnx_int8"]
    assert onnx["test macro-F1 base"] == "–" and onnx["test macro-F1 change"] == "–"
    assert onnx["size (MB) new"] == "5.400"

    header, rows = _table(_section(md, TIMING_HEADING))
    assert header == ["stage"] + [f"{m} {side}" for m in ("e2e p50 latency (ms)", "forward p50 latency (ms)",
                                                          "e2e speedup vs teacher (×)",
                                                          "e2e speedup vs teacher in ORT INT8 (×)")
                                  for side in ("base", "new", "change (timing: noisy)")]
    assert list(rows) == ["teacher", "student", "pruned", "quantized", "teacher_onnx_int8"]
    # base timings from the base summary rows (no speed.json there), new ones from metrics/speed.json
    teacher = rows["teacher"]
    assert teacher["forward p50 latency (ms) base"] == "8.00" and teacher["forward p50 latency (ms) new"] == "9.00"
    assert rows["student"]["e2e speedup vs teacher (×) new"] == "4.50"


def test_noise_marking_follows_the_two_std_rule(review):
    """Fixture SEEDS.json std and values on both sides of 2 x std (see tests/fixtures_report/)."""
    md = review["changed"]
    _, rows = _table(_section(md, "## Quality and size per stage"))
    f1 = {stage: row["test macro-F1 change"] for stage, row in rows.items()}
    size = {stage: row["size (MB) change"] for stage, row in rows.items()}
    assert f1["teacher"] == "+0.0030 (within noise, 2σ 0.0040)"      # 0.003 <= 2 x 0.002
    assert f1["student"] == "−0.0100 (**outside noise**, 2σ 0.0040)"  # 0.010 > 2 x 0.002
    assert f1["pruned"] == "0 (no change)"
    assert f1["quantized"] == "+0.0040 (noise unknown)"              # SEEDS.json has no std for it
    assert size["teacher"] == "+150 B (within noise, 2σ 200 B)"
    assert size["student"] == "+500 B (**outside noise**, 2σ 200 B)"
    assert size["quantized"] == "+10 B (**outside noise**, 2σ 0 B)"   # std 0: any change is outside
    rule = [line for line in md.splitlines() if line.startswith("Noise rule:")]
    assert len(rule) == 1 and "|change| ≤ 2 × std" in rule[0] and "noise unknown" in rule[0]
    assert "seeds 42, 43, 44" in rule[0]
    verdict = md.splitlines()[4]
    assert verdict.startswith("**3 quality/size change(s) outside seed noise:**")

    # Without SEEDS.json every change is "noise unknown" (the timing-only state has none).
    _, rows = _table(_section(review["timing_only"], TIMING_HEADING))
    assert all(row["forward p50 latency (ms) change (timing: noisy)"].endswith("(noise unknown)")
               for row in rows.values())


@pytest.mark.parametrize("change, std, verdict", [
    (0.0, None, "no change"), (0.0, 0.1, "no change"), (0.5, None, "noise unknown"),
    (1.0, 0.5, "within noise"), (-1.0, 0.5, "within noise"), (1.0000001, 0.5, "outside noise"),
    (-0.25, 0.1, "outside noise"), (1e-9, 0.0, "outside noise"), (None, 0.1, "")])
def test_noise_verdict(change, std, verdict):
    assert _report_module().noise_verdict(change, std) == verdict


def test_timing_is_labelled_noisy_and_never_counts_as_a_change(review):
    md = review["changed"]
    timing = _section(md, TIMING_HEADING)
    assert "timing: noisy, machine-dependent" in timing and "never counted as a change" in timing
    _, rows = _table(timing)
    assert rows["teacher"]["forward p50 latency (ms) change (timing: noisy)"] == "+1.00 (outside noise, 2σ 0.20)"
    verdict = md.splitlines()[4]  # lists the student F1, student size and quantized size only
    assert "latency" not in verdict.split("Timing")[0] and "speedup" not in verdict.split("Timing")[0]
    assert "(timing: noisy, machine-dependent; not counted)" in verdict

    only = review["timing_only"]
    assert only.splitlines()[4].startswith("**No change in quality or size.** Timing changed in 8 cell(s)")
    _, rows = _table(_section(only, "## Quality and size per stage"))
    assert all(row[c] == "0 (no change)" for row in rows.values() for c in row if c.endswith("change"))
    _, rows = _table(_section(only, TIMING_HEADING))
    assert rows["teacher"]["forward p50 latency (ms) change (timing: noisy)"] == "+4.00 (noise unknown)"
    assert "dvc metrics diff: 0 non-timing and 12 timing metric(s) changed" in only


def test_details_block_holds_the_full_dvc_diffs(review):
    md = review["changed"]
    block = md[md.index("<details>"):md.index("</details>")]
    assert md.index("</details>") > md.index("<details>") > md.index(TIMING_HEADING)
    assert re.match(r"<details><summary>[^<]+</summary>\n\n", block)  # blank line: GitHub renders the tables
    changed = [row for row in _report_module().md_table_rows(review["metrics_diff"])]
    timing = sum(1 for row in changed if _report_module().is_timing(row[1]))
    assert timing and f"dvc metrics diff: {len(changed) - timing} non-timing and {timing} timing" in block
    assert "dvc params diff: 1 param(s) changed" in block
    for diff in (review["metrics_diff"], review["params_diff"]):
        lines = [line for line in diff.splitlines() if line.strip()]
        assert len(lines) > 2 and all(line in block for line in lines)
    assert "stages.student.macro_f1" in block and "stages.teacher.latency_ms_p50" in block
    assert "distill.alpha" in block


def test_plots_are_pngs_at_the_paths_the_markdown_references(review):
    repo, md = review["repo"], review["changed"]
    refs = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md)
    assert refs == ["report_plots/val_macro_f1.png", "report_plots/tradeoff.png"]
    for ref in refs:
        data = (repo / ref).read_bytes()  # relative to report.md's folder, as CML resolves it
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in (repo / "report_plots").iterdir()) == ["tradeoff.png", "val_macro_f1.png"]
    # no markdown link to a local file other than the images (CML would upload it too)
    assert re.findall(r"(?<!!)\[[^\]]*\]\(([^)]+)\)", md) == []


def test_unchanged_workspace_shows_no_change_outside_timing(review):
    md = review["unchanged"]
    assert md.splitlines()[4] == "**No change in quality or size.**"
    _, rows = _table(_section(md, "## Quality and size per stage"))
    assert list(rows) == ["teacher", "student", "pruned", "quantized"]
    assert all(row[c] == "0 (no change)" for row in rows.values() for c in row if c.endswith("change"))
    block = md[md.index("<details>"):md.index("</details>")]
    assert "0 non-timing and 0 timing metric(s) changed" in block and "0 param(s) changed" in block
    assert block.count("_No changes._") == 2
    outside_timing = md.replace(_section(md, TIMING_HEADING), "")
    outside_timing = "\n".join(line for line in outside_timing.splitlines() if not line.startswith("Noise rule:"))
    assert not any(mark in outside_timing for mark in MARKS)
    assert not re.search(r"[+−]\d", outside_timing)  # no signed change anywhere outside timing


def test_report_on_this_repo_covers_every_stage_row(tmp_path):
    """The real layout: every row of metrics/summary.json `stages` (workspace or HEAD) gets a table row."""
    out = subprocess.run([sys.executable, str(SCRIPT), "HEAD", "--out", str(tmp_path / "report.md"),
                          "--skip-dvc-plots"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in ("## Quality and size per stage", TIMING_HEADING, "## Full DVC diffs", "## Plots"):
        assert heading in md
    stages = set()
    for text in (subprocess.run(["git", "show", "HEAD:./metrics/summary.json"], cwd=ROOT, capture_output=True,
                                text=True).stdout, (ROOT / "metrics" / "summary.json").read_text()):
        try:
            stages |= set(json.loads(text)["stages"])
        except (ValueError, KeyError):
            pass
    _, rows = _table(_section(md, "## Quality and size per stage"))
    assert stages and stages <= set(rows)
    for ref in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md):
        assert (tmp_path / ref).is_file()
