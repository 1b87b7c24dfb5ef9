"""ProgressModel: node labels, done/total, sampler fraction, percent and ETA from ComfyUI events."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from comfy import events as ce
from comfy.workflows import load_workflows
from gateway.progress import ProgressModel


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def model(
    recent_ms: tuple[int, ...] | list[int] = (), clock: Clock | None = None
) -> tuple[ProgressModel, dict[str, Any]]:
    wf = load_workflows().get("txt2img")
    graph = wf.render(wf.validate({"prompt": "x", "seed": 1}))
    pm = ProgressModel(wf, graph, job_id="j", request_id="r", recent_ms=recent_ms, clock=clock or Clock())
    return pm, graph


def state(node: str, value: float, maximum: float, st: str) -> ce.NodeState:
    return ce.NodeState(value=value, max=maximum, state=st, node_id=node, display_node_id=node)


def test_labels_counts_and_percent() -> None:
    pm, graph = model()
    total = len(graph)
    assert pm.feed(ce.ExecutionStart(prompt_id="p")) is None
    cached = pm.feed(ce.ExecutionCached(prompt_id="p", nodes=("4", "6", "7")))
    assert cached is not None and cached.done_nodes == 3 and cached.total_nodes == total
    assert cached.node_label == "Encoding prompt"  # node 7, the last one served from the cache
    start = pm.feed(ce.Executing(prompt_id="p", node="3", display_node="3"))
    assert start is not None and start.node_label == "Sampling"
    half = pm.feed(ce.Progress(prompt_id="p", node="3", value=10, max=20))
    assert half is not None and (half.value, half.max) == (10, 20)
    assert half.percent == round(100 * 3.5 / total, 1)
    done = pm.feed(ce.ProgressState(prompt_id="p", nodes={"3": state("3", 20, 20, "finished")}))
    assert done is not None and done.done_nodes == 4
    decode = pm.feed(ce.Executing(prompt_id="p", node="8", display_node="8"))
    assert decode is not None and decode.node_label == "Decoding"
    assert pm.feed(ce.ExecutionSuccess(prompt_id="p")) is None


def test_next_node_marks_previous_done_without_progress_state() -> None:
    pm, _ = model()
    pm.feed(ce.Executing(prompt_id="p", node="4", display_node="4"))
    update = pm.feed(ce.Executing(prompt_id="p", node="6", display_node="6"))
    assert update is not None and update.done_nodes == 1 and update.node_label == "Encoding prompt"


def test_eta_from_recent_durations_counts_down() -> None:
    clock = Clock()
    pm, _ = model(recent_ms=(10_000, 20_000), clock=clock)
    assert pm.eta_s() == 15.0  # before the start: the mean run time
    pm.feed(ce.ExecutionStart(prompt_id="p"))
    clock.now += 5
    assert pm.eta_s() == 10.0
    clock.now += 60
    assert pm.eta_s() is None  # past the usual time with no progress to go by: no made-up "0 s left"


def test_eta_from_pace_without_history() -> None:
    clock = Clock()
    pm, graph = model(clock=clock)
    pm.feed(ce.ExecutionStart(prompt_id="p"))
    assert pm.eta_s() is None
    pm.feed(ce.ExecutionCached(prompt_id="p", nodes=tuple(list(graph)[: len(graph) // 2])))
    clock.now += 4
    eta = pm.eta_s()
    assert eta is not None and eta > 0


def test_no_nameless_step_before_a_node_runs() -> None:
    """Regression: ComfyUI first sends ``execution_cached`` with no nodes; that showed an empty step."""
    pm, _ = model()
    assert pm.feed(ce.ExecutionStart(prompt_id="p")) is None
    assert pm.feed(ce.ExecutionCached(prompt_id="p", nodes=())) is None
    first = pm.feed(ce.Executing(prompt_id="p", node="4", display_node="4"))
    assert first is not None and first.node_label == "Loading model"


def test_fully_cached_rerun_names_its_steps() -> None:
    """Regression: a re-run served from ComfyUI's cache has no ``executing``; its steps still have names."""
    pm, graph = model()
    cached = pm.feed(ce.ExecutionCached(prompt_id="p", nodes=tuple(graph)))
    assert cached is not None and cached.node_label and cached.done_nodes == len(graph)
    saved = pm.feed(ce.Executed(prompt_id="p", node="9", output={"images": []}, display_node="9"))
    assert saved is not None and saved.node_label == "Saving"


def test_percent_moves_evenly_through_sampling() -> None:
    """Regression: every node weighed the same, so a 20-step sampler sat at ~60 % and then jumped."""
    pm, graph = model()  # txt2img: 7 nodes, KSampler "3" with 20 steps (the manifest default)
    for node in ("4", "6", "7", "5"):
        pm.feed(ce.Executing(prompt_id="p", node=node, display_node=node))
    first = pm.feed(ce.Progress(prompt_id="p", node="3", value=1, max=20))
    assert first is not None and first.percent < 25
    half = pm.feed(ce.Progress(prompt_id="p", node="3", value=10, max=20))
    assert half is not None and 45 < half.percent < 65
    late = pm.feed(ce.Progress(prompt_id="p", node="3", value=19, max=20))
    assert late is not None and late.percent > 80


def test_one_log_line_per_node_start_and_end_not_per_step() -> None:
    """Issue 13 item 2: node_started / node_finished with id, class, label and duration_ms."""
    clock = Clock()
    pm, graph = model(clock=clock)
    with capture_logs() as logs:
        pm.feed(ce.Executing(prompt_id="p", node="3", display_node="3"))
        for step in range(1, 21):
            clock.now += 0.5
            pm.feed(ce.Progress(prompt_id="p", node="3", value=step, max=20))
        pm.feed(ce.ProgressState(prompt_id="p", nodes={"3": state("3", 20, 20, "finished")}))
        pm.feed(ce.Executing(prompt_id="p", node="8", display_node="8"))
        clock.now += 1.0
        pm.feed(ce.Executing(prompt_id="p", node="9", display_node="9"))
    node_lines = [e for e in logs if e["event"] in ("node_started", "node_finished")]
    assert [(e["event"], e["node_id"]) for e in node_lines] == [
        ("node_started", "3"),
        ("node_finished", "3"),
        ("node_started", "8"),
        ("node_finished", "8"),
        ("node_started", "9"),
    ]
    sampled = node_lines[1]
    assert sampled["class_type"] == graph["3"]["class_type"] and sampled["node_label"] == "Sampling"
    assert sampled["duration_ms"] == 10000 and node_lines[3]["duration_ms"] == 1000


def test_loading_activity_is_passed_on_until_steps_come() -> None:
    pm, _ = model()
    loading = ce.NodeState(
        value=0, max=1, state="running", node_id="4", display_node_id="4", activity="loading"
    )
    first = pm.feed(ce.ProgressState(prompt_id="p", nodes={"4": loading}))
    assert first is not None and first.activity == "loading" and first.node_label == "Loading model"
    sampling = pm.feed(ce.Executing(prompt_id="p", node="3", display_node="3"))
    assert sampling is not None and sampling.activity is None  # another node: its own state
    pm.feed(ce.ProgressState(prompt_id="p", nodes={"3": state("3", 0, 1, "running")}))
    step = pm.feed(ce.Progress(prompt_id="p", node="3", value=1, max=20))
    assert step is not None and step.activity is None


def test_activity_is_parsed_from_progress_state() -> None:
    frame = {
        "prompt_id": "p",
        "nodes": {"4": {"value": 0, "max": 1, "state": "running", "activity": "loading"}},
    }
    event = ce.parse_json("progress_state", frame)
    assert isinstance(event, ce.ProgressState) and event.nodes["4"].activity == "loading"
    plain = ce.parse_json("progress_state", {"prompt_id": "p", "nodes": {"4": {"state": "running"}}})
    assert isinstance(plain, ce.ProgressState) and plain.nodes["4"].activity is None  # 0.3.64
