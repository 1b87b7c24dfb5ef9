"""Every refusal is a ``Refused`` value with a stable code (never an exception), and is logged."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from structlog.testing import capture_logs

from comfy.workflows import load_workflows
from gateway.errors import ImageRejected
from gateway.limits import AccessPolicy, Limits, PromptFilter
from gateway.memory import MemoryStore
from gateway.models import FailureCode, JobRequest
from gateway.service import Accepted, Gateway, Refused
from gateway.storage import ImageStore
from tests.gateway.conftest import request


@pytest.fixture
async def gateway(data_dir):
    """A gateway without workers: jobs stay queued, which is what limits are about."""
    async with MemoryStore() as backend:
        yield Gateway(
            backend,
            load_workflows(),
            ImageStore(data_dir),
            limits=Limits(
                max_pending_per_user=2,
                rate_count=3,
                rate_window_s=60,
                queue_cap=4,
                prompt_filter=PromptFilter(["forbidden"], max_length=50),
            ),
            access=AccessPolicy("open", admins=["boss"], banned=["troll"]),
        )


def png(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


async def test_unknown_workflow(gateway) -> None:
    with capture_logs() as logs:
        result = await gateway.submit(request(workflow="nope"))
    assert isinstance(result, Refused) and result.code is FailureCode.UNKNOWN_WORKFLOW
    assert any(e["event"] == "validation_error" for e in logs)


async def test_check_refuses_what_submit_would_without_queueing(gateway) -> None:
    """``check`` is submit's local part: a front end asks it before showing anything public."""
    bad = gateway.check(request(steps=999))
    assert isinstance(bad, Refused) and (bad.field, bad.reason) == ("steps", "too_large")
    assert gateway.check(request("forbidden words")).code is FailureCode.PROMPT_BLOCKED
    assert gateway.check(request(workflow="nope")).code is FailureCode.UNKNOWN_WORKFLOW
    # An image still being downloaded counts as given; one the workflow has no input for does not.
    assert gateway.check(request(workflow="img2img")).field == "image"
    assert gateway.check(request(workflow="img2img"), coming=["image"]) is None
    assert gateway.check(request(), coming=["image"]).reason == "unknown_image_input"
    assert gateway.check(request()) is None
    assert (await gateway.queue_info("u1")).depth == 0  # nothing was queued


async def test_param_out_of_bounds_names_field_and_reason(gateway) -> None:
    with capture_logs() as logs:
        result = await gateway.submit(request(steps=999))
    assert isinstance(result, Refused) and result.code is FailureCode.INVALID_INPUT
    assert (result.field, result.reason) == ("steps", "too_large")
    assert "steps" in result.detail
    assert any(e["event"] == "validation_error" and e["field"] == "steps" for e in logs)


async def test_prompt_too_long_and_blocked(gateway) -> None:
    long = await gateway.submit(request("x" * 51))
    assert isinstance(long, Refused) and long.code is FailureCode.PROMPT_TOO_LONG
    blocked = await gateway.submit(request("a FORBIDDEN thing"))
    assert isinstance(blocked, Refused) and blocked.code is FailureCode.PROMPT_BLOCKED


async def test_banned_user_is_denied(gateway) -> None:
    with capture_logs() as logs:
        result = await gateway.submit(request(user="troll"))
    assert isinstance(result, Refused) and result.code is FailureCode.ACCESS_DENIED
    assert any(e["event"] == "access_denied" for e in logs)


async def test_allowlist(data_dir) -> None:
    async with MemoryStore() as backend:
        gw = Gateway(
            backend,
            load_workflows(),
            ImageStore(data_dir),
            access=AccessPolicy("allowlist", allowed_users=["friend"]),
        )
        assert isinstance(await gw.submit(request(user="friend")), Accepted)
        denied = await gw.submit(request(user="stranger"))
        assert isinstance(denied, Refused) and denied.code is FailureCode.ACCESS_DENIED


async def test_pending_per_user(gateway) -> None:
    assert isinstance(await gateway.submit(request("a")), Accepted)
    assert isinstance(await gateway.submit(request("b")), Accepted)
    with capture_logs() as logs:
        third = await gateway.submit(request("c"))
    assert isinstance(third, Refused) and third.code is FailureCode.TOO_MANY_PENDING
    assert any(e["event"] == "rate_limited" for e in logs)
    assert isinstance(await gateway.submit(request("d", user="u2")), Accepted)
    info = await gateway.queue_info("u1")
    # round-robin (gateway/fair.py): u2's job goes before u1's second
    assert [pos for _, pos in info.mine] == [1, 3] and info.depth == 3


async def test_rate_per_user_says_when_to_retry(gateway) -> None:
    for i in range(3):
        job = await gateway.submit(request(f"p{i}"))
        assert isinstance(job, Accepted)
        assert await gateway.cancel(job.job_id, by="u1")  # keep pending low: only the rate bites
    with capture_logs() as logs:
        limited = await gateway.submit(request("again"))
    assert isinstance(limited, Refused) and limited.code is FailureCode.RATE_LIMITED
    assert limited.retry_after_s is not None and limited.retry_after_s > 0
    assert any(e["event"] == "rate_limited" for e in logs)


async def test_global_queue_cap(gateway) -> None:
    for user in ("a", "b", "c", "d"):
        assert isinstance(await gateway.submit(request(user=user)), Accepted)
    full = await gateway.submit(request(user="e"))
    assert isinstance(full, Refused) and full.code is FailureCode.QUEUE_FULL
    # admins are exempt from per-user limits but not from the cap that protects the servers
    boss = await gateway.submit(request(user="boss"))
    assert isinstance(boss, Refused) and boss.code is FailureCode.QUEUE_FULL


async def test_front_end_cannot_promote_to_admin(gateway) -> None:
    for prompt in ("a", "b"):
        await gateway.submit(request(prompt).model_copy(update={"role": "admin"}))
    third = await gateway.submit(request("c").model_copy(update={"role": "admin"}))
    assert isinstance(third, Refused) and third.code is FailureCode.TOO_MANY_PENDING


async def test_image_workflow_needs_its_image(gateway) -> None:
    missing = await gateway.submit(request(workflow="img2img"))
    assert isinstance(missing, Refused) and missing.code is FailureCode.INVALID_INPUT
    assert missing.field == "image" and missing.reason == "required"
    ref = await gateway.store_image(png())
    assert gateway.image_path(ref).is_file() and (ref.width, ref.height) == (32, 24)
    req = JobRequest(
        platform="telegram",
        user_id="u1",
        chat_id="c1",
        workflow="img2img",
        params={"prompt": "make it blue"},
        inputs={"image": ref},
    )
    assert isinstance(await gateway.submit(req), Accepted)


async def test_store_image_rejects_garbage(gateway) -> None:
    with pytest.raises(ImageRejected) as info:
        await gateway.store_image(b"not an image at all")
    assert info.value.code is FailureCode.INVALID_IMAGE


async def test_settings_roundtrip(gateway) -> None:
    await gateway.settings.set("telegram:1", {"ar": "16:9"})
    assert await gateway.settings.get("telegram:1") == {"ar": "16:9"}


async def test_cancel_of_unknown_or_foreign_job(gateway) -> None:
    assert not await gateway.cancel("nope", by="u1")
    job = await gateway.submit(request())
    assert isinstance(job, Accepted)
    assert not await gateway.cancel(job.job_id, by="u2")
    assert await gateway.cancel(job.job_id, by="boss")  # admins may cancel anyone's job
    assert not await gateway.cancel(job.job_id, by="u1")  # already over
