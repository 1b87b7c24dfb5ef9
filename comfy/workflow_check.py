"""What a workflow needs from a server (node types, model files, combo values) vs its ``/object_info``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfy.workflow_params import ChoiceParam, ModelParam, parse_target

if TYPE_CHECKING:
    from comfy.workflows import Workflow

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


def check_object_info(
    workflow: Workflow, object_info: Mapping[str, Any], values: Mapping[str, Any] | None = None
) -> list[str]:
    """Human-readable problems running ``workflow`` on a server with this ``/object_info``; empty if none.

    Checks node class types, model files (model params' values or defaults and literal loader inputs) and the
    options of choice params (e.g. a sampler the server does not have).
    """
    problems: list[str] = []
    graph = workflow.graph
    missing = sorted(
        (node_id, node["class_type"])
        for node_id, node in graph.items()
        if node["class_type"] not in object_info
    )
    problems.extend(f"node {nid} ({ct}): node type not installed on server" for nid, ct in missing)
    for use in model_inputs(workflow, values):
        options = combo_options(object_info, use.class_type, use.input_name)
        if options is not None and use.name not in options:
            problems.append(
                f"node {use.node_id} ({use.class_type}): model {use.name!r} not on server ({_has(options)})"
            )
    for pname, param in workflow.params.items():
        if not isinstance(param, ChoiceParam):
            continue
        for target in param.targets:
            node_id, input_name = parse_target(target)
            class_type = graph[node_id]["class_type"]
            options = combo_options(object_info, class_type, input_name)
            if options is None:
                continue
            if bad := [o for o in param.options if o not in options]:
                problems.append(
                    f"node {node_id} ({class_type}): param {pname!r} offers {', '.join(map(repr, bad))} "
                    f"for {input_name!r}, not accepted by server ({_has(options)})"
                )
    return problems
