"""Faults injected into the fake ComfyUI (and Redis): what the gateway does about each."""

from __future__ import annotations

import asyncio
import io

from PIL import Image
from structlog.testing import capture_logs

from gateway.models import Failed, FailureCode, JobRequest, Succeeded
from gateway.records import JobRecord
from gateway.redis_store import RedisStore
from gateway.service import Accepted
from tests.gateway.conftest import FAST, harness, request

BODY_400 = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {
        "3": {
            "errors": [
                {
                    "type": "value_bigger_than_max",
                    "message": "Value 99 bigger than max of 10",
                    "details": "steps",
                    "extra_info": {"input_name": "steps"},
                }
            ],
            "dependent_outputs": ["9"],
            "class_type": "KSampler",
        }
    },
}


def prompt_posts(fake) -> int:
    return sum(1 for method, path in fake.requests if method == "POST" and path.endswith("/prompt"))


async def test_server_down_at_submit_goes_to_the_other(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, servers=2) as h:
        await h.fakes[0].refuse_connections()
        jobs = [await h.gateway.submit(request(f"p{i}")) for i in range(3)]
        for job in jobs:
            assert isinstance(job, Accepted)
            done = await h.log.terminal(job.job_id)
            assert isinstance(done, Succeeded) and done.backend == "comfy1"
        assert len(h.fakes[1].received_prompts) == 3


async def test_only_server_down_retries_then_comfy_unreachable(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        # Health checks pass, every POST /prompt fails: no race with the health loop over who notices
        # first (a server the health check already took out makes jobs wait, see the next test).
        h.fakes[0].reject_next(502, times=100)
        with capture_logs() as logs:
            job = await h.gateway.submit(request())
            assert isinstance(job, Accepted)
            failed = await h.log.terminal(job.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.COMFY_UNREACHABLE
        events = [e["event"] for e in logs]
        assert events.count("job_retry") == 2 and "backend_down" in events
        assert len(h.fakes[0].received_prompts) == 3  # max_attempts, then the job fails


async def test_jobs_wait_while_all_servers_are_down(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        await h.fakes[0].refuse_connections()
        assert h.gateway.worker is not None
        pool = h.gateway.worker.pool
        await pool.check_all()
        assert not pool.servers[0].healthy
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        await h.fakes[0].accept_connections()
        assert isinstance(await h.log.terminal(job.job_id), Succeeded)


async def test_server_dies_mid_job_prompt_lost_is_resubmitted(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, fake_options={"run_time_s": 1.0}) as h:
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        await h.log.wait_for(lambda: h.log.of(job.job_id, "progress"))
        with capture_logs() as logs:
            await h.fakes[0].forget_all()  # a restart: history, queue and the running prompt vanish
            done = await h.log.terminal(job.job_id)
        assert isinstance(done, Succeeded)
        assert len(h.fakes[0].received_prompts) == 2
        assert any(e["event"] == "job_retry" and e["error_type"] == "ComfyPromptLost" for e in logs)


async def test_server_unreachable_mid_job_retried_on_the_other(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, servers=2, fake_options={"run_time_s": 3.0}) as h:
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        started = await h.log.wait_for(lambda: h.log.of(job.job_id, "started"))
        first = started[0].backend
        dead = h.fakes[int(first[-1])]
        await dead.refuse_connections()  # a network outage that lasts
        with capture_logs() as logs:
            done = await h.log.terminal(job.job_id)
        assert isinstance(done, Succeeded) and done.backend != first
        assert any(e["event"] == "job_retry" and e["error_type"] == "ComfyUnreachable" for e in logs)
        assert len(h.log.of(job.job_id, "succeeded")) == 1


async def test_websocket_drop_mid_run_still_succeeds_once(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, fake_options={"run_time_s": 0.5}) as h:
        h.fakes[0].drop_ws_mid_run = True
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        assert isinstance(await h.log.terminal(job.job_id), Succeeded)
        assert len(h.fakes[0].received_prompts) == 1


async def test_websocket_stall_still_succeeds_once(session, registry, data_dir) -> None:
    async with harness(
        session, registry, data_dir, fake_options={"run_time_s": 0.5}, ws_stall_timeout_s=0.5
    ) as h:
        h.fakes[0].stall_ws(3.0)
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        assert isinstance(await h.log.terminal(job.job_id), Succeeded)
        assert len(h.fakes[0].received_prompts) == 1


async def test_rejected_graph_is_not_retried(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, servers=2) as h:
        for fake in h.fakes:
            fake.reject_next(400, BODY_400)
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        failed = await h.log.terminal(job.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.COMFY_REJECTED
        assert "steps" in failed.detail and "KSampler" in failed.detail
        assert prompt_posts(h.fakes[0]) + prompt_posts(h.fakes[1]) == 1


async def test_execution_error_is_not_retried(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, servers=2) as h:
        for fake in h.fakes:
            fake.fail_node("KSampler", "RuntimeError", "CUDA out of memory")
        with capture_logs() as logs:
            job = await h.gateway.submit(request())
            assert isinstance(job, Accepted)
            failed = await h.log.terminal(job.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.COMFY_EXECUTION_ERROR
        assert "out of memory" in failed.detail
        assert len(h.fakes[0].received_prompts) + len(h.fakes[1].received_prompts) == 1
        assert any(e["event"] == "comfyui_execution_error" and e["log_level"] == "error" for e in logs)
        assert any(e["event"] == "job_failed" and e["code"] == "comfy_execution_error" for e in logs)


async def test_job_goes_only_to_a_server_with_its_model(session, registry, data_dir) -> None:
    async with harness(
        session,
        registry,
        data_dir,
        servers=2,
        server_options=[
            {"checkpoints": ["sd15.safetensors"]},
            {"checkpoints": ["sd15.safetensors", "sdxl_base.safetensors"]},
        ],
    ) as h:
        with capture_logs() as logs:
            jobs = [
                await h.gateway.submit(request(f"p{i}", checkpoint="sdxl_base.safetensors")) for i in range(3)
            ]
            for job in jobs:
                assert isinstance(job, Accepted)
                done = await h.log.terminal(job.job_id)
                assert isinstance(done, Succeeded) and done.backend == "comfy1"
        assert not h.fakes[0].received_prompts
        selected = [e for e in logs if e["event"] == "server_chosen"]
        assert selected and all(e["backend"] == "comfy1" and e["reason"] == "only_capable" for e in selected)


async def test_least_busy_server_first(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, servers=2, fake_options={"run_time_s": 0.4}) as h:
        jobs = [await h.gateway.submit(request(f"p{i}", user=f"u{i}")) for i in range(4)]
        for job in jobs:
            assert isinstance(job, Accepted)
            assert isinstance(await h.log.terminal(job.job_id), Succeeded)
        # four jobs, two servers of capacity two: the work is spread, not piled on one server
        assert len(h.fakes[0].received_prompts) == 2 and len(h.fakes[1].received_prompts) == 2


async def test_image_input_is_uploaded_and_used(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (0, 90, 200)).save(buf, format="PNG")
        ref = await h.gateway.store_image(buf.getvalue())
        req = JobRequest(
            platform="telegram",
            user_id="u1",
            chat_id="c1",
            workflow="img2img",
            params={"prompt": "bluer", "checkpoint": "sd15.safetensors"},
            inputs={"image": ref},
        )
        with capture_logs() as logs:
            job = await h.gateway.submit(req)
            assert isinstance(job, Accepted)
            done = await h.log.terminal(job.job_id)
        assert isinstance(done, Succeeded), done
        assert len(h.fakes[0].uploads) == 1
        assert any(e["event"] == "image_uploaded" and e["bytes"] == ref.bytes for e in logs)


async def test_redis_restart_under_load_loses_no_job(session, registry, data_dir, redis_server) -> None:
    backend = RedisStore(redis_server.url, retry_for_s=30)
    async with harness(
        session,
        registry,
        data_dir,
        backend=backend,
        servers=2,
        fake_options={"run_time_s": 0.1},
        options=FAST,
    ) as h:
        jobs = []
        for i in range(12):
            job = await h.gateway.submit(request(f"p{i}", user=f"user{i}"))
            assert isinstance(job, Accepted), job
            jobs.append(job)
        await h.log.wait_for(lambda: any(h.log.of(j.job_id, "succeeded") for j in jobs))
        await asyncio.to_thread(redis_server.restart)
        for i in range(12, 16):  # submitted right after the restart
            job = await h.gateway.submit(request(f"p{i}", user=f"user{i}"))
            assert isinstance(job, Accepted), job
            jobs.append(job)
        for job in jobs:
            assert isinstance(await h.log.terminal(job.job_id, timeout_s=40), Succeeded)
        for job in jobs:
            assert len([e for e in h.log.of(job.job_id) if e.kind == "succeeded"]) == 1
        total = len(h.fakes[0].received_prompts) + len(h.fakes[1].received_prompts)
        assert total == len(jobs)


async def test_job_ending_before_it_needs_a_server_frees_its_slot(session, registry, data_dir) -> None:
    """Regression: a taken job that ended early (workflow gone) kept its slot reservation forever."""
    async with harness(session, registry, data_dir, capacity=1) as h:
        gone = JobRecord(request=request(workflow="removed-since"))
        await h.backend.enqueue(gone)
        failed = await h.log.terminal(gone.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.UNKNOWN_WORKFLOW
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        assert isinstance(await h.log.terminal(job.job_id), Succeeded)
