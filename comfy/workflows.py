"""Workflows: an API-format graph plus a manifest, loaded from directories, validated and rendered.

``load_workflows(dirs)`` reads the shipped ``workflows/`` directory, then each extra directory (a workflow
of the same name replaces an earlier one). ``Workflow.validate(raw)`` turns user input into typed values
(or raises :class:`ParamError` with a stable reason); ``Workflow.render(values, images)`` returns a deep
copy of the graph with those values set at their targets — typed values in a dict, never JSON from strings.
``check_object_info(workflow, object_info)`` lists what a server lacks for a workflow.

This module is the public face; the pieces live in ``workflow_params`` (parameter types),
``workflow_manifest`` (manifest model, graph checks), ``workflow_template`` (:class:`Workflow`),
``workflow_check`` (``/object_info`` checks) and ``workflow_errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from comfy.workflow_check import check_object_info
from comfy.workflow_errors import ParamError, UnknownWorkflow, WorkflowError, WorkflowLoadError
from comfy.workflow_manifest import ImageInput, Manifest, check_graph_shape, check_references
from comfy.workflow_params import (
    SEED_MAX,
    AspectParam,
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    ModelParam,
    Param,
    SeedParam,
    TextParam,
    check_model_name,
)
from comfy.workflow_template import Workflow, WorkflowRegistry
from workflows import SHIPPED_DIR

MANIFEST_SUFFIX = ".manifest.json"
_PARAM_TAGS = {"text", "int", "float", "seed", "choice", "bool", "aspect", "model"}


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkflowLoadError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise WorkflowLoadError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowLoadError(
            path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _pydantic_problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        path = list(err["loc"])
        if len(path) > 2 and path[0] == "params" and path[2] in _PARAM_TAGS:
            del path[2]  # the discriminator tag pydantic adds: "params.steps.int.default"
        loc = ".".join(str(p) for p in path)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_workflow(manifest_path: Path, model_overrides: Mapping[str, str] | None = None) -> Workflow:
    """Load one ``<name>.manifest.json`` and the ``<name>.json`` graph next to it.

    ``model_overrides`` maps ``"<param>"`` or ``"<workflow>.<param>"`` to a model file name that replaces that
    model parameter's default. Raises :class:`WorkflowLoadError`.
    """
    name = manifest_path.name.removesuffix(MANIFEST_SUFFIX)
    graph_path = manifest_path.with_name(name + ".json")
    if not graph_path.is_file():
        raise WorkflowLoadError(manifest_path, f"manifest without its graph: {graph_path.name} is missing")
    raw_manifest = _read_json(manifest_path)
    try:
        graph = check_graph_shape(_read_json(graph_path))
    except ValueError as exc:
        raise WorkflowLoadError(graph_path, str(exc)) from None
    try:
        manifest = Manifest.model_validate(raw_manifest)
    except ValidationError as exc:
        raise WorkflowLoadError(manifest_path, _pydantic_problem(exc)) from None
    if manifest.name is not None and manifest.name != name:
        raise WorkflowLoadError(
            manifest_path, f"manifest name {manifest.name!r} does not match the file name {name!r}"
        )
    manifest = _apply_overrides(manifest, name, model_overrides or {}, manifest_path)
    try:
        check_references(manifest, graph)
    except ValueError as exc:
        raise WorkflowLoadError(manifest_path, str(exc)) from None
    return Workflow(manifest, graph, name=name, path=manifest_path)


def _apply_overrides(manifest: Manifest, name: str, overrides: Mapping[str, str], path: Path) -> Manifest:
    params = dict(manifest.params)
    for pname, param in manifest.params.items():
        if not isinstance(param, ModelParam):
            continue
        value = overrides.get(f"{name}.{pname}", overrides.get(pname))
        if value is None:
            continue
        try:
            check_model_name(pname, value)
        except ParamError:
            raise WorkflowLoadError(
                path, f"model override {value!r} for {pname!r} is not a plain file name"
            ) from None
        options = None if param.options is None else sorted({*param.options, value})
        params[pname] = param.model_copy(update={"default": value, "options": options})
    return manifest.model_copy(update={"params": params})


def _scan(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise WorkflowLoadError(directory, "workflows directory does not exist")
    manifests = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith((".", "_")):
            continue
        if path.name.endswith(MANIFEST_SUFFIX):
            manifests.append(path)
        elif not path.with_name(path.stem + MANIFEST_SUFFIX).is_file():
            raise WorkflowLoadError(
                path, f"graph without its manifest: {path.stem}{MANIFEST_SUFFIX} is missing"
            )
    return manifests


def load_workflows(
    dirs: Sequence[Path] = (),
    model_overrides: Mapping[str, str] | None = None,
    *,
    include_shipped: bool = True,
) -> WorkflowRegistry:
    """Load ``workflows.SHIPPED_DIR`` (unless ``include_shipped=False``), then each of ``dirs`` in order.

    A workflow in a later directory replaces one of the same name. An override key that matches no model
    parameter of any workflow is an error (a typo would otherwise be silent).
    Raises :class:`WorkflowLoadError`.
    """
    ordered: list[Path] = [SHIPPED_DIR] if include_shipped else []
    for d in dirs:
        if all(Path(d).resolve() != o.resolve() for o in ordered):
            ordered.append(Path(d))
    overrides = dict(model_overrides or {})
    found: dict[str, Workflow] = {}
    for directory in ordered:
        for manifest_path in _scan(directory):
            wf = load_workflow(manifest_path, overrides)
            found[wf.name] = wf
    used = {
        key
        for wf in found.values()
        for pname, p in wf.params.items()
        if isinstance(p, ModelParam)
        for key in (pname, f"{wf.name}.{pname}")
    }
    if unused := sorted(set(overrides) - used):
        raise WorkflowLoadError(
            Path("model_overrides"),
            f"{', '.join(unused)} match no model parameter (known: {', '.join(sorted(used)) or 'none'})",
        )
    return WorkflowRegistry(found)


__all__ = [
    "SEED_MAX",
    "AspectParam",
    "BoolParam",
    "ChoiceParam",
    "FloatParam",
    "ImageInput",
    "IntParam",
    "Manifest",
    "ModelParam",
    "Param",
    "ParamError",
    "SeedParam",
    "TextParam",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowError",
    "WorkflowLoadError",
    "WorkflowRegistry",
    "check_object_info",
    "load_workflow",
    "load_workflows",
]
