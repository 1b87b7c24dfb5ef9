"""A loaded workflow (graph + manifest): validate user values, render the graph to submit, list needs."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from comfy.workflow_check import model_inputs
from comfy.workflow_errors import ParamError, UnknownWorkflow
from comfy.workflow_manifest import ImageInput, Manifest, default_seed_param
from comfy.workflow_params import AspectParam, Param, SeedParam, TextParam, check_model_name, parse_target


class Workflow:
    """One loaded workflow. Read-only: ``validate`` and ``render`` never change it."""

    def __init__(
        self, manifest: Manifest, graph: dict[str, dict[str, Any]], *, name: str, path: Path
    ) -> None:
        self.manifest = manifest
        self.name = name
        #: The manifest file it came from (the graph is next to it).
        self.path = path
        self._graph = graph
        self.seed_param = default_seed_param(manifest)
        #: The text param a chat command's free text fills: the manifest's, else a text param named "prompt".
        self.prompt_param = manifest.prompt_param or (
            "prompt" if isinstance(manifest.params.get("prompt"), TextParam) else None
        )

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, kind={self.kind!r}, path={str(self.path)!r})"

    @property
    def description(self) -> str:
        """One line for ``/workflows``."""
        return self.manifest.description

    @property
    def kind(self) -> str:
        """``txt2img``, ``img2img``, ``upscale``, ``hires``... (free-form)."""
        return self.manifest.kind

    @property
    def timeout_s(self) -> float:
        """How long a job of this workflow may run on the server."""
        return self.manifest.timeout_s

    @property
    def params(self) -> Mapping[str, Param]:
        """Parameter name → its typed spec (bounds, default, options...)."""
        return MappingProxyType(self.manifest.params)

    @property
    def images(self) -> Mapping[str, ImageInput]:
        """Image input name → the node that loads it."""
        return MappingProxyType(self.manifest.images)

    @property
    def outputs(self) -> list[str]:
        """Output node ids whose images are the result."""
        return list(self.manifest.outputs)

    @property
    def labels(self) -> Mapping[str, str]:
        """Node id → human step label for progress ("Sampling")."""
        return MappingProxyType(self.manifest.labels)

    @property
    def graph(self) -> Mapping[str, Any]:
        """The template graph (read-only view; use :meth:`render` for a graph to submit)."""
        return MappingProxyType(self._graph)

    def label(self, node_id: str) -> str | None:
        """The step label of a node, or None when the manifest gives none."""
        return self.manifest.labels.get(node_id)

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Typed values for every parameter: ``raw`` coerced and bounded, defaults filled, seed resolved.

        Unknown names are refused. The result validates again to itself, so it can be stored and re-used
        (a reroll replaces the seed and validates again).
        """
        for key in raw:
            if key not in self.manifest.params:
                raise ParamError(str(key), "unknown_param", known=sorted(self.manifest.params))
        return {name: param.resolve(name, raw.get(name)) for name, param in self.manifest.params.items()}

    def render(self, values: Mapping[str, Any], images: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The graph to POST: a deep copy with ``values`` (from :meth:`validate`) and image names set.

        ``images`` maps image input names to what ``ComfyClient.upload_image`` returned. Values are validated
        again; a missing seed is an error here (it would otherwise be random and not reported).
        """
        for name, param in self.manifest.params.items():
            if isinstance(param, SeedParam) and values.get(name) is None:
                raise ParamError(name, "required")
        checked = self.validate(values)
        images = images or {}
        for key in images:
            if key not in self.manifest.images:
                raise ParamError(str(key), "unknown_param", known=sorted(self.manifest.images))
        graph = copy.deepcopy(self._graph)
        for name, param in self.manifest.params.items():
            for target, value in param.assignments(checked[name]):
                node_id, input_name = parse_target(target)
                graph[node_id]["inputs"][input_name] = value
        for name, spec in self.manifest.images.items():
            filename = images.get(name)
            if filename is None:
                if spec.required:
                    raise ParamError(name, "required")
                continue
            if not isinstance(filename, str):
                raise ParamError(name, "bad_image_name")
            try:
                check_model_name(name, filename)
            except ParamError:
                raise ParamError(name, "bad_image_name") from None
            graph[spec.node]["inputs"]["image"] = filename
        return graph

    def reseed(self, values: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
        """``values`` with a new seed (random when ``seed`` is None) for Reroll/Variations, validated.

        Raises :class:`ParamError` (``unknown_param`` for ``seed``) if the workflow has no seed parameter;
        front ends hide those buttons when :attr:`seed_param` is None.
        """
        if self.seed_param is None:
            raise ParamError("seed", "unknown_param", known=sorted(self.manifest.params))
        return self.validate({**values, self.seed_param: -1 if seed is None else seed})

    def info(self) -> dict[str, Any]:
        """A JSON-able summary for listings (``/workflows``, the HTTP API, Discord autocomplete)."""
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "timeout_s": self.timeout_s,
            "seed_param": self.seed_param,
            "prompt_param": self.prompt_param,
            "params": {
                n: p.model_dump(mode="json", exclude={"targets", "width", "height"})
                for n, p in self.manifest.params.items()
            },
            "images": {
                n: {"required": i.required, "description": i.description} for n, i in self.images.items()
            },
        }

    def size(self, values: Mapping[str, Any]) -> tuple[int, int] | None:
        """Pixel size chosen by the first aspect parameter of validated ``values``, if there is one."""
        for name, param in self.manifest.params.items():
            if isinstance(param, AspectParam):
                return param.size(values[name])
        return None

    def required_nodes(self) -> set[str]:
        """The node class types the server must have."""
        return {node["class_type"] for node in self._graph.values()}

    def required_models(self, values: Mapping[str, Any] | None = None) -> dict[str, set[str]]:
        """Model folder → file names it loads (model params' values or defaults, literal loader inputs)."""
        found: dict[str, set[str]] = {}
        for use in model_inputs(self, values):
            found.setdefault(use.folder, set()).add(use.name)
        return found


class WorkflowRegistry:
    """The loaded workflows by name, in load order (shipped first)."""

    def __init__(self, workflows: Mapping[str, Workflow]) -> None:
        self._workflows = dict(workflows)

    def get(self, name: str) -> Workflow:
        """The workflow called ``name``; raises :class:`UnknownWorkflow`."""
        try:
            return self._workflows[name]
        except KeyError:
            raise UnknownWorkflow(name, self._workflows) from None

    def names(self) -> list[str]:
        """Workflow names, sorted."""
        return sorted(self._workflows)

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self._workflows.values())

    def __len__(self) -> int:
        return len(self._workflows)
