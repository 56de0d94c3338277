"""deploy/prometheus: the alert rules and the example configuration pass promtool's checks, and
the rules' unit tests (alerts_test.yml) pass: each alert fires on its series, not on healthy ones."""

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is missing (apt-get install prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False)


def test_the_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_the_alert_rules_unit_tests_pass():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_is_refused(tmp_path):
    # The check can fail: a rule with a syntax error in its expression is reported.
    (tmp_path / "bad.yml").write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(\n")
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "bad.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
