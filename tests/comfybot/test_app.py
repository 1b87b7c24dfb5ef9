"""``comfybot run``/``doctor`` as a newcomer runs them: a real subprocess, judged by exit code and output."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import S3Server
from tests.fakes.comfyui import running_fake_comfyui


def _run(args: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-m", "comfybot", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_without_front_end_says_so_and_exits_2(tmp_path: Path) -> None:
    proc = _run(["run", "--quiet"], {"COMFYUI_URLS": "http://127.0.0.1:9", "LOG_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "no front end is configured" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_run_without_comfyui_urls_says_so(tmp_path: Path) -> None:
    proc = _run(["run", "--quiet"], {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "LOG_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "COMFYUI_URLS is not set" in proc.stderr
    assert "A" * 35 not in proc.stderr + proc.stdout + "".join(p.read_text() for p in tmp_path.glob("*.log"))


def test_run_with_bad_config_is_one_line(tmp_path: Path) -> None:
    proc = _run(["run"], {"COMFYUI_URLS": "ftp://x", "LOG_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "COMFYUI_URLS" in proc.stderr


@pytest.mark.parametrize("has_model", [True, False])
async def test_doctor_reports_missing_models(tmp_path: Path, has_model: bool) -> None:
    async with running_fake_comfyui() as comfy:
        checkpoint = "v1-5-pruned-emaonly.safetensors" if has_model else "other.safetensors"
        comfy.set_models(checkpoints=[checkpoint], upscale_models=["RealESRGAN_x4plus.pth"])
        env = {"COMFYUI_URLS": comfy.url, "LOG_DIR": str(tmp_path)}
        proc = await _arun(["doctor"], env)
    if has_model:
        assert proc.returncode == 0, proc.stdout
        assert "✓ txt2img" in proc.stdout
    else:
        assert proc.returncode == 1
        assert "v1-5-pruned-emaonly.safetensors" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr


async def _arun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess without blocking the loop that serves the fake."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfybot",
        *args,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def _log_text(log_dir: Path) -> str:
    return "".join(p.read_text() for p in log_dir.glob("*.log*"))


@pytest.mark.parametrize("good_secret", [True, False])
async def test_doctor_checks_the_s3_bucket(tmp_path: Path, s3_server: S3Server, good_secret: bool) -> None:
    async with running_fake_comfyui() as comfy:
        comfy.set_models(
            checkpoints=["v1-5-pruned-emaonly.safetensors"], upscale_models=["RealESRGAN_x4plus.pth"]
        )
        env = {"COMFYUI_URLS": comfy.url, "LOG_DIR": str(tmp_path)} | s3_server.env()
        if not good_secret:
            env["COMFYBOT_S3_SECRET_ACCESS_KEY"] = "wrong-secret-value"
        proc = await _arun(["doctor"], env)
    if good_secret:
        assert proc.returncode == 0, proc.stdout
        assert (
            f"✓ S3 bucket {s3_server.bucket} at {s3_server.url}: write, read and delete work" in proc.stdout
        )
    else:
        assert proc.returncode == 1
        assert "✗ S3 bucket" in proc.stdout and "HTTP 403 SignatureDoesNotMatch" in proc.stdout
        assert "wrong-secret-value" not in proc.stdout + proc.stderr
        assert "wrong-secret-value" not in _log_text(tmp_path)
        assert "Traceback" not in proc.stdout + proc.stderr
