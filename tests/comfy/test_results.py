"""Errors and result types built from the HTTP answers recorded from a real ComfyUI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfy.errors import ComfyExecutionError, ComfyInterrupted, ComfyRejected
from comfy.results import OutputImage, PromptResult, QueueState

HTTP_RESULTS = Path(__file__).resolve().parents[3] / "shared/comfyui/traces/http_results.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    if not HTTP_RESULTS.is_file():
        pytest.skip(f"no recorded HTTP results at {HTTP_RESULTS}")
    data: dict[str, Any] = json.loads(HTTP_RESULTS.read_text())
    return data


def rejected(body: dict[str, Any]) -> ComfyRejected:
    error = body["error"]
    return ComfyRejected(
        backend="a",
        error_type=error["type"],
        message=error["message"],
        details=error["details"],
        node_errors=body["node_errors"],
    )


def test_summary_names_node_class_input_and_reason() -> None:
    exc = ComfyRejected(
        backend="a",
        error_type="prompt_outputs_failed_validation",
        message="Prompt outputs failed validation",
        node_errors={
            "3": {
                "errors": [
                    {
                        "type": "value_bigger_than_max",
                        "message": "Value 99999 bigger than max of 10000",
                        "details": "steps",
                        "extra_info": {"input_name": "steps", "received_value": 99999},
                    }
                ],
                "dependent_outputs": ["9"],
                "class_type": "KSampler",
            }
        },
    )
    assert exc.summary() == "node 3 (KSampler): steps: Value 99999 bigger than max of 10000"
    assert exc.code == "comfy_rejected" and exc.backend == "a"
    assert "node 3 (KSampler)" in str(exc)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("err_value_smaller_than_min", "node 1 (EmptyImage): width: Value -5 smaller than min of 1"),
        ("err_missing_input", "node 1 (SaveImage): images: Required input is missing"),
        (
            "err_not_in_list",
            "node 4 (ImageScale): upscale_method: Value not in list: 'magic' not in "
            "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        ),
        (
            "err_loadimage_missing_file",
            "node 1 (LoadImage): image: Custom validation failed for node: "
            "Invalid image file: does_not_exist.png",
        ),
        ("err_unknown_class", "Cannot execute because node NoSuchNode does not exist. (Node ID '#1')"),
        ("err_no_outputs", "Prompt has no outputs"),
    ],
)
def test_summary_of_recorded_rejections(recorded: dict[str, Any], key: str, expected: str) -> None:
    status, body = recorded[key]
    assert status == 400
    exc = rejected(body)
    assert exc.summary() == expected
    assert exc.node_errors == body["node_errors"]
    assert exc.error_type == body["error"]["type"]


def test_history_success_gives_images(recorded: dict[str, Any]) -> None:
    _, body = recorded["upload_history"]
    ((prompt_id, entry),) = body.items()
    result = PromptResult.from_history(prompt_id, entry)
    assert result.status_str == "success"
    assert result.failure("a") is None
    assert OutputImage("loaded_00002_.png", "gw_test", "output") in result.images
    assert result.images_of(["12"]) == [OutputImage("loaded_00002_.png", "gw_test", "output")]
    assert [i.type for i in result.images_of(["13"])] == ["temp"]


def test_history_runtime_error_gives_execution_error(recorded: dict[str, Any]) -> None:
    _, body = recorded["runtime_error_history"]
    ((prompt_id, entry),) = body.items()
    failure = PromptResult.from_history(prompt_id, entry).failure("a")
    assert isinstance(failure, ComfyExecutionError)
    assert (failure.prompt_id, failure.node_id, failure.node_type) == (prompt_id, "2", "GwSlowProgress")
    assert failure.exception_type == "ValueError"
    assert "failing on purpose" in failure.exception_message


def test_history_interrupt_gives_interrupted(recorded: dict[str, Any]) -> None:
    _, body = recorded["interrupt_history"]
    ((prompt_id, entry),) = body.items()
    failure = PromptResult.from_history(prompt_id, entry).failure("a")
    assert isinstance(failure, ComfyInterrupted) and failure.prompt_id == prompt_id


def test_queue_pending_sorted_by_number(recorded: dict[str, Any]) -> None:
    got = recorded["queue_get"]
    state = QueueState.from_json({"queue_running": got["running"], "queue_pending": got["pending"]})
    numbers = {item[1]: item[0] for item in got["pending"]}
    assert [numbers[p] for p in state.pending] == sorted(numbers.values())
    assert state.position(state.pending[0]) == 1
    assert state.position(got["running"][0][1]) == 0
    assert state.position("nope") is None and "nope" not in state
