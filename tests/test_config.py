"""The coordinator's settings: command line > environment > TOML file > defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from coordinator.ca import init_home
from coordinator.config import KEYS, ConfigError, env_name, load_config
from coordinator.server import CoordinatorConfig

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_those_of_serve() -> None:
    config = load_config(env={})
    assert config == CoordinatorConfig(
        home=Path("coordinator-home"), host="127.0.0.1", port=50051, enrol_port=50052
    )
    assert config.metrics_port is None and config.db_url is None


def test_every_key_is_a_field_and_documented() -> None:
    fields = set(CoordinatorConfig.__dataclass_fields__)
    assert set(KEYS) <= fields
    # Not settable from a file: the policy comes from the home's network.toml.
    assert fields - set(KEYS) == {"network_policy"}
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for key in KEYS:
        assert f"`{key}`" in operations and f"`{env_name(key)}`" in operations, key


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "coordinator.toml",
        """
home = "home"                 # beside the file
host = "0.0.0.0"
port = 6000
enrol_port = 6001
db_url = "postgresql+psycopg://fedpeer@db/fedpeer"
metrics_port = 9464
grace_seconds = 0
study_step_seconds = 60
check_releases = false
""",
    )
    config = load_config(file, env={})
    assert config.home == tmp_path / "home"
    assert (config.host, config.port, config.enrol_port) == ("0.0.0.0", 6000, 6001)
    assert config.db_url == "postgresql+psycopg://fedpeer@db/fedpeer"
    assert config.metrics_port == 9464 and config.metrics_host == "127.0.0.1"
    assert config.grace_seconds == 0.0 and config.study_step_seconds == 60.0
    assert config.check_releases is False
    assert config.announce_poll_seconds == 5.0  # not in the file: the default

    env = {
        "FEDPEER_COORDINATOR_PORT": "7000",
        "FEDPEER_COORDINATOR_HOME": "/srv/coord",
        "FEDPEER_COORDINATOR_METRICS_PORT": "",  # set but empty: no endpoint
        "FEDPEER_COORDINATOR_CHECK_RELEASES": "yes",
        "FEDPEER_COORDINATOR_HOST": "",  # empty: as if unset
        "FEDPEER_COORDINATOR_SOMETHING_ELSE": "ignored",
    }
    config = load_config(file, env=env)
    assert config.port == 7000 and config.home == Path("/srv/coord")
    assert config.metrics_port is None and config.check_releases is True
    assert config.host == "0.0.0.0" and config.enrol_port == 6001

    config = load_config(file, env=env, overrides={"port": 0, "metrics_port": 0})
    assert config.port == 0 and config.metrics_port == 0 and config.enrol_port == 6001


def test_the_file_may_be_named_in_the_environment(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "port = 6100\n")
    assert load_config(env={"FEDPEER_COORDINATOR_CONFIG": str(file)}).port == 6100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown key 'prot' (did you mean 'port'?); known keys: home,"),
        ("[coordinator]\nport = 1\n", "unknown key 'coordinator'"),
        ('port = "high"\n', "port: expected a port number 0-65535, got 'high'"),
        ("port = 70000\n", "port: expected a port number 0-65535, got 70000"),
        ("enrol_port = true\n", "enrol_port: expected a port number 0-65535, got True"),
        ('host = ""\n', "host: expected a non-empty string, got ''"),
        ("grace_seconds = -1\n", "grace_seconds: expected a number of seconds >= 0"),
        ("study_step_seconds = 0\n", "study_step_seconds: expected a number of seconds > 0"),
        ('check_releases = "maybe"\n', "check_releases: expected true or false"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    file = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(file, env={})
    assert str(caught.value).startswith(f"{file}: {message}")
    assert "\n" not in str(caught.value)


def test_bad_environment_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^environment FEDPEER_COORDINATOR_PORT: expected a port"
    ):
        load_config(env={"FEDPEER_COORDINATOR_PORT": "http"})
    with pytest.raises(ConfigError, match="FEDPEER_COORDINATOR_METRICS_PORT: expected a port"):
        load_config(env={"FEDPEER_COORDINATOR_METRICS_PORT": "-1"})
    assert load_config(env={"FEDPEER_COORDINATOR_METRICS_PORT": "off"}).metrics_port is None
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match=r"^command line: unknown key 'bogus'"):
        load_config(env={}, overrides={"bogus": 1})


def test_serve_reads_config_file_and_environment(tmp_path: Path) -> None:
    init_home(tmp_path / "coord")
    file = write(tmp_path / "coordinator.toml", 'home = "coord"\nport = 0\nenrol_port = 50052\n')
    env = {
        **os.environ,
        "FEDPEER_COORDINATOR_METRICS_PORT": "0",
        "FEDPEER_COORDINATOR_HOME": "",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        # The command line's enrolment port beats the file's 50052.
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "serve",
            "--config",
            str(file),
            "--enrol-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path.parent,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        metrics_url = None
        while metrics_url is None:
            assert time.monotonic() < deadline, "the coordinator did not start"
            line = proc.stdout.readline()
            assert line, "the coordinator exited"
            if line.startswith("Metrics on "):
                metrics_url = line.split()[-1]
        _, enrol_address = (tmp_path / "coord" / "address").read_text().split()
        assert not enrol_address.endswith(":50052")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(metrics_url, timeout=10) as response:
            assert response.status == 200
            assert b"fedpeer_store_up 1.0" in response.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output


def test_serve_names_a_bad_key_on_one_line(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "metrics_prot = 9464\n")
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--config", str(file)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"ConfigError: {file}: unknown key 'metrics_prot'")
    assert "Traceback" not in result.stderr
