"""Bad workflow files are refused at load time with a message naming the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfy.workflows import WorkflowLoadError, load_workflow, load_workflows
from tests.workflows.conftest import write_workflow

UI_EXPORT = {
    "last_node_id": 9,
    "last_link_id": 9,
    "version": 0.4,
    "nodes": [{"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]}],
    "links": [[1, 4, 0, 3, 0, "MODEL"]],
    "groups": [],
    "config": {},
    "extra": {},
}


def load_error(tmp_path: Path, **kwargs: Any) -> WorkflowLoadError:
    write_workflow(tmp_path, "wf", **kwargs)
    with pytest.raises(WorkflowLoadError) as err:
        load_workflows([tmp_path], include_shipped=False)
    return err.value


def test_valid_fixture_loads(tmp_path: Path) -> None:
    write_workflow(tmp_path, "wf")
    reg = load_workflows([tmp_path], include_shipped=False)
    assert reg.names() == ["wf"]


def test_ui_format_export(tmp_path: Path) -> None:
    err = load_error(tmp_path, graph=UI_EXPORT)
    assert err.path == tmp_path / "wf.json"
    assert "UI-format export" in err.problem
    assert "Save (API Format)" in err.problem and "dev mode" in err.problem
    assert str(tmp_path / "wf.json") in str(err)


def test_prompt_request_body_instead_of_graph(tmp_path: Path, graph) -> None:
    err = load_error(tmp_path, graph={"prompt": graph, "client_id": "x"})
    assert "/prompt request body" in err.problem


@pytest.mark.parametrize("which", ["graph", "manifest"])
def test_invalid_json(tmp_path: Path, which: str) -> None:
    err = load_error(tmp_path, **{which: '{"4": {"class_type": "X",}'})
    assert err.path.name == ("wf.json" if which == "graph" else "wf.manifest.json")
    assert err.problem.startswith("invalid JSON:") and "line 1" in err.problem


def test_not_utf8(tmp_path: Path) -> None:
    write_workflow(tmp_path, "wf")
    (tmp_path / "wf.json").write_bytes(b'{"\xff": 1}')
    with pytest.raises(WorkflowLoadError, match="not UTF-8"):
        load_workflows([tmp_path], include_shipped=False)


def test_node_without_class_type(tmp_path: Path, graph) -> None:
    del graph["8"]["class_type"]
    err = load_error(tmp_path, graph=graph)
    assert "node '8' is not an API-format node" in err.problem


def test_target_names_missing_node(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"]["targets"] = ["33.inputs.steps"]
    err = load_error(tmp_path, manifest=manifest)
    assert err.path.name == "wf.manifest.json"
    assert "param 'steps' target '33.inputs.steps' names node '33', which is not in the graph" in err.problem


def test_target_names_missing_input(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"]["targets"] = ["3.inputs.stepz"]
    err = load_error(tmp_path, manifest=manifest)
    assert "node 3 (KSampler) has no input 'stepz'" in err.problem
    assert "steps" in err.problem  # lists the inputs it does have


def test_target_malformed_path(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"]["targets"] = ["3.steps"]
    err = load_error(tmp_path, manifest=manifest)
    assert "not of the form '<node_id>.inputs.<input_name>'" in err.problem


def test_target_is_a_link(tmp_path: Path, manifest) -> None:
    manifest["params"]["prompt"]["targets"] = ["6.inputs.clip"]
    err = load_error(tmp_path, manifest=manifest)
    assert "is a link from node 4" in err.problem


def test_target_type_mismatch(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"]["targets"] = ["3.inputs.sampler_name"]
    err = load_error(tmp_path, manifest=manifest)
    assert "param 'steps' (int) cannot set '3.inputs.sampler_name', which holds str" in err.problem


def test_target_set_twice(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps2"] = dict(manifest["params"]["steps"])
    err = load_error(tmp_path, manifest=manifest)
    assert "target '3.inputs.steps' is set by both 'steps' and 'steps2'" in err.problem


def test_label_names_missing_node(tmp_path: Path, manifest) -> None:
    manifest["labels"]["77"] = "Sampling"
    err = load_error(tmp_path, manifest=manifest)
    assert "labels names node '77'" in err.problem


def test_output_names_missing_node(tmp_path: Path, manifest) -> None:
    manifest["outputs"] = ["99"]
    err = load_error(tmp_path, manifest=manifest)
    assert "outputs names node '99'" in err.problem


def test_image_names_missing_node(tmp_path: Path, manifest) -> None:
    manifest["images"] = {"image": {"node": "10"}}
    err = load_error(tmp_path, manifest=manifest)
    assert "image 'image' names node '10'" in err.problem


def test_image_node_without_image_input(tmp_path: Path, manifest) -> None:
    manifest["images"] = {"image": {"node": "5"}}
    err = load_error(tmp_path, manifest=manifest)
    assert "node 5 (EmptyLatentImage) has no 'image' input" in err.problem


@pytest.mark.parametrize(
    ("param", "change", "expected"),
    [
        ("steps", {"default": 500}, "default 500 is outside [1, 100]"),
        ("steps", {"default": 0}, "default 0 is outside [1, 100]"),
        ("cfg", {"default": 31.0}, "default 31.0 is outside [1.0, 30.0]"),
        ("steps", {"min": 10, "max": 5, "default": 7}, "min 10 is above max 5"),
        ("sampler", {"default": "dpm"}, "default 'dpm' is not one of the options"),
        ("ar", {"default": "10:1"}, "default '10:1' is not an allowed ratio"),
        ("prompt", {"max_length": 3, "default": "long"}, "default is longer than max_length 3"),
        ("checkpoint", {"default": "../../etc/passwd"}, "is not a plain relative file name"),
    ],
)
def test_default_out_of_bounds(
    tmp_path: Path, manifest, param: str, change: dict[str, Any], expected: str
) -> None:
    manifest["params"][param].update(change)
    err = load_error(tmp_path, manifest=manifest)
    assert f"params.{param}: " in err.problem
    assert expected in err.problem


def test_unknown_manifest_key_is_refused(tmp_path: Path, manifest) -> None:
    manifest["timeout"] = 30
    err = load_error(tmp_path, manifest=manifest)
    assert "timeout: Extra inputs are not permitted" in err.problem


def test_unknown_param_type(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"]["type"] = "integer"
    err = load_error(tmp_path, manifest=manifest)
    assert "params.steps" in err.problem and "'integer'" in err.problem


def test_bad_param_name(tmp_path: Path, manifest) -> None:
    manifest["params"]["Bad-Name"] = manifest["params"].pop("steps")
    err = load_error(tmp_path, manifest=manifest)
    assert "name 'Bad-Name' must match" in err.problem


def test_seed_param_must_be_a_seed(tmp_path: Path, manifest) -> None:
    manifest["seed_param"] = "steps"
    err = load_error(tmp_path, manifest=manifest)
    assert "seed_param 'steps' is not a param of type seed" in err.problem


def test_manifest_name_must_match_file(tmp_path: Path, manifest) -> None:
    manifest["name"] = "other"
    err = load_error(tmp_path, manifest=manifest)
    assert "manifest name 'other' does not match the file name 'wf'" in err.problem


def test_manifest_without_graph(tmp_path: Path) -> None:
    write_workflow(tmp_path, "wf")
    (tmp_path / "wf.json").unlink()
    with pytest.raises(WorkflowLoadError) as err:
        load_workflows([tmp_path], include_shipped=False)
    assert err.value.path == tmp_path / "wf.manifest.json"
    assert "manifest without its graph: wf.json is missing" in err.value.problem


def test_graph_without_manifest(tmp_path: Path, graph) -> None:
    (tmp_path / "lonely.json").write_text(json.dumps(graph))
    with pytest.raises(WorkflowLoadError) as err:
        load_workflows([tmp_path], include_shipped=False)
    assert err.value.path == tmp_path / "lonely.json"
    assert "graph without its manifest: lonely.manifest.json is missing" in err.value.problem


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WorkflowLoadError, match="workflows directory does not exist"):
        load_workflows([tmp_path / "nope"])


def test_load_workflow_single_file(tmp_path: Path) -> None:
    wf = load_workflow(write_workflow(tmp_path, "single"))
    assert wf.name == "single" and wf.path == tmp_path / "single.manifest.json"
