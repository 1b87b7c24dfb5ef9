"""The manifest model (``<name>.manifest.json``) and the checks that tie it to its API-format graph."""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from comfy.workflow_params import Param, SeedParam, TextParam, parse_target

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class ImageInput(BaseModel):
    """An input image: the LoadImage-like ``node`` whose ``image`` input receives the uploaded file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    required: bool = True
    description: str = ""


class Manifest(BaseModel):
    """What a workflow takes and produces, next to its graph. ``extra="forbid"``: typos are load errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    description: str = ""
    kind: str = Field(default="custom", pattern=r"^[a-z0-9_]{1,40}$")
    timeout_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    params: dict[str, Param] = Field(default_factory=dict)
    images: dict[str, ImageInput] = Field(default_factory=dict)
    outputs: list[str] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    #: The seed parameter that "Reroll"/"Variations" change; defaults to the only seed parameter, if one.
    seed_param: str | None = None
    #: The text parameter that a chat command's free text fills (``/generate <prompt>``).
    prompt_param: str | None = None

    @model_validator(mode="after")
    def _names(self) -> Self:
        for n in [*self.params, *self.images]:
            if not re.match(NAME_PATTERN, n):
                raise ValueError(f"name {n!r} must match {NAME_PATTERN} (it becomes a --{n} option)")
        if both := set(self.params) & set(self.images):
            raise ValueError(f"{sorted(both)} are both a param and an image")
        if self.seed_param is not None and not isinstance(self.params.get(self.seed_param), SeedParam):
            raise ValueError(f"seed_param {self.seed_param!r} is not a param of type seed")
        if self.prompt_param is not None and not isinstance(self.params.get(self.prompt_param), TextParam):
            raise ValueError(f"prompt_param {self.prompt_param!r} is not a param of type text")
        return self


def check_graph_shape(graph: Any) -> dict[str, dict[str, Any]]:
    """Return the graph if it is API format; raise ValueError saying what it is otherwise."""
    if not isinstance(graph, dict):
        raise ValueError(f"the graph must be a JSON object of nodes, not {type(graph).__name__}")
    if isinstance(graph.get("nodes"), list) and isinstance(graph.get("links"), list):
        raise ValueError(
            "this is a UI-format export; in ComfyUI enable dev mode and use 'Save (API Format)' / "
            "'Export (API)' to save the API-format graph"
        )
    if set(graph) == {"prompt"} or ("prompt" in graph and "client_id" in graph):
        raise ValueError("this is a /prompt request body; save only the graph under its 'prompt' key")
    if not graph:
        raise ValueError("the graph has no nodes")
    for node_id, node in graph.items():
        if not (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)
        ):
            raise ValueError(
                f"node {node_id!r} is not an API-format node (needs 'class_type' and 'inputs'); "
                "export with 'Save (API Format)'"
            )
    return graph


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def check_references(manifest: Manifest, graph: dict[str, dict[str, Any]]) -> None:
    """Every node id and input path the manifest names must exist in the graph; raise ValueError if not."""

    def node(node_id: str, what: str) -> dict[str, Any]:
        if node_id not in graph:
            raise ValueError(
                f"{what} names node {node_id!r}, which is not in the graph (nodes: {', '.join(graph)})"
            )
        return graph[node_id]

    seen: dict[str, str] = {}
    for name, param in manifest.params.items():
        for target in param.all_targets():
            node_id, input_name = parse_target(target)
            inputs = node(node_id, f"param {name!r} target {target!r}")["inputs"]
            if input_name not in inputs:
                raise ValueError(
                    f"param {name!r} target {target!r}: node {node_id} ({graph[node_id]['class_type']}) "
                    f"has no input {input_name!r} (inputs: {', '.join(inputs)})"
                )
            current = inputs[input_name]
            if _is_link(current):
                raise ValueError(
                    f"param {name!r} target {target!r} is a link from node {current[0]}, not a value to set"
                )
            wanted = param.target_types
            if not isinstance(current, wanted) or (isinstance(current, bool) and bool not in wanted):
                raise ValueError(
                    f"param {name!r} ({param.type}) cannot set {target!r}, which holds "
                    f"{type(current).__name__} {current!r}"
                )
            if target in seen:
                raise ValueError(f"target {target!r} is set by both {seen[target]!r} and {name!r}")
            seen[target] = name
    for name, image in manifest.images.items():
        inputs = node(image.node, f"image {name!r}")["inputs"]
        if "image" not in inputs:
            raise ValueError(
                f"image {name!r}: node {image.node} ({graph[image.node]['class_type']}) has no 'image' input "
                "(use a LoadImage node)"
            )
    for out in manifest.outputs:
        node(out, "outputs")
    for node_id in manifest.labels:
        node(node_id, "labels")


def default_seed_param(manifest: Manifest) -> str | None:
    """The manifest's ``seed_param``, else its only seed parameter, else None."""
    if manifest.seed_param is not None:
        return manifest.seed_param
    seeds = [n for n, p in manifest.params.items() if isinstance(p, SeedParam)]
    return seeds[0] if len(seeds) == 1 else None


__all__ = ["ImageInput", "Manifest", "check_graph_shape", "check_references", "default_seed_param"]
