"""The pull-request workflow and `make report` are wired to what they claim to run."""
import subprocess
import sys

import yaml

from conftest import ROOT


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


def test_report_target_exists_and_script_writes_markdown(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    assert "\nreport:" in makefile and "scripts/report.py" in makefile
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), "HEAD"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for heading in ("## Metrics diff", "## Params diff", "## Plots diff"):
        assert heading in out.stdout
