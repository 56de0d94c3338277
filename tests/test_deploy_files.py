"""deploy/'s files, rendered as bin/cluster renders them, pass their engines' own checks.

Fast (nothing is started): every placeholder is filled, HAProxy, nginx and Prometheus accept
their files, systemd accepts the units, the units' commands are what the topology says, and the
portal's environment file is a complete production configuration. tests/test_cluster.py runs the
whole topology (ECARD_CLUSTER_TESTS=1).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """bin/cluster.py's `prepare` with its state directory in a temporary folder."""
    state = tmp_path_factory.mktemp("cluster") / "state"
    os.environ["ECARD_CLUSTER_DIR"] = str(state)
    try:
        spec = importlib.util.spec_from_file_location("cluster_under_test", ROOT / "bin" / "cluster.py")
        cluster = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cluster)
    finally:
        del os.environ["ECARD_CLUSTER_DIR"]
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing (apt-get install openssl)")
    cluster.prepare(cluster.values())
    return cluster, state


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bin/cluster up installs it as root)")
    return path


def test_every_placeholder_of_every_file_is_filled(rendered):
    _, state = rendered
    files = [path for path in state.rglob("*") if path.is_file() and path.suffix not in (".pem", ".json")]
    templates = [path for path in (ROOT / "deploy").rglob("*") if path.is_file() and path.name != "README.md"]
    assert len(files) >= len(templates)
    for path in files:
        assert not re.search(r"@\{[A-Z0-9_]+\}", path.read_text()), path


def test_haproxy_accepts_its_file(rendered):
    _, state = rendered
    result = subprocess.run(
        [_tool("haproxy"), "-c", "-f", str(state / "haproxy" / "haproxy.cfg")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_accepts_its_file(rendered):
    _, state = rendered
    nginx = state / "nginx"
    result = subprocess.run(
        [_tool("nginx"), "-t", "-e", "stderr", "-p", str(nginx), "-c", str(nginx / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_prometheus_accepts_its_file(rendered):
    _, state = rendered
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(state / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_accepts_the_units(rendered, tmp_path):
    _, state = rendered
    units = state / "systemd"
    shutil.copy(units / "ecard-worker@.service", tmp_path / "ecard-worker@deliveries.service")
    paths = [units / "ecard-web.service", units / "ecard-beat.service", tmp_path / "ecard-worker@deliveries.service"]
    result = subprocess.run([_tool("systemd-analyze"), "verify", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_units_run_web_one_queue_per_worker_and_beat(rendered):
    cluster, state = rendered
    units = state / "systemd"
    worker = cluster.unit_service("w", units / "ecard-worker@.service", "deliveries")
    assert worker.argv[:4] == [str(ROOT / ".venv" / "bin" / "celery"), "-A", "portal", "worker"]
    assert worker.argv[worker.argv.index("-Q") + 1] == "deliveries,celery"
    assert worker.argv[worker.argv.index("--concurrency") + 1] == "2"  # from ecard.env
    assert worker.env["ECARD_MODE"] == "production"
    web = cluster.unit_service("web1", units / "ecard-web.service", env={"GUNICORN_BIND": "127.0.0.1:58001"})
    assert web.argv[-2:] == ["--config", str(ROOT / "gunicorn.conf.py")]
    assert web.env["GUNICORN_BIND"] == "127.0.0.1:58001"
    beat = cluster.unit_service("beat", units / "ecard-beat.service")
    assert beat.argv[3] == "beat"
    assert beat.pre == [["/bin/sh", "-c", f"rm -f {state}/celerybeat-schedule*"]]


def test_the_environment_file_is_a_complete_production_configuration(rendered):
    """Production mode refuses to start without every key, host and service: the rendered
    ecard.env has them all. The one deploy warning is the redirect to https, which nginx does."""
    cluster, state = rendered
    env = {"PATH": os.environ["PATH"], **cluster.read_env_file(state / "ecard.env")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(re.findall(r"\((security\.\w+)\)", result.stdout + result.stderr)) <= {"security.W008"}
