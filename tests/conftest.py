"""Fixtures shared by every test package: a real redis-server and a real S3 server (moto) on free ports,
free ports, a tmp data dir."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def child_env(root: Path, variables: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a comfybot child process: our PATH and HOME, logs and data under
    ``root``, and ``variables`` (which win). Nothing else of the test's environment leaks in."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "LOG_DIR": str(root / "logs"),
        "COMFYBOT_DATA_DIR": str(root / "data"),
    }
    return base | dict(variables)


def unacknowledged_doubles(log_dir: Path, users: list[int]) -> list[int]:
    """Of ``users`` (each shown their result twice), those whose first copy no front-end process ever
    saw Telegram accept: one ``response_sent`` of a picture in all the front ends' logs, the second copy's.
    That is the documented window — killed after Telegram took the upload and before its answer reached
    us (under load, every upload then in flight) — not a delivery the front end knew of and repeated."""
    job_of: dict[str, int] = {}
    sent: Counter[int] = Counter()
    lines = [line for path in sorted(log_dir.glob("*.log*")) for line in path.read_text().splitlines()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    for e in events:
        if e.get("event") == "job_enqueued" and e.get("job_id"):
            job_of[str(e["job_id"])] = int(e["user_id"])
    for e in events:
        picture = e.get("event") == "response_sent" and e.get("kind") in ("photo", "document", "album")
        if picture and (user := job_of.get(str(e.get("job_id")))) is not None:
            sent[user] += 1
    return [u for u in users if sent[u] == 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A real ``redis-server`` the tests own: they may stop and restart it (same port, same AOF dir)."""

    port: int
    dir: Path
    appendonly: bool = True
    appendfsync: str = "always"  # the benchmarks use "everysec", as a production server would
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (.ci/run installs it)")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server with AOF on (``appendfsync always``) in a temporary dir."""
    srv = RedisServer(port=free_port(), dir=tmp_path / "redis")
    srv.dir.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(kill=True)


def _wait_port(port: int, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


@dataclass
class S3Server:
    """A real S3 server (moto's, ``python -m moto.server``) that checks every request's SigV4 signature.

    moto verifies signatures only once IAM is in play: the first ``_SETUP_CALLS`` requests (create a user,
    its policy, its access key, the bucket) go unauthenticated, every later one must be signed with that
    user's key — a wrong signature gets 403 SignatureDoesNotMatch, as on AWS.
    """

    port: int
    bucket: str = "comfybot-test"
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    _SETUP_CALLS = 4

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - dev extra, only here
        except ImportError:
            pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
        env = os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": str(self._SETUP_CALLS)}
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, "moto_server")
        boot = {"endpoint_url": self.url, "region_name": self.region}
        boot |= {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **boot)
        iam.create_user(UserName="comfybot")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="comfybot", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="comfybot")["AccessKey"]
        boto3.client("s3", **boot).create_bucket(Bucket=self.bucket)
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]

    def env(self) -> dict[str, str]:
        """The settings a comfybot process needs to use this bucket."""
        return {
            "COMFYBOT_S3_URL": self.url,
            "COMFYBOT_S3_BUCKET": self.bucket,
            "COMFYBOT_S3_ACCESS_KEY_ID": self.access_key_id,
            "COMFYBOT_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "COMFYBOT_S3_REGION": self.region,
        }

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def s3_server() -> Iterator[S3Server]:
    """A fresh moto S3 server with one bucket and one access key, signatures checked."""
    srv = S3Server(port=free_port())
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
