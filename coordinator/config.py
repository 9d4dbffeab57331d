"""The coordinator's settings: command line, then environment, then a TOML file, then defaults.

``load_config`` is the one place that reads them. Every key of the file is a field of
``CoordinatorConfig`` and has an environment variable ``FEDPEER_COORDINATOR_<KEY>``
(upper case); ``docs/operations.md`` lists them. A bad value or an unknown key is a
``ConfigError`` naming the file (or variable) and the key, on one line.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.server import CoordinatorConfig
from fedpeer.errors import FedpeerError

ENV_PREFIX = "FEDPEER_COORDINATOR_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"  # names the file; not a key


class ConfigError(FedpeerError):
    """A setting is unknown or has a value the coordinator cannot use."""


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _port(value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("expected a port number 0-65535") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError("expected a port number 0-65535")
    return value


def _optional_port(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off")):
        return None
    return _port(value)


def _seconds(minimum: float, strict: bool) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError("expected a number of seconds") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number of seconds")
        if value < minimum or (strict and value == minimum) or value != value:
            raise ValueError(f"expected a number of seconds {'>' if strict else '>='} {minimum:g}")
        return float(value)

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise ValueError("expected true or false")


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_text(value)).expanduser()


@dataclass(frozen=True)
class Key:
    """One setting: how to read it and its default."""

    parse: Callable[[Any], Any]
    default: Any
    help: str


KEYS: dict[str, Key] = {
    "home": Key(_path, Path("coordinator-home"), "the coordinator home (CA, certificates)"),
    "host": Key(_text, "127.0.0.1", "address the gRPC ports listen on"),
    "port": Key(_port, 50051, "mutual-TLS port for agents, administrators, analysts"),
    "enrol_port": Key(_port, 50052, "server-TLS enrolment port"),
    "db_url": Key(_text, None, "SQLAlchemy URL of the store (default: SQLite in the home)"),
    "metrics_host": Key(_text, "127.0.0.1", "address the /metrics endpoint listens on"),
    "metrics_port": Key(_optional_port, None, "port of /metrics (unset: no endpoint)"),
    "announce_poll_seconds": Key(
        _seconds(0, True), 5.0, "how often open rounds are re-read and open streams checked"
    ),
    "grace_seconds": Key(_seconds(0, False), 5.0, "time calls in flight get at shutdown"),
    "study_step_seconds": Key(_seconds(0, True), 300.0, "a study stage's time limit"),
    "study_tick_seconds": Key(_seconds(0, True), 1.0, "how often the study clock looks"),
    "round_tick_seconds": Key(_seconds(0, True), 5.0, "how often the round clock looks"),
    "check_releases": Key(_bool, True, "check every release against its round"),
}


def env_name(key: str) -> str:
    """The environment variable of a key."""
    return ENV_PREFIX + key.upper()


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; known keys: {', '.join(KEYS)}"


def _read_file(file: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in KEYS:
            raise ConfigError(f"{file}: {_unknown(key)}")
        try:
            values[key] = KEYS[key].parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{file}: {key}: {exc}, got {raw!r}") from None
    if "home" in values and not values["home"].is_absolute():
        # A relative home in a file means beside the file, wherever the service starts.
        values["home"] = file.parent / values["home"]
    return values


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, spec in KEYS.items():
        name = env_name(key)
        if name not in env:
            continue
        raw = env[name]
        if key != "metrics_port" and not raw.strip():
            continue  # an empty variable is as good as unset
        try:
            values[key] = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"environment {name}: {exc}, got {raw!r}") from None
    return values


def load_config(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CoordinatorConfig:
    """The coordinator's settings: ``overrides`` (the command line) > ``env`` > ``file`` >
    defaults. ``env`` is ``os.environ`` when None; ``file`` may also be named by
    ``FEDPEER_COORDINATOR_CONFIG`` there."""
    env = os.environ if env is None else env
    if file is None and env.get(CONFIG_ENV, "").strip():
        file = Path(env[CONFIG_ENV].strip()).expanduser()
    values = {key: spec.default for key, spec in KEYS.items()}
    if file is not None:
        values.update(_read_file(file))
    values.update(_read_env(env))
    for key, raw in (overrides or {}).items():
        if key not in KEYS:
            raise ConfigError(f"command line: {_unknown(key)}")
        try:
            values[key] = KEYS[key].parse(raw)
        except ValueError as exc:
            raise ConfigError(f"command line: {key}: {exc}, got {raw!r}") from None
    return CoordinatorConfig(**values)
