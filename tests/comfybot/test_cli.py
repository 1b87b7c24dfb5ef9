"""The ``comfybot`` command: help, config errors, run/doctor hand-over to comfybot.app, monitor, trace."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from comfybot.cli import main
from core.config import CONFIG_ENV, ENV_VARS, MODEL_PREFIX, Settings

from .samples import RID, rec, write, write_request

REPO = Path(__file__).resolve().parents[2]


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ENV_VARS and k != CONFIG_ENV and not k.startswith(MODEL_PREFIX)
    }


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment with LOG_DIR in tmp; returns the log dir."""
    for key in list(os.environ):
        if key in ENV_VARS or key == CONFIG_ENV or key.startswith(MODEL_PREFIX):
            monkeypatch.delenv(key)
    log_dir = tmp_path / "logs"
    monkeypatch.setenv("LOG_DIR", str(log_dir))
    return log_dir


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    calls: list[tuple[str, Settings]] = []

    async def run(settings: Settings) -> None:
        calls.append(("run", settings))
        structlog.get_logger().info(
            "app_started",
            token=settings.telegram.bot_token.get_secret_value() if settings.telegram.bot_token else None,
        )

    def doctor(settings: Settings) -> int:
        calls.append(("doctor", settings))
        return 3

    module = types.ModuleType("comfybot.app")
    module.run = run  # type: ignore[attr-defined]
    module.doctor = doctor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comfybot.app", module)
    return types.SimpleNamespace(calls=calls)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfybot", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**_clean_env(), **(env or {})},
    )


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "doctor", "config", "monitor", "trace", "workflow"):
        assert f"    {command} " in result.stdout


def test_bad_config_is_one_line_and_exit_2_in_a_real_process() -> None:
    result = run_cli("run", env={"COMFYUI_URLS": "ftp://x"})
    assert result.returncode == 2
    assert result.stderr == "comfybot: config error: COMFYUI_URLS: 'ftp://x' is not an http(s) URL\n"
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["run", "doctor", "config"])
def test_bad_config_every_command(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("comfybot: config error: LOG_LEVEL: 'LOUD'")


def test_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[comfy]\nurls = ['gopher://x']\n")
    assert main(["--config", str(path), "config"]) == 2
    assert capsys.readouterr().err == (
        f"comfybot: config error: {path} [comfy] urls: 'gopher://x' is not an http(s) URL\n"
    )


def test_run_configures_logging_and_calls_app(
    fake_app: types.SimpleNamespace,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "999:short-secret")
    monkeypatch.setenv("COMFYUI_URLS", "http://127.0.0.1:8188")
    assert main(["run"]) == 0
    ((name, settings),) = fake_app.calls
    assert name == "run" and settings.comfy.urls == ("http://127.0.0.1:8188",)
    raw = (env / "gateway.log").read_bytes()
    record = orjson.loads(raw)
    assert record["event"] == "app_started" and record["component"] == "gateway"
    assert b"short-secret" not in raw  # configured tokens are registered for redaction
    assert "short-secret" not in capsys.readouterr().out


def test_run_process_name_and_quiet(
    fake_app: types.SimpleNamespace, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--process", "bot", "--quiet"]) == 0
    assert (env / "bot.log").exists() and capsys.readouterr().out == ""


def test_run_without_app_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "comfybot.app", None)  # makes the import fail like a missing module
    assert main(["run", "--quiet"]) == 1
    assert "comfybot.app is not available" in capsys.readouterr().err


def test_doctor_returns_app_status(fake_app: types.SimpleNamespace) -> None:
    assert main(["doctor"]) == 3
    assert [name for name, _ in fake_app.calls] == ["doctor"]


def test_config_prints_settings_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX")
    monkeypatch.setenv("REDIS_URL", "redis://u:hunter2@r:6379/0")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    data: dict[str, Any] = orjson.loads(out)
    assert data["redis"] == {"url": "redis://u:***@r:6379/0"}
    assert "hunter2" not in out and "AAHdq" not in out


def test_monitor_files_no_color(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_request(env)
    assert main(["monitor", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and out.count("\n") == 16
    assert main(["monitor", "--color", str(env / "bot.log")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 3 and "\x1b[32m" in out  # response_sent is green


def test_monitor_stdin(env: Path) -> None:
    write_request(env)
    result = subprocess.run(
        [sys.executable, "-m", "comfybot", "monitor", "-", "--color"],
        input=(env / "gateway.log").read_text() + "not json\n",
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=_clean_env(),
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 14
    assert lines[-1] == "\x1b[2mnot json\x1b[0m"
    assert any(line.startswith("\x1b[34m") and "comfyui_prompt_sent" in line for line in lines)


def test_trace_command(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_request(env)
    assert main(["trace", RID[:8], "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"request {RID}") and "[ 9/16] Sampling (KSampler)  12.4 s" in out
    assert main(["trace", "nope", "--no-color"]) == 1
    assert main(["trace", RID, str(env / "bot.log"), "--no-color"]) == 0
    assert "job_enqueued" not in capsys.readouterr().out


def test_trace_ambiguous(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_request(env)
    write(env / "bot.log", [rec(30, "command_received", "telegram", request_id=RID[:4] + "0" * 12)])
    assert main(["trace", RID[:4], "--no-color"]) == 1
    assert "matches 2 requests" in capsys.readouterr().err
    assert main(["trace", " ", "--no-color"]) == 2
    assert "give a request id" in capsys.readouterr().err
