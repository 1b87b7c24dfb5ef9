"""``comfybot run`` with a configuration that cannot work: one line on stderr, exit status 2, no traceback.

Regressions: ``TELEGRAM_BOT_TOKEN=x`` was accepted and the Telegram front end crashed after startup;
``COMFYBOT_WORKFLOWS_DIR`` pointing at nothing, or at a UI-format export, ended in a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings

TOKEN = "123456:" + "A" * 35


def run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    base["LOG_DIR"] = str(tmp_path / "logs")
    return subprocess.run(
        [sys.executable, "-m", "comfybot", "run", "--quiet"],
        env={**base, "COMFYUI_URLS": "http://127.0.0.1:9", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("token", ["x", "123456", "abc:def", ":s3cr", "123456:", "123 456:s3cr"])
def test_malformed_telegram_token_is_a_config_error_that_hides_it(token: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TELEGRAM_BOT_TOKEN": token})
    assert info.value.variable == "TELEGRAM_BOT_TOKEN"
    assert "not a Telegram bot token" in info.value.problem
    assert token.strip(":") not in str(info.value).replace("TELEGRAM_BOT_TOKEN", "")


def test_well_formed_telegram_tokens_pass() -> None:
    for token in (TOKEN, "1:a", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"):
        tg = load_settings({"TELEGRAM_BOT_TOKEN": token}).telegram
        assert tg.bot_token is not None and tg.bot_token.get_secret_value() == token


def test_run_with_malformed_token(tmp_path: Path) -> None:
    proc = run({"TELEGRAM_BOT_TOKEN": "x"}, tmp_path)
    assert_one_line(proc, "TELEGRAM_BOT_TOKEN", "not a Telegram bot token")


def test_run_with_missing_workflows_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    proc = run({"TELEGRAM_BOT_TOKEN": TOKEN, "COMFYBOT_WORKFLOWS_DIR": str(missing)}, tmp_path)
    assert_one_line(proc, "workflow error", str(missing), "does not exist")


def test_run_with_ui_format_workflow(tmp_path: Path) -> None:
    extra = tmp_path / "wf"
    extra.mkdir()
    (extra / "mine.json").write_text(json.dumps({"last_node_id": 3, "nodes": [], "links": []}))
    (extra / "mine.manifest.json").write_text(json.dumps({"name": "mine", "params": {}, "outputs": ["9"]}))
    proc = run({"TELEGRAM_BOT_TOKEN": TOKEN, "COMFYBOT_WORKFLOWS_DIR": str(extra)}, tmp_path)
    assert_one_line(proc, "workflow error", "mine")
    assert TOKEN not in proc.stderr
