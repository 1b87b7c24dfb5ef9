"""Propose a manifest for an API-format ComfyUI graph (``comfybot workflow import``).

Pure functions: :func:`propose` reads the graph and returns a manifest dict in the format of
``workflows/*.manifest.json`` plus notes for the person reviewing it. What it recognises:

* prompt / negative: the ``CLIPTextEncode`` nodes that feed a sampler's ``positive`` / ``negative``
  (KSampler, KSamplerAdvanced; through conditioning nodes in between);
* seed, steps, cfg, sampler, scheduler (and denoise where it is below 1) from the samplers; a second sampler
  fed by a latent upscale gets ``hires_steps`` and the upscale factor ``scale``;
* size (the ``ar`` aspect parameter) and batch from the EmptyLatentImage node;
* checkpoint (CheckpointLoaderSimple) and upscale_model (UpscaleModelLoader) as model parameters;
* LoadImage nodes as images, SaveImage / SaveAnimatedWEBP / SaveAnimatedPNG as outputs, labels from titles.

Bounds (min/max/step) are proposals, not facts the graph contains: the summary says what to review.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy.workflow_check import check_object_info, combo_options
from comfy.workflow_manifest import NAME_PATTERN, Manifest, check_graph_shape, check_references
from comfy.workflow_template import Workflow

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced"})
LATENTS = frozenset({"EmptyLatentImage", "EmptySD3LatentImage"})
LATENT_UPSCALES = frozenset({"LatentUpscale", "LatentUpscaleBy"})
OUTPUT_NODES = frozenset({"SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG"})
#: Loader class → (input, parameter name, model folder).
MODEL_LOADERS: dict[str, tuple[str, str, str]] = {
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoint", "checkpoints"),
    "UpscaleModelLoader": ("model_name", "upscale_model", "upscale_models"),
}
#: Offered when no ``/object_info`` says what the server has (the shipped manifests' lists).
DEFAULT_SAMPLERS = [
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
DEFAULT_SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
_SEED_INPUTS = ("seed", "noise_seed")
_MAX_HOPS = 8

Graph = dict[str, dict[str, Any]]


class ImportRefused(ValueError):
    """The file cannot become a workflow; the message says why and what to do."""


@dataclass
class Proposal:
    """A proposed manifest and what the reviewer should look at."""

    name: str
    manifest: dict[str, Any]
    graph: Graph
    found: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)


def _node_key(node_id: str) -> tuple[int, int, str]:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _ids(graph: Graph, classes: frozenset[str] | set[str]) -> list[str]:
    return sorted((n for n, node in graph.items() if node["class_type"] in classes), key=_node_key)


def _link(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return value[0]
    return None


def _title(graph: Graph, node_id: str) -> str:
    meta = graph[node_id].get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) and title.strip() else str(graph[node_id]["class_type"])


def _encoders(graph: Graph, start: Any) -> list[str]:
    """CLIPTextEncode nodes upstream of a sampler's conditioning input (not through ``clip`` links)."""
    found: list[str] = []
    frontier = [n for n in [_link(start)] if n in graph]
    seen: set[str] = set()
    for _ in range(_MAX_HOPS):
        nxt: list[str] = []
        for node_id in frontier:
            if node_id in seen:
                continue
            seen.add(node_id)
            node = graph[node_id]
            if node["class_type"] == "CLIPTextEncode":
                found.append(node_id)
                continue
            for name, value in node["inputs"].items():
                up = _link(value)
                if up in graph and name != "clip":
                    nxt.append(up)
        frontier = nxt
    return sorted(found, key=_node_key)


def _literal(graph: Graph, node_id: str, input_name: str, types: tuple[type, ...]) -> bool:
    value = graph[node_id]["inputs"].get(input_name)
    return isinstance(value, types) and not isinstance(value, bool) and _link(value) is None


def _targets(graph: Graph, ids: list[str], input_name: str, types: tuple[type, ...]) -> list[str]:
    return [f"{n}.inputs.{input_name}" for n in ids if _literal(graph, n, input_name, types)]


def _text_params(graph: Graph, samplers: list[str], p: Proposal) -> dict[str, Any]:
    pos: list[str] = []
    neg: list[str] = []
    for s in samplers:
        pos += [n for n in _encoders(graph, graph[s]["inputs"].get("positive")) if n not in pos]
        neg += [n for n in _encoders(graph, graph[s]["inputs"].get("negative")) if n not in neg]
    if both := [n for n in neg if n in pos]:
        p.review.append(f"node(s) {', '.join(both)} feed both positive and negative: kept as the prompt")
        neg = [n for n in neg if n not in both]
    params: dict[str, Any] = {}
    if t := _targets(graph, pos, "text", (str,)):
        params["prompt"] = {"type": "text", "max_length": 2000, "required": True, "targets": t}
        params["prompt"]["description"] = "What to draw"
    if t := _targets(graph, neg, "text", (str,)):
        default = str(graph[neg[0]]["inputs"]["text"])[:2000]
        params["negative"] = {"type": "text", "max_length": 2000, "default": default, "targets": t}
        params["negative"]["description"] = "What to avoid"
    return params


def _options(
    info: Mapping[str, Any] | None, node_id: str, graph: Graph, name: str, fallback: list[str]
) -> list[str]:
    current = graph[node_id]["inputs"].get(name)
    found = combo_options(info, graph[node_id]["class_type"], name) if info is not None else None
    options = list(found) if found else list(fallback)
    if isinstance(current, str) and current not in options:
        options.append(current)
    return options


def _is_hires(graph: Graph, sampler: str) -> bool:
    up = _link(graph[sampler]["inputs"].get("latent_image"))
    return up in graph and graph[up]["class_type"] in LATENT_UPSCALES


def _sampler_params(graph: Graph, samplers: list[str], info: Mapping[str, Any] | None) -> dict[str, Any]:
    first = graph[samplers[0]]["inputs"]
    params: dict[str, Any] = {}
    seeds = [t for name in _SEED_INPUTS for t in _targets(graph, samplers, name, (int,))]
    if seeds:
        params["seed"] = {"type": "seed", "targets": sorted(seeds, key=lambda t: _node_key(t.split(".")[0]))}
        params["seed"]["description"] = "Random seed (-1: random)"
    for i, s in enumerate(samplers):
        if not _literal(graph, s, "steps", (int,)):
            continue
        name = "steps" if i == 0 else ("hires_steps" if _is_hires(graph, s) else f"steps_{s}")
        if name in params:
            name = f"steps_{s}"
        steps = graph[s]["inputs"]["steps"]
        params[name] = {"type": "int", "min": 1, "max": max(60, steps), "default": max(1, steps)}
        params[name] |= {
            "targets": [f"{s}.inputs.steps"],
            "description": f"Sampling steps ({_title(graph, s)})",
        }
    if t := _targets(graph, samplers, "cfg", (int, float)):
        cfg = float(first.get("cfg", 7.0)) if _literal(graph, samplers[0], "cfg", (int, float)) else 7.0
        hi = max(20.0, cfg)
        params["cfg"] = {"type": "float", "min": min(1.0, cfg), "max": hi, "default": cfg, "step": 0.5}
        params["cfg"] |= {"targets": t, "description": "Prompt guidance (CFG)"}
    partial = [
        s
        for s in samplers
        if _literal(graph, s, "denoise", (int, float)) and graph[s]["inputs"]["denoise"] < 1
    ]
    if partial:
        d = float(graph[partial[0]]["inputs"]["denoise"])
        params["denoise"] = {"type": "float", "min": 0.0, "max": 1.0, "default": d, "step": 0.05}
        params["denoise"] |= {
            "targets": [f"{s}.inputs.denoise" for s in partial],
            "description": "How much to change",
        }
    for pname, input_name, fallback, what in (
        ("sampler", "sampler_name", DEFAULT_SAMPLERS, "Sampler"),
        ("scheduler", "scheduler", DEFAULT_SCHEDULERS, "Noise schedule"),
    ):
        if t := _targets(graph, samplers, input_name, (str,)):
            options = _options(info, samplers[0], graph, input_name, fallback)
            default = first.get(input_name) if first.get(input_name) in options else options[0]
            params[pname] = {"type": "choice", "options": options, "default": default, "targets": t}
            params[pname]["description"] = what
    return params


def _aspect(width: int, height: int) -> dict[str, Any]:
    g = math.gcd(width, height)
    multiple = 64 if width % 64 == 0 and height % 64 == 0 else 8
    ratio = max(width, height) / min(width, height)
    return {
        "type": "aspect",
        "default": f"{width // g}:{height // g}",
        "base_pixels": max(64 * 64, width * height),
        "multiple": multiple,
        "max_side": max(1024, 2 * max(width, height)),
        "max_ratio": min(16.0, max(4.0, math.ceil(ratio))),
    }


def _latent_params(graph: Graph, p: Proposal) -> dict[str, Any]:
    latents = _ids(graph, LATENTS)
    if not latents:
        return {}
    n = latents[0]
    if len(latents) > 1:
        p.review.append(f"{len(latents)} latent nodes; size and batch set only node {n}")
    params: dict[str, Any] = {}
    if _literal(graph, n, "batch_size", (int,)):
        batch = graph[n]["inputs"]["batch_size"]
        params["batch"] = {"type": "int", "min": 1, "max": max(4, batch), "default": max(1, batch)}
        params["batch"] |= {"targets": [f"{n}.inputs.batch_size"], "description": "Images per job"}
    if _literal(graph, n, "width", (int,)) and _literal(graph, n, "height", (int,)):
        w, h = graph[n]["inputs"]["width"], graph[n]["inputs"]["height"]
        if w <= 0 or h <= 0 or max(w, h) > 16 * min(w, h):
            p.review.append(f"node {n}: size {w}x{h} is not a ratio an aspect parameter allows; not offered")
        else:
            params["ar"] = _aspect(w, h) | {"width": [f"{n}.inputs.width"], "height": [f"{n}.inputs.height"]}
            params["ar"]["description"] = "Aspect ratio W:H"
    return params


def _other_params(graph: Graph) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for n in _ids(graph, frozenset(MODEL_LOADERS)):
        input_name, pname, folder = MODEL_LOADERS[graph[n]["class_type"]]
        if not _literal(graph, n, input_name, (str,)):
            continue
        name = pname if pname not in params else f"{pname}_{n}"
        params[name] = {"type": "model", "folder": folder, "default": graph[n]["inputs"][input_name]}
        params[name] |= {"targets": [f"{n}.inputs.{input_name}"], "description": _title(graph, n)}
    for n in _ids(graph, frozenset({"LatentUpscaleBy"})):
        if _literal(graph, n, "scale_by", (int, float)) and "scale" not in params:
            v = float(graph[n]["inputs"]["scale_by"])
            params["scale"] = {
                "type": "float",
                "min": min(1.0, v),
                "max": max(2.0, v),
                "default": v,
                "step": 0.25,
            }
            params["scale"] |= {"targets": [f"{n}.inputs.scale_by"], "description": "Upscale factor"}
    return params


def _kind(graph: Graph, samplers: list[str], images: dict[str, Any]) -> str:
    if any(_is_hires(graph, s) for s in samplers):
        return "hires"
    if samplers:
        return "img2img" if images else ("txt2img" if _ids(graph, LATENTS) else "custom")
    return "upscale" if images and _ids(graph, frozenset({"ImageUpscaleWithModel"})) else "custom"


def workflow_name(path: Path, name: str | None) -> str:
    """The workflow's name: ``name`` or the file's stem made lowercase ``a-z0-9_``; checked."""
    candidate = name if name is not None else re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")
    if candidate and not candidate[0].isalpha():
        candidate = "wf_" + candidate
    if not re.match(NAME_PATTERN, candidate):
        raise ImportRefused(f"workflow name {candidate!r} must match {NAME_PATTERN} (give --name)")
    return candidate


def check_shape(raw: Any) -> Graph:
    """The graph if it is API format; :class:`ImportRefused` with the reason and the export to use."""
    if isinstance(raw, dict) and isinstance(raw.get("nodes"), list) and isinstance(raw.get("links"), list):
        raise ImportRefused(
            "this is a UI-format workflow (top-level 'nodes' and 'links'): it has no node inputs as ComfyUI "
            "runs them. In ComfyUI use Workflow → Export (API) — 'Save (API Format)' in older versions, "
            "with dev mode on — and import that file"
        )
    try:
        return check_graph_shape(raw)
    except ValueError as exc:
        raise ImportRefused(str(exc)) from None


def propose(raw: Any, name: str, info: Mapping[str, Any] | None = None, source: str = "") -> Proposal:
    """A manifest for the API-format graph ``raw``, checked with the project's loader rules."""
    graph = check_shape(raw)
    p = Proposal(name=name, manifest={}, graph=graph)
    samplers = _ids(graph, SAMPLERS)
    params = _text_params(graph, samplers, p)
    if samplers:
        params |= _sampler_params(graph, samplers, info)
    params |= _latent_params(graph, p) | _other_params(graph)
    loads = _ids(graph, frozenset({"LoadImage"}))
    images = {
        ("image" if i == 0 else f"image_{n}"): {"node": n, "required": True, "description": _title(graph, n)}
        for i, n in enumerate(loads)
    }
    outputs = _ids(graph, OUTPUT_NODES)
    if not outputs:
        raise ImportRefused(
            "no output node: the graph needs a SaveImage, SaveAnimatedWEBP or SaveAnimatedPNG node "
            "(a PreviewImage is not kept, so nothing could be sent back)"
        )
    p.manifest = {
        "name": name,
        "description": f"Imported from {source}" if source else "Imported workflow",
        "kind": _kind(graph, samplers, images),
        "timeout_s": 300,
        "params": params,
        "images": images,
        "outputs": outputs,
        "labels": {n: _title(graph, n)[:100] for n in sorted(graph, key=_node_key)},
    }
    if "seed" in params:
        p.manifest["seed_param"] = "seed"
    if "prompt" in params:
        p.manifest["prompt_param"] = "prompt"
    _summarise(p, samplers)
    try:
        to_workflow(p)  # the loader's own checks, so what is written loads
    except ValueError as exc:
        raise ImportRefused(f"the proposed manifest would not load ({exc}); fix the graph's values") from None
    return p


def _summarise(p: Proposal, samplers: list[str]) -> None:
    params = p.manifest["params"]
    p.found.append(f"{len(p.graph)} nodes, {len(samplers)} sampler(s), kind {p.manifest['kind']!r}")
    for pname, spec in params.items():
        targets = spec.get("targets") or [*spec.get("width", []), *spec.get("height", [])]
        p.found.append(f"param {pname} ({spec['type']}) → {', '.join(targets)}")
    for iname, spec in p.manifest["images"].items():
        p.found.append(f"image {iname} → node {spec['node']}")
    p.found.append(f"outputs: {', '.join(p.manifest['outputs'])}")
    if not samplers:
        p.review.append("no KSampler/KSamplerAdvanced: no prompt, seed, steps or cfg parameters")
    elif "prompt" not in params:
        p.review.append("no CLIPTextEncode with literal text feeds a sampler's positive input: no prompt")
    p.review.append("min/max/step of numbers, the aspect's base_pixels/max_side and descriptions are guesses")
    p.review.append("labels are the node titles; progress shows them to users")
    if p.manifest["kind"] in ("img2img", "upscale"):
        p.review.append(f"kind {p.manifest['kind']!r}: a photo / the Upscale button may use this workflow")


def to_workflow(p: Proposal, path: Path | None = None) -> Workflow:
    """The proposal as a loaded :class:`Workflow` (raises ValueError if the loader would refuse it)."""
    manifest = Manifest.model_validate(p.manifest)
    check_references(manifest, p.graph)
    return Workflow(manifest, p.graph, name=p.name, path=path or Path(f"{p.name}.manifest.json"))


def validate(p: Proposal, object_info: Mapping[str, Any]) -> list[str]:
    """What a server with this ``/object_info`` lacks for the proposed workflow (empty: nothing)."""
    return check_object_info(to_workflow(p), object_info)


def write_files(p: Proposal, directory: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``<name>.json`` (the graph as given) and ``<name>.manifest.json``; refuse to overwrite unless
    ``force``. Returns (graph path, manifest path)."""
    graph_path = directory / f"{p.name}.json"
    manifest_path = directory / f"{p.name}.manifest.json"
    if not force and (existing := [str(f) for f in (graph_path, manifest_path) if f.exists()]):
        raise ImportRefused(f"{', '.join(existing)} already exist(s); use --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    graph_path.write_text(json.dumps(p.graph, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    manifest_path.write_text(json.dumps(p.manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return graph_path, manifest_path


__all__ = [
    "ImportRefused",
    "Proposal",
    "check_shape",
    "propose",
    "to_workflow",
    "validate",
    "workflow_name",
    "write_files",
]
