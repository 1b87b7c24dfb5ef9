"""``JobRecord``'s transitions: queued → submitted → running → one terminal state, and nothing after."""

from __future__ import annotations

import pytest

from gateway.models import JobRequest, JobState
from gateway.records import InvalidTransition, JobRecord


def _state(rec: JobRecord) -> JobState:
    return rec.state  # read anew: mypy would keep the state an earlier assert narrowed


def _record() -> JobRecord:
    return JobRecord(request=JobRequest(platform="http", user_id="u", chat_id="c", workflow="txt2img"))


def test_a_job_goes_forward_and_a_retry_posts_again() -> None:
    rec = _record()
    rec.submit("p1", "gpu-a")
    assert (rec.state, rec.attempts, rec.prompt_id, rec.backend) == (JobState.SUBMITTED, 1, "p1", "gpu-a")
    rec.start()
    assert rec.state is JobState.RUNNING and rec.started_at is not None
    rec.submit("p2", "gpu-b")  # the server went away mid-run: posted again elsewhere
    assert (rec.state, rec.attempts, rec.backend) == (JobState.SUBMITTED, 2, "gpu-b")
    rec.start(at=rec.submitted_at)
    rec.end(JobState.SUCCEEDED)
    assert _state(rec) is JobState.SUCCEEDED and rec.finished_at is not None


def test_a_queued_job_can_end_without_running() -> None:
    rec = _record()
    rec.end(JobState.CANCELLED)
    assert rec.state is JobState.CANCELLED and rec.run_ms == 0


@pytest.mark.parametrize("state", [s for s in JobState if s.terminal])
def test_nothing_leaves_a_terminal_state(state: JobState) -> None:
    rec = _record()
    rec.end(state)
    with pytest.raises(InvalidTransition):
        rec.submit("p", "gpu")
    with pytest.raises(InvalidTransition):
        rec.start()
    with pytest.raises(InvalidTransition):
        rec.end(JobState.FAILED)


def test_steps_out_of_order_are_refused() -> None:
    rec = _record()
    with pytest.raises(InvalidTransition):
        rec.start()  # never posted
    with pytest.raises(InvalidTransition):
        rec.end(JobState.RUNNING)  # not an outcome
    assert rec.state is JobState.QUEUED
