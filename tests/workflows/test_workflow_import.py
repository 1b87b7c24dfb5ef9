"""``comfybot workflow import``: proposing manifests for API-format graphs.

The shipped graphs are imported and the proposals compared with the shipped manifests in what a graph can
tell: parameter names, types and targets (width/height for the aspect), the kind, the images (node, required)
and the outputs, plus ``seed_param``/``prompt_param``. Bounds, defaults people chose, descriptions and labels
are the author's choices, not in the graph, so they are not compared; the proposal may offer more than a
shipped manifest chose to expose, and those extras are asserted exactly (hires: ``batch``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from comfy.workflow_import import ImportRefused, propose, workflow_name
from comfy.workflows import load_workflows
from tests.fakes.comfyui import build_object_info
from workflows import SHIPPED_DIR

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["txt2img", "img2img", "hires", "upscale"]
#: What the importer proposes beyond a shipped manifest (the graph has it; the author left it out).
EXTRA = {"hires": {"batch"}}


def _graph(name: str) -> Any:
    return json.loads((SHIPPED_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _derivable(manifest: dict[str, Any]) -> dict[str, Any]:
    params = {
        pname: (spec["type"], spec.get("targets"), spec.get("width"), spec.get("height"), spec.get("folder"))
        for pname, spec in manifest["params"].items()
    }
    images = {iname: (spec["node"], spec.get("required", True)) for iname, spec in manifest["images"].items()}
    return {
        "params": params,
        "images": images,
        "outputs": manifest["outputs"],
        "kind": manifest["kind"],
        "seed_param": manifest.get("seed_param"),
        "prompt_param": manifest.get("prompt_param"),
        "labelled": sorted(manifest["labels"]),
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_import_of_a_shipped_graph_reproduces_its_manifest(name: str) -> None:
    shipped = json.loads((SHIPPED_DIR / f"{name}.manifest.json").read_text(encoding="utf-8"))
    proposal = propose(_graph(name), name)
    got = _derivable(proposal.manifest)
    extra = EXTRA.get(name, set())
    assert set(got["params"]) - set(shipped["params"]) == extra
    for pname in extra:
        del got["params"][pname]
    assert got == _derivable(shipped)


def test_ui_format_export_is_refused_with_the_reason_and_the_export_to_use() -> None:
    ui = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [[1, 4, 0, 3, 0, "MODEL"]]}
    with pytest.raises(ImportRefused) as exc:
        propose(ui, "ui")
    assert "UI-format" in str(exc.value)
    assert "API" in str(exc.value) and "'nodes'" in str(exc.value)


def test_graph_without_an_output_node_is_refused() -> None:
    graph = _graph("txt2img")
    graph["9"]["class_type"] = "PreviewImage"
    with pytest.raises(ImportRefused, match="no output node"):
        propose(graph, "nosave")


def test_advanced_sampler_animated_output_and_conditioning_in_between() -> None:
    graph = _graph("txt2img")
    sampler = graph["3"]["inputs"]
    sampler["noise_seed"] = sampler.pop("seed")
    graph["3"]["class_type"] = "KSamplerAdvanced"
    graph["12"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0]}}
    graph["12"]["inputs"]["conditioning_2"] = ["13", 0]
    graph["13"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}}
    sampler["positive"] = ["12", 0]
    graph["9"]["class_type"] = "SaveAnimatedWEBP"
    graph["7"]["inputs"]["text"] = "blurry"
    graph["5"]["inputs"] |= {"width": 768, "height": 512}
    m = propose(graph, "adv").manifest
    assert m["params"]["seed"]["targets"] == ["3.inputs.noise_seed"]
    assert m["params"]["prompt"]["targets"] == ["6.inputs.text", "13.inputs.text"]
    assert m["params"]["negative"]["default"] == "blurry"
    assert m["params"]["ar"]["default"] == "3:2" and m["params"]["ar"]["base_pixels"] == 768 * 512
    assert m["outputs"] == ["9"] and m["labels"]["3"] == "KSampler"


def test_name_comes_from_the_file_and_must_be_valid() -> None:
    assert workflow_name(Path("My Flux-Dev v2.json"), None) == "my_flux_dev_v2"
    assert workflow_name(Path("2x.json"), None) == "wf_2x"
    with pytest.raises(ImportRefused, match="--name"):
        workflow_name(Path("x.json"), "Bad-Name")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "comfybot", "workflow", "import", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def test_cli_writes_two_files_that_load_and_refuses_to_overwrite(tmp_path: Path) -> None:
    graph = tmp_path / "in" / "My Hires.json"
    graph.parent.mkdir()
    graph.write_text((SHIPPED_DIR / "hires.json").read_text(encoding="utf-8"), encoding="utf-8")
    info = build_object_info(["v1-5-pruned-emaonly.safetensors"], [], [])
    (tmp_path / "object_info.json").write_text(json.dumps(info), encoding="utf-8")
    out = tmp_path / "wf"
    args = (str(graph), "--dir", str(out), "--object-info", str(tmp_path / "object_info.json"))
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert "param hires_steps (int)" in result.stdout and "review before use" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["my_hires.json", "my_hires.manifest.json"]
    wf = load_workflows([out]).get("my_hires")
    assert wf.kind == "hires" and wf.seed_param == "seed"
    assert wf.graph == json.loads(graph.read_text(encoding="utf-8"))

    again = _run(*args)
    assert again.returncode == 1 and "--force" in again.stderr
    assert _run(*args, "--force").returncode == 0


def test_cli_does_not_write_what_the_server_cannot_run(tmp_path: Path) -> None:
    info = build_object_info(["other.safetensors"], [], [])
    (tmp_path / "object_info.json").write_text(json.dumps(info), encoding="utf-8")
    graph = str(SHIPPED_DIR / "txt2img.json")
    result = _run(
        graph,
        "--name",
        "t2i",
        "--dir",
        str(tmp_path / "wf"),
        "--object-info",
        str(tmp_path / "object_info.json"),
    )
    assert result.returncode == 1
    assert "v1-5-pruned-emaonly.safetensors" in result.stdout and "not written" in result.stdout
    assert not (tmp_path / "wf").exists()


def test_cli_refuses_a_ui_export(tmp_path: Path) -> None:
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}), encoding="utf-8")
    result = _run(str(ui), "--dir", str(tmp_path / "wf"))
    assert result.returncode == 1
    assert "UI-format" in result.stderr and "Export (API)" in result.stderr
    assert not (tmp_path / "wf").exists()


def test_unusable_values_are_reported_not_written() -> None:
    graph = _graph("txt2img")
    graph["5"]["inputs"] |= {"width": 4096, "height": 64}
    proposal = propose(graph, "wide")
    assert "ar" not in proposal.manifest["params"]
    assert any("4096x64" in line for line in proposal.review)
    graph["4"]["inputs"]["ckpt_name"] = "/etc/passwd"
    with pytest.raises(ImportRefused, match="would not load"):
        propose(graph, "abs")
