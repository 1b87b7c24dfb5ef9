"""A job no healthy server can run: it says why, waits, runs when a server can take it, and fails
``no_backend`` after the queue timeout — on every store, logged once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from gateway.http_api import start_api
from gateway.limits import Limits
from gateway.models import Blocked, Failed, FailureCode, JobEvent, JobState, Queued, Succeeded
from gateway.service import Accepted
from gateway.store import Store
from tests.conftest import free_port
from tests.gateway.conftest import harness, request

DOWN = Blocked(reason="servers_down")


def blocked_queued(events: list[JobEvent]) -> list[Queued]:
    return [e for e in events if isinstance(e, Queued) and e.blocked is not None]


async def test_server_down_from_the_start_job_waits_and_runs_when_it_is_back(
    session, registry, data_dir, backend_factory: Callable[[], Store]
) -> None:
    async with harness(session, registry, data_dir, backend=backend_factory(), down=True) as h:
        accepted = await h.gateway.submit(request())
        assert isinstance(accepted, Accepted)
        assert accepted.blocked == DOWN and accepted.position == 1 and accepted.eta_s is None
        job_id = accepted.job_id
        await h.log.wait_for(lambda: blocked_queued(h.log.of(job_id)))
        assert blocked_queued(h.log.of(job_id))[0].blocked == DOWN
        info = await h.gateway.queue_info("u1")
        assert info.blocked == {job_id: DOWN} and (info.servers, info.servers_down) == (1, 1)

        await h.fakes[0].accept_connections()
        assert isinstance(await h.log.terminal(job_id), Succeeded)
        record = await h.gateway.get_job(job_id)
        assert record is not None and record.state is JobState.SUCCEEDED


async def test_server_that_never_comes_back_fails_the_job_once_at_the_bound(
    session, registry, data_dir, backend_factory: Callable[[], Store]
) -> None:
    limits = Limits(queue_timeout_s=0.5)
    async with harness(session, registry, data_dir, backend=backend_factory(), down=True, limits=limits) as h:
        with capture_logs(processors=[merge_contextvars]) as logs:
            req = request()
            accepted = await h.gateway.submit(req)
            assert isinstance(accepted, Accepted) and accepted.blocked == DOWN
            failed = await h.log.terminal(accepted.job_id)
            assert isinstance(failed, Failed) and failed.code is FailureCode.NO_BACKEND
            assert "servers_down" in failed.detail
            record = await h.gateway.get_job(accepted.job_id)
            assert record is not None and record.state is JobState.FAILED
            assert record.failure is FailureCode.NO_BACKEND
            # A later pass of the position loop (it tells the next job why it waits) fails nothing twice.
            later = await h.gateway.submit(request("later"))
            assert isinstance(later, Accepted)
            await h.log.wait_for(lambda: blocked_queued(h.log.of(later.job_id)))
            info = await h.gateway.queue_info("u1")
            assert [job for job, _ in info.mine] == [later.job_id] and info.servers_down == 1
        failures = [e for e in logs if e["event"] == "job_failed" and e.get("job_id") == accepted.job_id]
        assert len(failures) == 1, failures
        assert failures[0]["code"] == "no_backend" and failures[0]["request_id"] == req.request_id
        assert len([e for e in h.log.of(accepted.job_id) if isinstance(e, Failed)]) == 1


async def test_server_without_the_model_blocks_only_that_job_then_fails_it(
    session, registry, data_dir, backend_factory: Callable[[], Store]
) -> None:
    """The server is up but has not the checkpoint one job asks for: that job says which model is
    missing, gives its slot back (a job the server can run goes by it) and fails at the bound."""
    limits = Limits(queue_timeout_s=1.5)
    async with harness(
        session, registry, data_dir, backend=backend_factory(), capacity=1, limits=limits
    ) as h:
        stuck = await h.gateway.submit(request("stuck", checkpoint="sdxl-turbo.safetensors"))
        assert isinstance(stuck, Accepted)
        missing = Blocked(reason="missing_model", name="sdxl-turbo.safetensors")
        assert stuck.blocked == missing
        await h.log.wait_for(lambda: blocked_queued(h.log.of(stuck.job_id)))
        assert blocked_queued(h.log.of(stuck.job_id))[-1].blocked == missing

        runs = await h.gateway.submit(request("runs"))
        assert isinstance(runs, Accepted) and runs.blocked is None
        assert isinstance(await h.log.terminal(runs.job_id), Succeeded)

        failed = await h.log.terminal(stuck.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.NO_BACKEND
        assert "sdxl-turbo.safetensors missing" in failed.detail


async def test_health_is_not_ready_while_no_server_is_up(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, down=True) as h:
        port = free_port()
        runner = await start_api(h.gateway, "t0ken", port=port)
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer t0ken"}
        try:
            async with session.get(f"{url}/v1/health", headers=auth) as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["ready"] is False and body["servers"][0]["healthy"] is False
            assert "ComfyUnreachable" in body["servers"][0]["down_reason"]
            job = {"user_id": "script", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "a"}}
            async with session.post(f"{url}/v1/jobs", json=job, headers=auth) as resp:
                assert resp.status == 202
                assert (await resp.json())["blocked"] == {"reason": "servers_down", "name": ""}

            waiting = await h.gateway.submit(request())
            assert isinstance(waiting, Accepted)
            await h.fakes[0].accept_connections()
            assert isinstance(await h.log.terminal(waiting.job_id), Succeeded)
            async with session.get(f"{url}/v1/health", headers=auth) as resp:
                assert resp.status == 200 and (await resp.json())["ready"] is True
        finally:
            await runner.cleanup()


async def test_a_down_server_that_could_run_it_is_what_the_job_waits_for(session, registry, data_dir) -> None:
    """Two servers: the one with the model goes down, the one without stays up — the job waits for the
    first to come back, and says so, rather than for a model to be installed."""
    per_server: list[dict[str, object]] = [{}, {"checkpoints": ("other.safetensors",)}]
    async with harness(session, registry, data_dir, server_options=per_server) as h:
        assert h.gateway.pool is not None
        pool = h.gateway.pool
        with_model, _ = h.fakes
        await with_model.refuse_connections()
        await pool.mark_down(pool.servers[0], "test: refused")
        accepted = await h.gateway.submit(request())
        assert isinstance(accepted, Accepted) and accepted.blocked == DOWN
        await with_model.accept_connections()
        assert isinstance(await h.log.terminal(accepted.job_id), Succeeded)
        record = await h.gateway.get_job(accepted.job_id)
        assert record is not None and record.backend == "comfy0"


async def test_blocked_notice_follows_the_servers_and_the_job_runs_once_the_model_is_installed(
    session, registry, data_dir
) -> None:
    """A job waiting for a model: its notice turns into "not reachable" while the server is down and
    back when it is up; once the operator installs the model it runs (without waiting for the
    ``object_info`` cache to age out)."""
    async with harness(session, registry, data_dir) as h:
        assert h.gateway.pool is not None and h.gateway.pool.object_info_max_age_s is None  # no timer
        missing = Blocked(reason="missing_model", name="sdxl-turbo.safetensors")
        job = await h.gateway.submit(request(checkpoint="sdxl-turbo.safetensors"))
        assert isinstance(job, Accepted) and job.blocked == missing

        def reasons() -> list[Blocked | None]:
            return [e.blocked for e in h.log.of(job.job_id) if isinstance(e, Queued)]

        await h.log.wait_for(lambda: missing in reasons())
        await h.fakes[0].refuse_connections()
        await h.log.wait_for(lambda: DOWN in reasons())
        await h.fakes[0].accept_connections()
        await h.log.wait_for(lambda: missing in reasons()[reasons().index(DOWN) :])

        h.fakes[0].set_models(checkpoints=[*h.fakes[0].checkpoints, "sdxl-turbo.safetensors"])
        done = await h.log.terminal(job.job_id)
        assert isinstance(done, Succeeded)
        [prompt] = h.fakes[0].received_prompts
        assert prompt["prompt"]["4"]["inputs"]["ckpt_name"] == "sdxl-turbo.safetensors"


async def test_object_info_is_re_read_when_a_prompt_is_refused_for_a_model(
    session, registry, data_dir
) -> None:
    """No timer: a model removed from the server shows when ComfyUI refuses a prompt for it; the pool
    then re-reads ``/object_info`` and the next job with that model waits as blocked instead of being
    sent to be refused again."""
    async with harness(session, registry, data_dir) as h:
        fake = h.fakes[0]
        model = fake.checkpoints[0]

        def reads() -> int:
            return sum(1 for r in fake.requests if r == ("GET", "/object_info"))

        before = reads()
        fake.set_models(checkpoints=[c for c in fake.checkpoints if c != model])
        first = await h.gateway.submit(request(checkpoint=model))
        assert isinstance(first, Accepted) and first.blocked is None  # the cache still lists it
        failed = await h.log.terminal(first.job_id)
        assert isinstance(failed, Failed) and failed.code is FailureCode.COMFY_REJECTED
        async with asyncio.timeout(10):
            while reads() == before:  # noqa: ASYNC110  # the fake's request log has no Event
                await asyncio.sleep(0.02)
        second = await h.gateway.submit(request(checkpoint=model))
        assert isinstance(second, Accepted) and second.blocked == Blocked(reason="missing_model", name=model)
        assert len(fake.received_prompts) == 1
