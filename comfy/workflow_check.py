"""What a workflow needs from a server (node types, model files, combo values) vs its ``/object_info``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfy.workflow_params import ChoiceParam, ModelParam, parse_target

if TYPE_CHECKING:
    from comfy.workflow_template import Workflow

#: Literal loader inputs → model folder, by input name (any node class).
MODEL_INPUTS: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "vae_name": "vae",
    "lora_name": "loras",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
}
#: ``model_name`` means different folders on different nodes.
MODEL_NAME_FOLDERS: dict[str, str] = {
    "UpscaleModelLoader": "upscale_models",
    "PhotoMakerLoader": "photomaker",
}
_SHOWN_OPTIONS = 10


@dataclass(frozen=True)
class ModelUse:
    """One model file a node will load."""

    node_id: str
    class_type: str
    input_name: str
    folder: str
    name: str


def model_inputs(workflow: Workflow, values: Mapping[str, Any] | None = None) -> list[ModelUse]:
    """Model files the rendered graph loads: model params (value or default) and literal loader inputs."""
    graph = workflow.graph
    uses: list[ModelUse] = []
    targeted: set[tuple[str, str]] = set()
    for pname, param in workflow.params.items():
        if not isinstance(param, ModelParam):
            continue
        name = param.resolve(pname, (values or {}).get(pname))
        for target in param.targets:
            node_id, input_name = parse_target(target)
            targeted.add((node_id, input_name))
            uses.append(ModelUse(node_id, graph[node_id]["class_type"], input_name, param.folder, name))
    for node_id, node in graph.items():
        class_type = node["class_type"]
        for input_name, value in node["inputs"].items():
            if not isinstance(value, str) or (node_id, input_name) in targeted:
                continue
            folder = MODEL_INPUTS.get(input_name)
            if input_name == "model_name":
                folder = MODEL_NAME_FOLDERS.get(class_type)
            if folder is not None:
                uses.append(ModelUse(node_id, class_type, input_name, folder, value))
    return uses


def combo_options(object_info: Mapping[str, Any], class_type: str, input_name: str) -> list[str] | None:
    """The allowed values of a combo input, from either shape; None when the input is not a combo.

    Legacy: ``[["a.safetensors", "b.safetensors"], {...}]``; V3: ``["COMBO", {"options": [...], ...}]``.
    """
    node = object_info.get(class_type)
    if not isinstance(node, Mapping):
        return None
    inputs = node.get("input")
    if not isinstance(inputs, Mapping):
        return None
    for section in ("required", "optional"):
        group = inputs.get(section)
        spec = group.get(input_name) if isinstance(group, Mapping) else None
        if not isinstance(spec, list) or not spec:
            continue
        if isinstance(spec[0], list):
            return [str(o) for o in spec[0]]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
            options = spec[1].get("options")
            if isinstance(options, list):
                return [str(o) for o in options]
        return None
    return None


def _has(options: list[str]) -> str:
    if not options:
        return "has: none"
    shown = ", ".join(options[:_SHOWN_OPTIONS])
    more = len(options) - _SHOWN_OPTIONS
    return f"has: {shown}" + (f", … {more} more" if more > 0 else "")


def _node_key(node_id: str) -> tuple[int, int, str]:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _required_inputs(object_info: Mapping[str, Any], class_type: str) -> list[str]:
    node = object_info.get(class_type)
    inputs = node.get("input") if isinstance(node, Mapping) else None
    required = inputs.get("required") if isinstance(inputs, Mapping) else None
    return list(required) if isinstance(required, Mapping) else []


def check_object_info(
    workflow: Workflow, object_info: Mapping[str, Any], values: Mapping[str, Any] | None = None
) -> list[str]:
    """Human-readable problems running ``workflow`` on a server with this ``/object_info``; empty if none.

    Checks, node by node: the class type is installed; its required inputs are all in the graph (a server
    newer than the export may require more); model files (model params' values or defaults, literal loader
    inputs) are among the server's options; every option a choice param offers and every other literal combo
    value is accepted. ``values`` (optional, validated) selects the model names to check.
    """
    problems: list[str] = []
    graph = workflow.graph
    checked: set[tuple[str, str]] = {(spec.node, "image") for spec in workflow.images.values()}
    for node_id in sorted(graph, key=_node_key):
        class_type = graph[node_id]["class_type"]
        if class_type not in object_info:
            problems.append(f"node {node_id} ({class_type}): node type not installed on server")
            continue
        if absent := [
            i for i in _required_inputs(object_info, class_type) if i not in graph[node_id]["inputs"]
        ]:
            problems.append(
                f"node {node_id} ({class_type}): server requires input(s) {', '.join(map(repr, absent))} "
                "that the graph lacks (export it again from this server's ComfyUI)"
            )
    for use in model_inputs(workflow, values):
        checked.add((use.node_id, use.input_name))
        options = combo_options(object_info, use.class_type, use.input_name)
        if options is not None and use.name not in options:
            problems.append(
                f"node {use.node_id} ({use.class_type}): model {use.name!r} not on server ({_has(options)})"
            )
    for pname, param in workflow.params.items():
        if isinstance(param, ChoiceParam):
            for target in param.targets:
                node_id, input_name = parse_target(target)
                checked.add((node_id, input_name))
                class_type = graph[node_id]["class_type"]
                options = combo_options(object_info, class_type, input_name)
                if options is not None and (bad := [o for o in param.options if o not in options]):
                    problems.append(
                        f"node {node_id} ({class_type}): param {pname!r} offers {', '.join(map(repr, bad))} "
                        f"for {input_name!r}, not accepted by server ({_has(options)})"
                    )
        else:
            checked.update(parse_target(t) for t in param.all_targets())
    for node_id in sorted(graph, key=_node_key):
        class_type = graph[node_id]["class_type"]
        for input_name, value in graph[node_id]["inputs"].items():
            if (node_id, input_name) in checked or not isinstance(value, str):
                continue
            options = combo_options(object_info, class_type, input_name)
            if options is not None and value not in options:
                problems.append(
                    f"node {node_id} ({class_type}): {input_name} {value!r} not accepted by server "
                    f"({_has(options)})"
                )
    return problems
