"""A fake ComfyUI 0.3.64 server for tests and benchmarks, faithful to ``shared/comfyui/PROTOCOL.md``.

It is a real aiohttp server on 127.0.0.1 (a free port) that runs in the test's event loop::

    async with FakeComfyUI(step_delay_s=0.001) as comfy:
        session.post(f"{comfy.url}/prompt", json={"prompt": graph, "client_id": cid})

What it does, in the order of PROTOCOL.md:

* every route also under ``/api``; unparseable JSON → 500 text; bodies over ``max_upload_size`` → 413;
  optional Origin guard (403);
* ``POST /prompt`` validates like ComfyUI (``validate_prompt``/``validate_inputs``) against a small built-in
  ``object_info`` and answers the recorded 200/400 bodies;
* one background worker runs prompts one at a time from a heap ordered by ``(number, prompt_id)`` and
  emits the recorded WebSocket sequence (status, execution_start, execution_cached, progress_state,
  executing, progress with binary previews, executed, a terminal event, status, ``executing {node: null}``)
  with ComfyUI's routing rules for prompts with and without ``client_id``;
* nodes "run" on a tiny model of images (sizes only); SaveImage/PreviewImage write real PNG files that
  ``GET /view`` serves; node outputs are cached between prompts like ComfyUI's classic cache;
* history, queue, interrupt, upload, view, object_info, system_stats, features, free, models;
* fault injection (:meth:`FakeComfyUI.refuse_connections`, :meth:`~FakeComfyUI.drop_websockets`,
  :attr:`~FakeComfyUI.drop_ws_mid_run`, :meth:`~FakeComfyUI.stall_ws`, :meth:`~FakeComfyUI.fail_node`,
  :meth:`~FakeComfyUI.forget_all`, :meth:`~FakeComfyUI.reject_next`, :meth:`~FakeComfyUI.set_models`) and
  recordings for assertions (``received_prompts``, ``uploads``, ``interrupts``, ``deleted``, ``frees``,
  ``ws_connections``, ``requests``).

Node types: CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode, VAEEncode,
SaveImage, PreviewImage, SaveImageWebsocket, LoadImage, UpscaleModelLoader, ImageUpscaleWithModel,
ImageScale, ImageScaleBy, LatentUpscaleBy, EmptyImage, ImageInvert, ImageBlur, GetImageSize, PreviewAny and
the traces' test node GwSlowProgress (inputs steps, delay, preview, fail_at).

For fixtures elsewhere use :func:`running_fake_comfyui`; :class:`WsRecorder` is a raw ``/ws`` client that
records frames in the traces' format.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import heapq
import io
import json
import os
import random
import re
import shutil
import socket
import string
import struct
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.fakes import comfyui_jobs as jobs

JSON = dict[str, Any]

COMFYUI_VERSION = "0.3.64"
DEFAULT_MAX_UPLOAD_SIZE = 104857600
ERROR_500_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"
# The shipped workflows' defaults first, then a few more names a test can point at.
DEFAULT_CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd15.safetensors", "sdxl_base.safetensors")
DEFAULT_UPSCALE_MODELS = ("RealESRGAN_x4plus.pth", "4x-UltraSharp.pth", "RealESRGAN_x2plus.pth")
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
LATENT_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
# comfy/samplers.py SAMPLER_NAMES and SCHEDULER_NAMES (over 20 options: "(list of length N)" in errors)
SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "exp_heun_2_x0",
    "exp_heun_2_x0_sde",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]
# A realistic-size PNG of noise: 704*704*3 bytes ≈ 1.49 MB (noise does not compress).
REALISTIC_SIZE = (704, 704)
# Events a prompt without client_id still broadcasts (PROTOCOL.md, routing table); the rest are not sent.
_BROADCAST_WITHOUT_CLIENT = frozenset({"progress", "progress_state", "execution_interrupted"})
_DIR_TYPES = ("input", "output", "temp")
_NEVER_CACHED = frozenset({"SaveImageWebsocket"})


# --------------------------------------------------------------------------------------------------
# object_info
# --------------------------------------------------------------------------------------------------


def _int(default: int, lo: int, hi: int, step: int = 1) -> list[Any]:
    return ["INT", {"default": default, "min": lo, "max": hi, "step": step}]


def _float(default: float, lo: float, hi: float, step: float = 0.01) -> list[Any]:
    return ["FLOAT", {"default": default, "min": lo, "max": hi, "step": step}]


def _combo(options: Sequence[str], **extra: Any) -> list[Any]:
    return [list(options), dict(extra)]


def _node(
    name: str,
    required: JSON,
    outputs: Sequence[str] = (),
    *,
    output_names: Sequence[str] | None = None,
    output_node: bool = False,
    category: str = "",
    hidden: JSON | None = None,
) -> JSON:
    return {
        "input": {"required": required, "optional": {}, "hidden": hidden or {}},
        "input_order": {"required": list(required)},
        "output": list(outputs),
        "output_is_list": [False] * len(outputs),
        "output_name": list(output_names or outputs),
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": "nodes",
        "category": category,
        "output_node": output_node,
    }


def build_object_info(
    checkpoints: Sequence[str], upscale_models: Sequence[str], input_files: Sequence[str]
) -> dict[str, JSON]:
    """``/object_info`` for every node type the fake knows (shapes as in ComfyUI 0.3.64)."""
    image = ["IMAGE", {}]
    save_hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    nodes = [
        _node(
            "CheckpointLoaderSimple",
            {"ckpt_name": _combo(checkpoints, tooltip="The checkpoint to load.")},
            ["MODEL", "CLIP", "VAE"],
            category="loaders",
        ),
        _node(
            "CLIPTextEncode",
            {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP", {}]},
            ["CONDITIONING"],
            category="conditioning",
        ),
        _node(
            "EmptyLatentImage",
            {
                "width": _int(512, 16, 16384, 8),
                "height": _int(512, 16, 16384, 8),
                "batch_size": _int(1, 1, 4096),
            },
            ["LATENT"],
            category="latent",
        ),
        _node(
            "KSampler",
            {
                "model": ["MODEL", {}],
                "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF),
                "steps": _int(20, 1, 10000),
                "cfg": _float(8.0, 0.0, 100.0, 0.1),
                "sampler_name": _combo(SAMPLERS),
                "scheduler": _combo(SCHEDULERS),
                "positive": ["CONDITIONING", {}],
                "negative": ["CONDITIONING", {}],
                "latent_image": ["LATENT", {}],
                "denoise": _float(1.0, 0.0, 1.0),
            },
            ["LATENT"],
            category="sampling",
        ),
        _node("VAEDecode", {"samples": ["LATENT", {}], "vae": ["VAE", {}]}, ["IMAGE"], category="latent"),
        _node("VAEEncode", {"pixels": image, "vae": ["VAE", {}]}, ["LATENT"], category="latent"),
        _node(
            "SaveImage",
            {
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": ["STRING", {"default": "ComfyUI"}],
            },
            output_node=True,
            category="image",
            hidden=save_hidden,
        ),
        _node("PreviewImage", {"images": image}, output_node=True, category="image", hidden=save_hidden),
        _node("SaveImageWebsocket", {"images": image}, output_node=True, category="api node/image"),
        _node(
            "LoadImage",
            {"image": _combo(input_files, image_upload=True)},
            ["IMAGE", "MASK"],
            category="image",
        ),
        _node(
            "UpscaleModelLoader",
            {"model_name": _combo(upscale_models)},
            ["UPSCALE_MODEL"],
            category="loaders",
        ),
        _node(
            "ImageUpscaleWithModel",
            {"upscale_model": ["UPSCALE_MODEL", {}], "image": image},
            ["IMAGE"],
            category="image/upscaling",
        ),
        _node(
            "ImageScale",
            {
                "image": image,
                "upscale_method": _combo(UPSCALE_METHODS),
                "width": _int(512, 0, 16384),
                "height": _int(512, 0, 16384),
                "crop": _combo(["disabled", "center"]),
            },
            ["IMAGE"],
            category="image/upscaling",
        ),
        _node(
            "ImageScaleBy",
            {"image": image, "upscale_method": _combo(UPSCALE_METHODS), "scale_by": _float(1.0, 0.01, 8.0)},
            ["IMAGE"],
            category="image/upscaling",
        ),
        _node(
            "LatentUpscaleBy",
            {
                "samples": ["LATENT", {}],
                "upscale_method": _combo(LATENT_UPSCALE_METHODS),
                "scale_by": _float(1.5, 0.01, 8.0),
            },
            ["LATENT"],
            category="latent",
        ),
        _node(
            "EmptyImage",
            {
                "width": _int(512, 1, 16384),
                "height": _int(512, 1, 16384),
                "batch_size": _int(1, 1, 4096),
                "color": _int(0, 0, 0xFFFFFF),
            },
            ["IMAGE"],
            category="image",
        ),
        _node("ImageInvert", {"image": image}, ["IMAGE"], category="image"),
        _node(
            "ImageBlur",
            {"image": image, "blur_radius": _int(1, 1, 31), "sigma": _float(1.0, 0.1, 10.0)},
            ["IMAGE"],
            category="image/postprocessing",
        ),
        _node(
            "GetImageSize",
            {"image": image},
            ["INT", "INT", "INT"],
            output_names=["width", "height", "batch_size"],
            category="image",
        ),
        _node("PreviewAny", {"source": ["*", {}]}, output_node=True, category="utils"),
        # The test-only node of the recorded traces (custom_progress_*, errors, interrupt, queue).
        _node(
            "GwSlowProgress",
            {
                "image": image,
                "steps": _int(3, 1, 1000),
                "delay": _float(0.1, 0.0, 60.0),
                "preview": ["BOOLEAN", {"default": True}],
                "fail_at": _int(-1, -1, 1000),
            },
            ["IMAGE"],
            category="testing",
        ),
    ]
    return {n["name"]: n for n in nodes}


ALL_NODE_TYPES = frozenset(build_object_info([], [], []))


# --------------------------------------------------------------------------------------------------
# Small values travelling between fake nodes, and errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeImage:
    """An IMAGE or LATENT between fake nodes: only its pixel size, batch and a colour seed."""

    width: int
    height: int
    batch: int = 1
    color: int = 0x336699


class _NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class _Interrupted(Exception):
    pass


@dataclass
class _FaultRule:
    target: str  # node id or class_type
    exception_type: str
    message: str
    times: int | None


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    request: web.Request
    flags: JSON = field(default_factory=dict)

    @property
    def metadata_previews(self) -> bool:
        return bool(self.flags.get("supports_preview_metadata"))


@dataclass
class _Run:
    """The prompt the worker is executing."""

    number: float
    prompt_id: str
    prompt: JSON
    extra_data: JSON
    outputs_to_execute: list[str]
    messages: list[list[Any]] = field(default_factory=list)
    states: dict[str, JSON] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    ui: dict[str, JSON] = field(default_factory=dict)
    current_node: str | None = None
    # When execution started (time.monotonic()); with a run-time budget, the length of one unit (a node or
    # a sampler step) and how many units have been waited out: unit k ends at started + k × unit.
    unit_delay_s: float | None = None
    started: float = 0.0
    units_done: int = 0
    progress_sent: bool = False

    def queue_item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return None if cid is None else str(cid)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(type_: str, message: str, details: str, extra_info: JSON) -> JSON:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info}


def _input_config(spec: list[Any]) -> list[Any]:
    return [spec[0], spec[1] if len(spec) > 1 else {}]


def _split_annotated(name: str) -> tuple[str, str | None]:
    for t in _DIR_TYPES:
        suffix = f" [{t}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], t
    return name, None


# --------------------------------------------------------------------------------------------------
# Image encoding (run in a thread: Pillow is blocking)
# --------------------------------------------------------------------------------------------------


def _encode_png(size: tuple[int, int], color: int, noise: bool, text: dict[str, str]) -> bytes:
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, ((color >> 16) & 255, (color >> 8) & 255, color & 255))
    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info, compress_level=1 if noise else 4)
    return buf.getvalue()


def _encode_preview_jpeg(size: int) -> bytes:
    img = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _reencode_jpeg(data: bytes, quality: int) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _save_path(base: Path, prefix: str) -> tuple[str, str, Path, int]:
    """ComfyUI's ``get_save_image_path``: (subfolder, name, folder, next counter) for a filename prefix."""
    norm = os.path.normpath(prefix)
    subfolder, name = os.path.dirname(norm), os.path.basename(norm)
    folder = (base / subfolder).resolve()
    if not folder.is_relative_to(base.resolve()):
        raise _NodeFailure(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {base}",
        )
    pattern = re.compile(re.escape(name) + r"_(\d+)_.*")
    existing = [
        int(m.group(1))
        for p in (folder.iterdir() if folder.exists() else [])
        if (m := pattern.fullmatch(p.name))
    ]
    return subfolder, name, folder, max(existing, default=0) + 1


def _store_upload(
    upload_dir: Path, subfolder: str, filename: str, data: bytes, overwrite: bool
) -> tuple[str, bool] | None:
    """ComfyUI's ``image_upload``: (stored name, duplicate?) or None when ``subfolder`` escapes the dir.

    Same name + same bytes → the existing name, nothing written; different bytes → ``name (1).ext``."""
    base = str(upload_dir.resolve())
    folder = os.path.normpath(os.path.join(base, subfolder))
    filepath = os.path.abspath(os.path.join(folder, filename))
    if os.path.commonpath((base, filepath)) != base:
        return None
    if not overwrite:
        stem, ext = os.path.splitext(filename)
        i = 1
        while os.path.exists(filepath):
            if hashlib.sha256(Path(filepath).read_bytes()).digest() == hashlib.sha256(data).digest():
                return filename, True
            filename = f"{stem} ({i}){ext}"
            filepath = os.path.join(folder, filename)
            i += 1
    _write_file(Path(filepath), data)
    return filename, False


def _view_path(base: Path, subfolder: str | None, filename: str) -> Path | int:
    """The file ``GET /view`` serves, or the status ComfyUI answers (403 escape, 404 missing)."""
    out_dir = str(base.resolve())
    if subfolder is not None:
        full = os.path.join(out_dir, subfolder)
        if os.path.commonpath((os.path.abspath(full), out_dir)) != out_dir:
            return 403
        out_dir = full
    path = Path(out_dir) / os.path.basename(filename)
    return path if path.is_file() else 404


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class FakeComfyUI:
    """A ComfyUI 0.3.64 look-alike on 127.0.0.1. Start with ``async with`` or :meth:`start`/:meth:`stop`.

    Timing: each non-cached node sleeps ``node_delay_s``; each sampler step (KSampler) sleeps
    ``step_delay_s``. GwSlowProgress (the trace's test node) uses its own ``delay`` input per step. With
    ``run_time_s`` set, a prompt takes that long on the wall clock instead, like a GPU: the budget is split
    evenly over its non-cached nodes and steps, each of which ends at its own deadline counted from the
    execution's start, so timer overshoot does not add up and the work in between (events, writing the
    image) comes out of the budget.

    Websockets: a new socket with a known ``clientId`` replaces the old one (which stays open and gets
    nothing). As in ComfyUI, when *any* socket of a ``clientId`` closes, that id is unregistered — closing the
    replaced socket after connecting its successor silences the successor (``faithful_socket_pop=False``
    forgives this). Clients should close the old socket before reconnecting.

    Outputs: SaveImage writes PNGs of the graph's size (``output_size`` overrides it) into ``output_dir``;
    ``realistic_png=True`` writes noise PNGs (default 704×704 ≈ 1.5 MB) for benchmarks.

    Other options: ``root`` (dir holding input/output/temp; default a temporary dir removed at stop),
    ``port`` (0: a free one, kept across :meth:`refuse_connections`/:meth:`accept_connections`),
    ``checkpoints``/``upscale_models`` (model combos, see :meth:`set_models`), ``node_types`` (known
    classes, default all), ``preview_size``/``previews`` (sampler preview JPEGs on or off, like
    ``--preview-method``), ``cache`` (ComfyUI's output cache between prompts), ``max_upload_size`` (body
    cap → 413), ``origin_guard`` (403 on a foreign ``Origin``).

    Model loads: ``load_time_s`` is charged (on top of the run time) when a CheckpointLoaderSimple runs
    with another ``ckpt_name`` than the one this server loaded last, as a GPU pays for moving a checkpoint
    into VRAM; the same checkpoint again costs nothing (ComfyUI's cache skips the node, and its model
    management keeps the weights loaded). ``POST /free`` with ``unload_models`` forgets it.
    ``model_loads`` records ``(prompt_id, ckpt_name)`` of every load.
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int = 0,
        node_delay_s: float = 0.002,
        step_delay_s: float = 0.002,
        run_time_s: float | None = None,
        checkpoints: Sequence[str] = DEFAULT_CHECKPOINTS,
        upscale_models: Sequence[str] = DEFAULT_UPSCALE_MODELS,
        node_types: Collection[str] | None = None,
        output_size: tuple[int, int] | None = None,
        realistic_png: bool = False,
        preview_size: int = 512,
        previews: bool = True,
        cache: bool = True,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        origin_guard: bool = True,
        faithful_socket_pop: bool = True,
        legacy: bool = False,
        load_time_s: float = 0.0,
    ) -> None:
        #: ``legacy=True`` behaves as ComfyUI 0.3.64 (any prompt_id, no /api/jobs routes, no ``activity``
        #: in progress_state, no asset ids on outputs); the default follows the newest server.
        self.legacy = legacy
        self.cancels: list[str] = []
        self.node_delay_s = node_delay_s
        self.step_delay_s = step_delay_s
        self.run_time_s = run_time_s
        self.checkpoints = list(checkpoints)
        self.upscale_models = list(upscale_models)
        self.node_types: set[str] = set(ALL_NODE_TYPES if node_types is None else node_types)
        self.output_size = output_size
        self.realistic_png = realistic_png
        self.preview_size = preview_size
        self.previews = previews
        self.cache_enabled = cache
        self.max_upload_size = max_upload_size
        self.origin_guard = origin_guard
        self.faithful_socket_pop = faithful_socket_pop
        self.load_time_s = load_time_s
        self.loaded_checkpoint: str | None = None
        self.model_loads: list[tuple[str, str]] = []
        self._root_arg = root
        self._port = port

        # Recordings for assertions.
        self.received_prompts: list[JSON] = []
        self.uploads: list[JSON] = []
        self.interrupts: list[str | None] = []
        self.deleted: list[str] = []
        self.frees: list[JSON] = []
        self.ws_connections = 0
        self.requests: list[tuple[str, str]] = []

        # Fault injection knobs.
        self.drop_ws_mid_run = False
        self._stall_until = 0.0
        self._faults: list[_FaultRule] = []
        self._rejects: list[tuple[int, JSON | str | None]] = []
        self._late_answers: list[float] = []
        self._view_gate: asyncio.Event | None = None
        self.accepting = False

        # Server state.
        self._counter = 0
        self._queue: list[tuple[Any, ...]] = []
        self._running: _Run | None = None
        self._history: dict[str, JSON] = {}
        self._cache: dict[str, tuple[str, list[Any], JSON | None]] = {}
        self._sockets: dict[str, _Socket] = {}
        self._interrupt = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._history_changed = asyncio.Event()
        self._sockets_changed = asyncio.Event()
        self._worker_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._preview_jpeg = b""
        self._tmp: str | None = None
        self.root = Path()

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws"

    @property
    def port(self) -> int:
        return self._port

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def temp_dir(self) -> Path:
        return self.root / "temp"

    async def start(self) -> None:
        """Create the dirs, listen on 127.0.0.1 and start the worker."""
        if self._root_arg is None:
            self._tmp = tempfile.mkdtemp(prefix="fake-comfyui-")
            self.root = Path(self._tmp)
        else:
            self.root = self._root_arg
        for d in (self.input_dir, self.output_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._preview_jpeg = await asyncio.to_thread(_encode_preview_jpeg, self.preview_size)
        await self._listen()
        self._worker_task = asyncio.create_task(self._worker(), name="fake-comfyui-worker")

    async def stop(self) -> None:
        """Stop the worker, close every socket and connection, remove the temporary root."""
        if self._worker_task is not None:
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
            self._worker_task = None
        await self._unlisten()
        if self._tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)
            self._tmp = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        app = self._make_app()
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            await self._runner.cleanup()
            self._runner = None
            raise
        self._port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.accepting = True

    async def _unlisten(self) -> None:
        self.accepting = False
        await self.drop_websockets(abrupt=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- fault injection

    async def refuse_connections(self) -> None:
        """Stop listening (clients get "connection refused"); websockets are aborted and keep-alive
        connections closed.

        The worker keeps running: queued prompts still finish and land in history (a network outage,
        not a restart; combine with :meth:`forget_all` for a restart)."""
        await self.drop_websockets(abrupt=True)
        await self._unlisten()

    async def accept_connections(self) -> None:
        """Listen again on the same port."""
        if self._runner is None:
            await self._listen()

    async def drop_websockets(self, *, abrupt: bool = True) -> None:
        """Close every websocket now: ``abrupt`` aborts the TCP connection, else a normal close frame."""
        conns = list(self._sockets.values())
        self._sockets.clear()
        graceful = []
        for conn in conns:
            if abrupt and conn.request.transport is not None:
                conn.request.transport.abort()
            else:
                graceful.append(conn.ws.close())
        await asyncio.gather(*graceful, return_exceptions=True)

    async def send_progress_text(self, node_id: str, text: str) -> None:
        """Broadcast a binary TEXT frame (type 3) to every socket, as ``PromptServer.send_progress_text``."""
        raw = node_id.encode()
        frame = struct.pack(">II", 3, len(raw)) + raw + text.encode()
        for conn in list(self._sockets.values()):
            await self._send_raw(conn, frame)

    def stall_ws(self, seconds: float) -> None:
        """Send nothing on any websocket for ``seconds`` (messages meanwhile are lost); the run goes on."""
        self._stall_until = time.monotonic() + seconds

    def fail_node(
        self,
        target: str,
        exception_type: str = "RuntimeError",
        message: str = "fake failure injected by the test",
        *,
        times: int | None = None,
    ) -> None:
        """Make nodes whose id or class_type is ``target`` raise at run time → WS ``execution_error``.

        Sampler-like nodes fail after their first progress step (as in the recorded trace), others at
        once. ``times``: how many executions fail (None: all until :meth:`clear_faults`)."""
        self._faults.append(_FaultRule(target, exception_type, message, times))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._rejects.clear()
        self._late_answers.clear()
        if self._view_gate is not None:
            self._view_gate.set()
            self._view_gate = None
        self.drop_ws_mid_run = False
        self._stall_until = 0.0

    def reject_next(self, status: int = 500, body: JSON | str | None = None, *, times: int = 1) -> None:
        """Answer the next ``times`` POST /prompt with ``status`` and ``body`` (default: ComfyUI's 500 text
        for 5xx, else an empty JSON object) without queueing anything."""
        self._rejects.extend([(status, body)] * times)

    def answer_late(self, delay_s: float, *, times: int = 1) -> None:
        """Queue the next ``times`` valid POST /prompt as usual but hold the answer ``delay_s`` seconds
        (a server that is busy or a slow network: the client times out although the prompt was queued)."""
        self._late_answers.extend([delay_s] * times)

    def hold_views(self) -> asyncio.Event:
        """Hold every ``GET /view`` answer until the returned event is set (a slow download)."""
        self._view_gate = asyncio.Event()
        return self._view_gate

    def set_models(
        self, checkpoints: Sequence[str] | None = None, upscale_models: Sequence[str] | None = None
    ) -> None:
        """Replace the model lists that /object_info and validation use."""
        if checkpoints is not None:
            self.checkpoints = list(checkpoints)
        if upscale_models is not None:
            self.upscale_models = list(upscale_models)

    def remove_node_types(self, *class_types: str) -> None:
        """Simulate a server without these node types (validation → ``invalid_prompt``)."""
        self.node_types.difference_update(class_types)

    async def forget_all(self, *, drop_sockets: bool = True) -> None:
        """Simulate a restart: history, queue, cache and the running prompt vanish (nothing is emitted for
        it), the prompt counter restarts at 0, and (by default) every websocket is dropped."""
        if self._worker_task is not None:
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        self._queue.clear()
        self._history.clear()
        self._cache.clear()
        self._running = None
        self._counter = 0
        self._idle.set()
        if drop_sockets:
            await self.drop_websockets()
        self._worker_task = asyncio.create_task(self._worker(), name="fake-comfyui-worker")

    # ---------------------------------------------------------------- helpers for tests

    @property
    def history(self) -> dict[str, JSON]:
        return self._history

    @property
    def connected_client_ids(self) -> list[str]:
        """The clientIds that currently receive messages."""
        return list(self._sockets)

    @property
    def running_prompt_id(self) -> str | None:
        return None if self._running is None else self._running.prompt_id

    @property
    def pending_prompt_ids(self) -> list[str]:
        """Pending prompt ids in run order."""
        return [item[1] for item in sorted(self._queue, key=lambda i: (i[0], i[1]))]

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until nothing runs and nothing is queued."""
        async with asyncio.timeout(timeout_s):
            while self._queue or self._running is not None:
                self._idle.clear()
                await self._idle.wait()

    async def wait_history(self, prompt_id: str, timeout_s: float = 10.0) -> JSON:
        """Wait for the history entry of ``prompt_id`` and return it."""
        async with asyncio.timeout(timeout_s):
            while prompt_id not in self._history:
                self._history_changed.clear()
                await self._history_changed.wait()
        return self._history[prompt_id]

    async def wait_disconnected(self, client_id: str, timeout_s: float = 10.0) -> None:
        """Wait until no socket is registered under ``client_id``."""
        async with asyncio.timeout(timeout_s):
            while client_id in self._sockets:
                self._sockets_changed.clear()
                await self._sockets_changed.wait()

    def object_info(self, *, list_inputs: bool = True) -> dict[str, JSON]:
        """The ``/object_info`` answer; ``list_inputs=False`` skips listing the input dir for LoadImage
        (validation and execution do not need it: LoadImage has its own file check)."""
        files = (
            sorted(str(p.relative_to(self.input_dir)) for p in self.input_dir.rglob("*") if p.is_file())
            if list_inputs and self.input_dir.exists()
            else []
        )
        info = build_object_info(self.checkpoints, self.upscale_models, files)
        return {k: v for k, v in info.items() if k in self.node_types}

    # ---------------------------------------------------------------- app and routes

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_size, middlewares=[self._middleware])
        routes = [
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/ws", self._ws_handler),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_id),
            ("POST", "/history", self._post_history),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/upload/image", self._upload_image),
            ("GET", "/view", self._view),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/features", self._features),
            ("GET", "/object_info", self._get_object_info),
            ("GET", "/object_info/{node_class}", self._get_object_info_one),
            ("POST", "/free", self._post_free),
            ("GET", "/models", self._get_models),
            ("GET", "/models/{folder}", self._get_models_folder),
        ]
        for prefix in ("", "/api"):
            for method, path, handler in routes:
                app.router.add_route(method, prefix + path, handler)
        if not self.legacy:  # the jobs routes exist under /api only
            app.router.add_route("GET", "/api/jobs", self._get_jobs)
            app.router.add_route("GET", "/api/jobs/{job_id}", self._get_job)
            app.router.add_route("POST", "/api/jobs/{job_id}/cancel", self._cancel_job)
        return app

    # ---------------------------------------------------------------- jobs API (newest server)

    def _queue_items(self) -> tuple[list[list[Any]], list[list[Any]]]:
        running = [] if self._running is None else [self._running.queue_item()]
        return running, [list(i) for i in sorted(self._queue)]

    async def _get_jobs(self, request: web.Request) -> web.Response:
        running, queued = self._queue_items()
        return web.json_response(jobs.all_jobs(running, queued, self._history))

    async def _get_job(self, request: web.Request) -> web.Response:
        running, queued = self._queue_items()
        job = jobs.get_job(request.match_info["job_id"], running, queued, self._history)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    async def _cancel_job(self, request: web.Request) -> web.Response:
        """Atomic: interrupt when running, dequeue when pending, no-op otherwise."""
        pid = request.match_info["job_id"]
        self.cancels.append(pid)
        cancelled = False
        if self._running is not None and self._running.prompt_id == pid:
            self._interrupt = cancelled = True
            self.interrupts.append(pid)
        elif any(item[1] == pid for item in self._queue):
            self.deleted.append(pid)
            self._queue = [item for item in self._queue if item[1] != pid]
            heapq.heapify(self._queue)
            cancelled = True
            await self._broadcast_status()
        return web.json_response({"cancelled": cancelled})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        origin = request.headers.get("Origin")
        if self.origin_guard and origin:
            host = request.host
            hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
            if hostname in ("127.0.0.1", "localhost", "::1", "[::1]") and urlsplit(origin).netloc != host:
                return web.Response(status=403)
        response: web.StreamResponse = await handler(request)
        return response

    async def _json_body(self, request: web.Request) -> Any:
        raw = await request.read()  # raises 413 over client_max_size
        try:
            return json.loads(raw)
        except ValueError:
            raise web.HTTPInternalServerError(text=ERROR_500_TEXT) from None

    def _status_data(self) -> JSON:
        remaining = len(self._queue) + (1 if self._running is not None else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    # ---------------------------------------------------------------- /prompt

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        self.received_prompts.append(copy.deepcopy(body))
        if self._rejects:
            status, reject_body = self._rejects.pop(0)
            if reject_body is None:
                reject_body = ERROR_500_TEXT if status >= 500 else {}
            if isinstance(reject_body, str):
                return web.Response(status=status, text=reject_body)
            return web.json_response(reject_body, status=status)
        if not isinstance(body, dict):
            raise web.HTTPInternalServerError(text=ERROR_500_TEXT)
        number: float
        if "number" in body:
            number = float(body["number"])
        else:
            number = self._counter
            if body.get("front"):
                number = -number
            self._counter += 1
        if "prompt" not in body:
            err = _error("no_prompt", "No prompt provided", "No prompt provided", {})
            return web.json_response({"error": err, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        client_pid = body.get("prompt_id")
        if not self.legacy and client_pid is not None and not jobs.valid_job_id(client_pid):
            return web.json_response(jobs.INVALID_PROMPT_ID, status=400)
        prompt_id = str(client_pid or uuid.uuid4())
        targets = body.get("partial_execution_targets")
        ok, error, good_outputs, node_errors = self._validate_prompt(prompt, targets)
        if not ok:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        for key in ("auth_token_comfy_org", "api_key_comfy_org"):
            extra_data.pop(key, None)
        if not self.legacy:
            extra_data["create_time"] = _now_ms()
        heapq.heappush(self._queue, (number, prompt_id, prompt, extra_data, good_outputs))
        self._idle.clear()
        self._wake.set()
        await self._broadcast_status()
        if self._late_answers:
            await asyncio.sleep(self._late_answers.pop(0))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._status_data())

    # ---------------------------------------------------------------- validation (execution.py)

    def _validate_prompt(
        self, prompt: Any, targets: list[str] | None
    ) -> tuple[bool, JSON | None, list[str], JSON]:
        if not isinstance(prompt, dict):
            raise web.HTTPInternalServerError(text=ERROR_500_TEXT)
        info = self.object_info(list_inputs=False)
        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                msg = "Cannot execute because a node is missing the class_type property."
                err = _error("invalid_prompt", msg, f"Node ID '#{node_id}'", {})
                return False, err, [], {}
            class_type = node["class_type"]
            if class_type not in info:
                err = _error(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                    {},
                )
                return False, err, [], {}
            if info[class_type]["output_node"] and (targets is None or node_id in targets):
                outputs.append(node_id)
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", "", {}), [], {}
        validated: dict[str, tuple[bool, list[JSON]]] = {}
        good: list[str] = []
        errors: list[tuple[str, list[JSON]]] = []
        node_errors: JSON = {}
        for out in outputs:
            valid, reasons = self._validate_inputs(prompt, out, validated, info)
            if valid:
                good.append(out)
                continue
            if reasons:
                errors.append((out, reasons))
            for node_id, (node_valid, node_reasons) in validated.items():
                if not node_valid and node_reasons:
                    class_type = prompt[node_id]["class_type"]
                    entry = node_errors.setdefault(
                        node_id, {"errors": node_reasons, "dependent_outputs": [], "class_type": class_type}
                    )
                    if out not in entry["dependent_outputs"]:
                        entry["dependent_outputs"].append(out)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in errors for e in errs)
            err = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {})
            return False, err, [], node_errors
        return True, None, good, node_errors

    def _validate_inputs(
        self, prompt: JSON, node_id: str, validated: dict[str, tuple[bool, list[JSON]]], info: dict[str, JSON]
    ) -> tuple[bool, list[JSON]]:
        """ComfyUI's ``validate_inputs``: (valid, this node's own errors), memoised in ``validated``."""
        if node_id in validated:
            return validated[node_id]
        node = prompt[node_id]
        inputs = node.setdefault("inputs", {})
        spec = info[node["class_type"]]["input"]["required"]
        errors: list[JSON] = []
        valid = True
        for name, input_spec in spec.items():
            config = _input_config(input_spec)
            type_ = input_spec[0]

            def add(kind: str, message: str, details: str, **extra: Any) -> None:
                errors.append(_error(kind, message, details, {"input_name": name, **extra}))  # noqa: B023

            if name not in inputs:
                add("required_input_missing", "Required input is missing", name)
                continue
            val = inputs[name]
            if isinstance(val, list):
                if len(val) != 2:
                    msg = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                    add("bad_linked_input", msg, name, input_config=config, received_value=val)
                    continue
                src = str(val[0])
                src_node = prompt.get(src)
                if not isinstance(src_node, dict) or src_node.get("class_type") not in info:
                    msg = "Exception when validating inner node"
                    add(
                        "exception_during_inner_validation",
                        msg,
                        f"'{src}'",
                        input_config=config,
                        exception_message=f"'{src}'",
                        exception_type="KeyError",
                        traceback=[],
                        linked_node=val,
                    )
                    continue
                src_outputs = info[src_node["class_type"]]["output"]
                slot = val[1] if isinstance(val[1], int) else -1
                received = src_outputs[slot] if 0 <= slot < len(src_outputs) else None
                if received != type_ and type_ != "*" and not isinstance(type_, list):
                    add(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({type_})",
                        input_config=config,
                        received_type=received,
                        linked_node=val,
                    )
                    continue
                src_valid, _ = self._validate_inputs(prompt, src, validated, info)
                if not src_valid:
                    valid = False
                continue
            converters: dict[str, Any] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
            if isinstance(type_, str) and type_ in converters:
                try:
                    val = converters[type_](val)
                    inputs[name] = val
                except (TypeError, ValueError) as ex:
                    add(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {type_} value",
                        f"{name}, {val}, {ex}",
                        input_config=config,
                        received_value=val,
                        exception_message=str(ex),
                    )
                    continue
                opts = config[1]
                if "min" in opts and val < opts["min"]:
                    add(
                        "value_smaller_than_min",
                        f"Value {val} smaller than min of {opts['min']}",
                        name,
                        input_config=config,
                        received_value=val,
                    )
                    continue
                if "max" in opts and val > opts["max"]:
                    add(
                        "value_bigger_than_max",
                        f"Value {val} bigger than max of {opts['max']}",
                        name,
                        input_config=config,
                        received_value=val,
                    )
                    continue
            elif (
                isinstance(type_, list)
                and not (node["class_type"] == "LoadImage" and name == "image")  # it has VALIDATE_INPUTS
                and val not in type_
            ):
                listed = str(type_) if len(type_) <= 20 else f"(list of length {len(type_)})"
                add(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{val}' not in {listed}",
                    input_config=config if len(type_) <= 20 else None,
                    received_value=val,
                )
                continue
        if (
            node["class_type"] == "LoadImage"
            and not errors
            and "image" in inputs
            and self._input_image_path(str(inputs["image"])) is None
        ):
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"image - Invalid image file: {inputs['image']}",
                    {"input_name": "image"},
                )
            )
        result = (valid and not errors, errors)
        validated[node_id] = result
        return result

    def _input_image_path(self, name: str) -> Path | None:
        name, type_ = _split_annotated(name)
        base = {"output": self.output_dir, "temp": self.temp_dir}.get(type_ or "input", self.input_dir)
        path = (base / name).resolve()
        if not path.is_relative_to(base.resolve()) or not path.is_file():
            return None
        return path

    # ---------------------------------------------------------------- websocket

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_upload_size, timeout=1.0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        conn = _Socket(ws, request)
        self._sockets[sid] = conn  # replaces an older socket with the same id
        self.ws_connections += 1
        try:
            await self._send_json(conn, "status", {"status": self._status_data(), "sid": sid}, force=True)
            run = self._running
            if run is not None and run.client_id == sid and run.current_node is not None:
                await self._send_json(conn, "executing", {"node": run.current_node}, force=True)
            first = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data")
                    conn.flags = flags if isinstance(flags, dict) else {}
                    await self._send_json(conn, "feature_flags", self._features_data(), force=True)
                first = False
        finally:
            # ComfyUI pops the sid whichever socket closes, so closing a replaced socket also unregisters
            # its successor (server.py websocket_handler); ``faithful_socket_pop=False`` forgives that.
            if self.faithful_socket_pop or self._sockets.get(sid) is conn:
                self._sockets.pop(sid, None)
            self._sockets_changed.set()
        return ws

    def _stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    async def _send_raw(self, conn: _Socket, payload: str | bytes, *, force: bool = False) -> None:
        if (self._stalled() and not force) or conn.ws.closed:
            return
        try:
            if isinstance(payload, bytes):
                await conn.ws.send_bytes(payload)
            else:
                await conn.ws.send_str(payload)
        except (ConnectionError, RuntimeError):
            pass  # the client went away; ComfyUI logs and carries on too

    async def _send_json(self, conn: _Socket, type_: str, data: JSON, *, force: bool = False) -> None:
        await self._send_raw(conn, json.dumps({"type": type_, "data": data}), force=force)

    async def _broadcast_status(self) -> None:
        for conn in list(self._sockets.values()):
            await self._send_json(conn, "status", {"status": self._status_data()})

    def _targets(self, run: _Run, type_: str) -> list[_Socket]:
        """Who receives a per-prompt event (PROTOCOL.md routing table)."""
        if run.client_id is None:
            return list(self._sockets.values()) if type_ in _BROADCAST_WITHOUT_CLIENT else []
        conn = self._sockets.get(run.client_id)
        return [] if conn is None else [conn]

    async def _emit(self, run: _Run, type_: str, data: JSON) -> None:
        for conn in self._targets(run, type_):
            await self._send_json(conn, type_, data)

    async def _emit_progress_state(self, run: _Run) -> None:
        data = {"prompt_id": run.prompt_id, "nodes": copy.deepcopy(run.states)}
        await self._emit(run, "progress_state", data)

    async def _emit_progress(
        self,
        run: _Run,
        node_id: str,
        value: int,
        max_: int,
        image: bytes | None,
        image_type: str = "image/jpeg",
    ) -> None:
        """progress_state, then progress JSON + preview frame in the order each socket's mode dictates."""
        run.states[node_id].update(value=value, max=max_)
        await self._emit_progress_state(run)
        progress = {"value": value, "max": max_, "prompt_id": run.prompt_id, "node": node_id}
        for conn in self._targets(run, "progress"):
            if image is None:
                await self._send_json(conn, "progress", progress)
            elif conn.metadata_previews:
                meta = json.dumps(
                    {
                        "node_id": node_id,
                        "prompt_id": run.prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": image_type,
                    }
                ).encode()
                await self._send_raw(conn, struct.pack(">II", 4, len(meta)) + meta + image)
                await self._send_json(conn, "progress", progress)
            else:
                await self._send_json(conn, "progress", progress)
                fmt = 2 if image_type == "image/png" else 1
                await self._send_raw(conn, struct.pack(">II", 1, fmt) + image)
        if not run.progress_sent:
            run.progress_sent = True
            if self.drop_ws_mid_run:
                self.drop_ws_mid_run = False
                await self.drop_websockets()

    # ---------------------------------------------------------------- worker

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._running = None
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            number, prompt_id, prompt, extra_data, outputs = heapq.heappop(self._queue)
            run = _Run(number, prompt_id, prompt, extra_data, list(outputs))
            self._running = run
            self._interrupt = False
            await self._broadcast_status()
            status_str, completed = await self._execute(run)
            self._store_history(run, status_str, completed)
            self._running = None
            await self._broadcast_status()
            if run.client_id is not None:
                await self._emit(run, "executing", {"node": None, "prompt_id": run.prompt_id})

    def _store_history(self, run: _Run, status_str: str, completed: bool) -> None:
        outputs = {nid: run.ui[nid] for nid in run.outputs_to_execute if nid in run.ui}
        self._history[run.prompt_id] = {
            "prompt": [run.number, run.prompt_id, run.prompt, run.extra_data, run.outputs_to_execute],
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": run.messages},
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in outputs
            },
        }
        while len(self._history) > 10000:
            self._history.pop(next(iter(self._history)))
        self._history_changed.set()

    def _execution_order(self, run: _Run) -> list[str]:
        """Dependencies first; a ready output node runs before other ready nodes (ComfyUI's UX pick)."""
        info = self.object_info(list_inputs=False)
        post: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for src in self._links(run.prompt[nid]):
                visit(src)
            post.append(nid)

        for out in run.outputs_to_execute:
            visit(out)
        order: list[str] = []
        done: set[str] = set()
        pending = list(post)
        while pending:
            ready = [n for n in pending if all(s in done for s in self._links(run.prompt[n]))]
            outs = [n for n in ready if info[run.prompt[n]["class_type"]]["output_node"]]
            pick = (outs or ready)[0]
            pending.remove(pick)
            done.add(pick)
            order.append(pick)
        return order

    @staticmethod
    def _links(node: JSON) -> list[str]:
        return [str(v[0]) for v in node.get("inputs", {}).values() if isinstance(v, list) and len(v) == 2]

    def _signature(self, prompt: JSON, nid: str, memo: dict[str, str]) -> str:
        if nid not in memo:
            node = prompt[nid]
            parts: list[Any] = [node["class_type"]]
            for name, val in sorted(node.get("inputs", {}).items()):
                if isinstance(val, list) and len(val) == 2:
                    parts.append((name, self._signature(prompt, str(val[0]), memo), val[1]))
                else:
                    parts.append((name, val))
            if node["class_type"] in _NEVER_CACHED:  # IS_CHANGED returns time.time()
                parts.append(uuid.uuid4().hex)
            if node["class_type"] == "LoadImage":
                path = self._input_image_path(str(node["inputs"].get("image", "")))
                if path is not None:
                    parts.append(hashlib.sha256(path.read_bytes()).hexdigest())
            memo[nid] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return memo[nid]

    async def _execute(self, run: _Run) -> tuple[str, bool]:
        """Run one prompt; returns (status_str, completed) for history."""
        run.started = time.monotonic()
        pid = run.prompt_id
        start = {"prompt_id": pid, "timestamp": _now_ms()}
        run.messages.append(["execution_start", start])
        await self._emit(run, "execution_start", start)
        order = self._execution_order(run)
        memo: dict[str, str] = {}
        sigs = {nid: self._signature(run.prompt, nid, memo) for nid in order}
        cached = [
            nid
            for nid in run.prompt
            if nid in sigs and self.cache_enabled and nid in self._cache and self._cache[nid][0] == sigs[nid]
        ]
        cached_msg = {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}
        run.messages.append(["execution_cached", cached_msg])
        await self._emit(run, "execution_cached", cached_msg)
        to_run = [n for n in order if n not in cached]
        if self.run_time_s is not None:
            units = sum(self._steps_of(run.prompt[n]) or 1 for n in to_run)
            run.unit_delay_s = self.run_time_s / max(units, 1)
        values: dict[str, list[Any]] = {}
        try:
            for nid in order:
                node = run.prompt[nid]
                if nid in cached:
                    _, outs, ui = self._cache[nid]
                    values[nid] = outs
                    if ui is not None:
                        run.ui[nid] = ui
                        await self._emit(
                            run,
                            "executed",
                            {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid},
                        )
                        run.states[nid] = self._state(run, nid, 1, 1, "finished")
                        await self._emit_progress_state(run)
                    continue
                run.current_node = nid
                run.states[nid] = self._state(run, nid, 0.0, 1.0, "running")
                if not self.legacy and node["class_type"] in jobs.LOADING_NODES:
                    run.states[nid]["activity"] = "loading"  # weights moving: no step progress yet
                await self._emit_progress_state(run)
                await self._emit(run, "executing", {"node": nid, "display_node": nid, "prompt_id": pid})
                if self._interrupt:  # ComfyUI checks the flag as the node starts (pre_execute_cb)
                    raise _Interrupted()
                inputs = {
                    k: (values[str(v[0])][v[1]] if isinstance(v, list) and len(v) == 2 else v)
                    for k, v in node.get("inputs", {}).items()
                }
                outs, ui = await self._run_node(run, nid, node["class_type"], inputs)
                values[nid] = outs
                if ui is not None:
                    run.ui[nid] = ui
                    await self._emit(
                        run, "executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid}
                    )
                state = run.states[nid]
                if state["max"] == 1.0 and isinstance(state["max"], float):
                    state["value"] = 1.0
                state["state"] = "finished"
                await self._emit_progress_state(run)
                run.executed.append(nid)
                self._cache[nid] = (sigs[nid], outs, ui)
        except _Interrupted:
            nid = run.current_node or ""
            node_type = run.prompt.get(nid, {}).get("class_type", "")
            data = {
                "prompt_id": pid,
                "node_id": nid,
                "node_type": node_type,
                "executed": list(run.executed),
                "timestamp": _now_ms(),
            }
            run.messages.append(["execution_interrupted", data])
            await self._emit(run, "execution_interrupted", data)
            return self._finish(run, "error", False)
        except _NodeFailure as failure:
            nid = run.current_node or ""
            node = run.prompt.get(nid, {})
            data = {
                "prompt_id": pid,
                "node_id": nid,
                "node_type": node.get("class_type", ""),
                "executed": list(run.executed),
                "exception_message": f"{failure.message}\n",
                "exception_type": failure.exception_type,
                "traceback": [
                    '  File "/opt/ComfyUI/execution.py", line 496, in execute\n',
                    f'  File "tests/fakes/comfyui.py", line 1, in {node.get("class_type")}\n',
                ],
                "current_inputs": {
                    k: [f"<linked from node {v[0]}>"] if isinstance(v, list) else [v]
                    for k, v in node.get("inputs", {}).items()
                },
                # ComfyUI lists every node of the prompt's cache key set (observed ["3", "2", "1"] for 1→2→3)
                "current_outputs": list(reversed(run.prompt)),
                "timestamp": _now_ms(),
            }
            run.messages.append(["execution_error", data])
            await self._emit(run, "execution_error", data)
            return self._finish(run, "error", False)
        run.current_node = None
        done = {"prompt_id": pid, "timestamp": _now_ms()}
        run.messages.append(["execution_success", done])
        await self._emit(run, "execution_success", done)
        return self._finish(run, "success", True)

    def _finish(self, run: _Run, status_str: str, completed: bool) -> tuple[str, bool]:
        run.current_node = None
        for nid in list(self._cache):
            if nid not in run.prompt:  # classic cache: entries of nodes absent from the last prompt go
                del self._cache[nid]
        return status_str, completed

    @staticmethod
    def _state(run: _Run, nid: str, value: float, max_: float, state: str) -> JSON:
        return {
            "value": value,
            "max": max_,
            "state": state,
            "node_id": nid,
            "prompt_id": run.prompt_id,
            "display_node_id": nid,
            "parent_node_id": None,
            "real_node_id": nid,
        }

    @staticmethod
    def _steps_of(node: JSON) -> int:
        if node["class_type"] in ("KSampler", "GwSlowProgress"):
            try:
                return max(int(node["inputs"].get("steps", 1)), 1)
            except (TypeError, ValueError):
                return 1
        return 0

    def _fault_for(self, nid: str, class_type: str) -> _FaultRule | None:
        for rule in self._faults:
            if rule.target in (nid, class_type) and (rule.times is None or rule.times > 0):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    async def _sleep(self, run: _Run, seconds: float) -> None:
        """One unit of work: ``seconds``, or with a run-time budget until the unit's own deadline."""
        if run.unit_delay_s is None:
            await asyncio.sleep(seconds)
            return
        run.units_done += 1
        # Absolute deadlines: a late wake-up shortens the next wait instead of delaying every later unit.
        await asyncio.sleep(max(run.started + run.units_done * run.unit_delay_s - time.monotonic(), 0.0))

    # ---------------------------------------------------------------- node behaviours

    async def _run_node(
        self, run: _Run, nid: str, class_type: str, inputs: JSON
    ) -> tuple[list[Any], JSON | None]:
        fault = self._fault_for(nid, class_type)
        if class_type in ("KSampler", "GwSlowProgress"):
            steps = max(int(inputs.get("steps", 1)), 1)
            delay = (
                float(inputs.get("delay", self.step_delay_s))
                if class_type == "GwSlowProgress"
                else self.step_delay_s
            )
            fail_at = int(inputs.get("fail_at", -1)) if class_type == "GwSlowProgress" else -1
            preview = bool(inputs.get("preview", True)) and self.previews
            for step in range(1, steps + 1):
                await self._sleep(run, delay)
                if self._interrupt:
                    raise _Interrupted()
                await self._emit_progress(run, nid, step, steps, self._preview_jpeg if preview else None)
                if fault is not None:
                    raise _NodeFailure(fault.exception_type, fault.message)
                if step == fail_at:
                    raise _NodeFailure("ValueError", f"GwSlowProgress failing on purpose at step {step}")
            src = inputs.get("latent_image", inputs.get("image"))
            return [src if isinstance(src, FakeImage) else FakeImage(512, 512)], None
        if fault is not None:
            await self._sleep(run, self.node_delay_s)
            raise _NodeFailure(fault.exception_type, fault.message)
        if run.unit_delay_s is None:
            await self._sleep(run, self.node_delay_s)
            return await self._compute_checked(run, nid, class_type, inputs)
        # With a budget the node works first and then waits out the rest of its unit, so the last node's
        # work (SaveImage writing a 1.5 MB PNG) is inside the run time rather than after it.
        result = await self._compute_checked(run, nid, class_type, inputs)
        await self._sleep(run, self.node_delay_s)
        return result

    async def _compute_checked(
        self, run: _Run, nid: str, class_type: str, inputs: JSON
    ) -> tuple[list[Any], JSON | None]:
        try:
            return await self._compute(run, nid, class_type, inputs)
        except (_NodeFailure, _Interrupted):
            raise
        except Exception as exc:  # as in ComfyUI, anything a node raises is that prompt's execution_error
            kind = type(exc)
            name = kind.__qualname__
            if kind.__module__ != "builtins":  # ComfyUI's full_type_name()
                name = f"{kind.__module__}.{name}"
            raise _NodeFailure(name, str(exc)) from exc

    async def _load_checkpoint(self, run: _Run, name: str) -> None:
        """Charge ``load_time_s`` when ``name`` is not the checkpoint loaded last (see the class doc)."""
        if name == self.loaded_checkpoint:
            return
        self.loaded_checkpoint = name
        self.model_loads.append((run.prompt_id, name))
        if self.load_time_s > 0:
            await asyncio.sleep(self.load_time_s)
            run.started += self.load_time_s  # the run-time budget's deadlines start after the load

    async def _compute(
        self, run: _Run, nid: str, class_type: str, inputs: JSON
    ) -> tuple[list[Any], JSON | None]:
        img = inputs.get("image", inputs.get("images", inputs.get("samples", inputs.get("pixels"))))
        img = img if isinstance(img, FakeImage) else FakeImage(512, 512)
        if class_type == "CheckpointLoaderSimple":
            name = inputs["ckpt_name"]
            await self._load_checkpoint(run, str(name))
            return [f"MODEL:{name}", f"CLIP:{name}", f"VAE:{name}"], None
        if class_type == "UpscaleModelLoader":
            return [f"UPSCALE_MODEL:{inputs['model_name']}"], None
        if class_type == "CLIPTextEncode":
            return [f"CONDITIONING:{inputs.get('text', '')}"], None
        if class_type == "EmptyLatentImage":
            return [FakeImage(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"]))], None
        if class_type == "EmptyImage":
            return [
                FakeImage(
                    int(inputs["width"]),
                    int(inputs["height"]),
                    int(inputs["batch_size"]),
                    int(inputs.get("color", 0)),
                )
            ], None
        if class_type == "LoadImage":
            path = self._input_image_path(str(inputs["image"]))
            if path is None:
                raise _NodeFailure("FileNotFoundError", f"No such file: {inputs['image']}")
            try:
                w, h = await asyncio.to_thread(_image_size, path)
            except OSError as exc:  # LoadImage opens the file at run time; validation only checks it exists
                message = f"cannot identify image file {str(path)!r}"
                raise _NodeFailure("PIL.UnidentifiedImageError", message) from exc
            return [FakeImage(w, h), f"MASK:{w}x{h}"], None
        if class_type == "ImageScale":
            w, h = int(inputs["width"]), int(inputs["height"])
            if w == 0 and h == 0:
                w, h = img.width, img.height
            elif w == 0:
                w = max(round(img.width * h / img.height), 1)
            elif h == 0:
                h = max(round(img.height * w / img.width), 1)
            return [FakeImage(w, h, img.batch, img.color)], None
        if class_type in ("ImageScaleBy", "LatentUpscaleBy", "ImageUpscaleWithModel"):
            if class_type == "ImageUpscaleWithModel":
                m = re.search(r"(\d+)x|x(\d+)", str(inputs.get("upscale_model", "")))
                scale = float(m.group(1) or m.group(2)) if m else 4.0
            else:
                scale = float(inputs["scale_by"])
            return [
                FakeImage(
                    max(round(img.width * scale), 1), max(round(img.height * scale), 1), img.batch, img.color
                )
            ], None
        if class_type == "ImageInvert":
            return [FakeImage(img.width, img.height, img.batch, img.color ^ 0xFFFFFF)], None
        if class_type in ("VAEDecode", "VAEEncode", "ImageBlur"):
            return [img], None
        if class_type == "SaveImage":
            prefix = str(inputs.get("filename_prefix", "ComfyUI"))
            return [], {"images": await self._save_images(run, img, prefix, "output")}
        if class_type == "PreviewImage":
            suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
            return [], {"images": await self._save_images(run, img, f"ComfyUI_temp_{suffix}", "temp")}
        if class_type == "GetImageSize":
            text = f"width: {img.width}, height: {img.height}\n batch size: {img.batch}"
            await self.send_progress_text(nid, text)
            return [img.width, img.height, img.batch], None
        if class_type == "PreviewAny":
            return [], {"text": [str(inputs.get("source"))]}
        if class_type == "SaveImageWebsocket":
            size = (img.width, img.height)
            png = await asyncio.to_thread(_encode_png, size, img.color, False, {})
            for i in range(img.batch):
                await self._emit_progress(run, nid, i, img.batch, png, "image/png")
            run.states[nid]["value"] = img.batch
            return [], None
        raise _NodeFailure("NotImplementedError", f"the fake cannot run {class_type}")

    async def _save_images(self, run: _Run, img: FakeImage, prefix: str, type_: str) -> list[JSON]:
        """ComfyUI's ``get_save_image_path``: ``<subfolder>/<name>_<counter:05>_.png``, counter per prefix."""
        base = self.output_dir if type_ == "output" else self.temp_dir
        subfolder, name, folder, counter = _save_path(base, prefix)
        size = self.output_size or (REALISTIC_SIZE if self.realistic_png else (img.width, img.height))
        text = {"prompt": json.dumps(run.prompt)}  # like ComfyUI without --disable-metadata
        pnginfo = run.extra_data.get("extra_pnginfo")
        if isinstance(pnginfo, dict):
            text.update({k: json.dumps(v) for k, v in pnginfo.items()})
        results = []
        for i in range(img.batch):
            filename = f"{name}_{counter:05}_.png"
            counter += 1
            data = await asyncio.to_thread(_encode_png, size, img.color + i, self.realistic_png, text)
            await asyncio.to_thread(_write_file, folder / filename, data)
            item: JSON = {"filename": filename, "subfolder": subfolder, "type": type_}
            if not self.legacy and type_ == "output":
                item["asset_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subfolder}/{filename}"))
            results.append(item)
        return results

    # ---------------------------------------------------------------- history and queue

    async def _get_history(self, request: web.Request) -> web.Response:
        items = list(self._history.items())
        max_items = request.query.get("max_items")
        offset_q = request.query.get("offset")
        offset = int(offset_q) if offset_q is not None else None
        if max_items is not None:
            n = int(max_items)
            if offset is None:
                offset = max(len(items) - n, 0)
            items = items[offset : offset + n]
        elif offset is not None:
            items = items[offset:]
        return web.json_response(dict(items))

    async def _get_history_id(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        entry = self._history.get(pid)
        return web.json_response({} if entry is None else {pid: entry})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if isinstance(body, dict):
            if body.get("clear"):
                self._history.clear()
            for pid in body.get("delete", []) or []:
                self._history.pop(str(pid), None)
        return web.Response(status=200)

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = (
            []
            if self._running is None
            else [
                [
                    self._running.number,
                    self._running.prompt_id,
                    self._running.prompt,
                    self._running.extra_data,
                    self._running.outputs_to_execute,
                ]
            ]
        )
        return web.json_response({"queue_running": running, "queue_pending": [list(i) for i in self._queue]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if isinstance(body, dict):
            if body.get("clear"):
                self._queue.clear()
                await self._broadcast_status()
            delete = [str(p) for p in body.get("delete", []) or []]
            if delete:
                self.deleted.extend(delete)
                before = len(self._queue)
                self._queue = [item for item in self._queue if item[1] not in delete]
                heapq.heapify(self._queue)
                if len(self._queue) != before:
                    await self._broadcast_status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        pid = body.get("prompt_id") if isinstance(body, dict) else None
        self.interrupts.append(None if pid is None else str(pid))
        if pid is None or (self._running is not None and self._running.prompt_id == str(pid)):
            self._interrupt = True
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        self.frees.append(body if isinstance(body, dict) else {})
        if isinstance(body, dict) and body.get("free_memory"):
            self._cache.clear()
        if isinstance(body, dict) and body.get("unload_models"):
            self.loaded_checkpoint = None
        return web.Response(status=200)

    # ---------------------------------------------------------------- files

    def _dir_for(self, type_: str | None) -> Path | None:
        return {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}.get(type_ or "")

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        type_ = str(post.get("type") or "input")
        upload_dir = self._dir_for(type_)
        if upload_dir is None:  # ComfyUI hits an UnboundLocalError here
            return web.Response(status=500, text=ERROR_500_TEXT)
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        filename = image.filename
        subfolder = str(post.get("subfolder", ""))
        overwrite = str(post.get("overwrite", "")).lower() in ("true", "1")
        data = image.file.read()
        stored = await asyncio.to_thread(_store_upload, upload_dir, subfolder, filename, data, overwrite)
        if stored is None:
            return web.Response(status=400)
        filename, duplicate = stored
        self.uploads.append(
            {
                "filename": image.filename,
                "name": filename,
                "subfolder": subfolder,
                "type": type_,
                "overwrite": overwrite,
                "duplicate": duplicate,
                "data": data,
            }
        )
        return web.json_response({"name": filename, "subfolder": subfolder, "type": type_})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        if self._view_gate is not None:
            await self._view_gate.wait()
        q = request.query
        if "filename" not in q:
            return web.Response(status=404)
        filename, annotated = _split_annotated(q["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        base = self._dir_for(annotated or q.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        path = _view_path(base, q.get("subfolder"), filename)
        if isinstance(path, int):
            return web.Response(status=path)
        name = path.name
        preview = q.get("preview")
        if preview:
            fmt, _, quality = preview.partition(";")
            if fmt == "jpeg":
                data = await asyncio.to_thread(path.read_bytes)
                body = await asyncio.to_thread(_reencode_jpeg, data, int(quality or 90))
                return web.Response(
                    body=body,
                    content_type="image/jpeg",
                    headers={"Content-Disposition": f'filename="{name}"'},
                )
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{name}"'})

    # ---------------------------------------------------------------- info endpoints

    def _features_data(self) -> JSON:
        return {"supports_preview_metadata": True, "max_upload_size": self.max_upload_size}

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response(self._features_data())

    async def _system_stats(self, request: web.Request) -> web.Response:
        ram = 25276510208
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": ram,
                    "ram_free": ram // 2,
                    "comfyui_version": COMFYUI_VERSION,
                    "required_frontend_version": "1.27.10",
                    "installed_templates_version": "0.1.95",
                    "required_templates_version": "0.1.95",
                    "python_version": "3.11.7 (fake)",
                    "pytorch_version": "2.13.0+cpu",
                    "embedded_python": False,
                    "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self._port)],
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": ram,
                        "vram_free": ram // 2,
                        "torch_vram_total": ram,
                        "torch_vram_free": ram // 2,
                    }
                ],
            }
        )

    async def _get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def _get_object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    def _model_folders(self) -> dict[str, list[str]]:
        return {"checkpoints": self.checkpoints, "upscale_models": self.upscale_models}

    async def _get_models(self, request: web.Request) -> web.Response:
        return web.json_response(list(self._model_folders()))

    async def _get_models_folder(self, request: web.Request) -> web.Response:
        folder = self._model_folders().get(request.match_info["folder"])
        if folder is None:
            return web.Response(status=404)
        return web.json_response(folder)


@asynccontextmanager
async def running_fake_comfyui(**options: Any) -> AsyncIterator[FakeComfyUI]:
    """Start a :class:`FakeComfyUI` with ``options`` (its keyword arguments) for the block, then stop it.

    For fixtures in other test packages::

        @pytest.fixture
        async def comfy():
            async with running_fake_comfyui(step_delay_s=0.001) as fake:
                yield fake
    """
    fake = FakeComfyUI(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


class WsRecorder:
    """A raw ``/ws`` client that records every frame in the trace format of ``shared/comfyui/traces``.

    ``frames`` holds ``{"kind": "json", "type", "data"}`` or ``{"kind": "binary", "event", ...}`` with
    ``image_format`` (type 1), ``metadata`` (type 4), ``node_id``/``text`` (type 3) and ``magic`` (the first
    4 bytes of the image, hex)::

        async with WsRecorder(session, comfy.url, client_id="c1", metadata=True) as rec:
            ...post a prompt with client_id "c1"...
            await rec.wait_done(prompt_id)
    """

    def __init__(
        self, session: Any, url: str, *, client_id: str | None = None, metadata: bool = False
    ) -> None:
        self.session = session
        self.url = url
        self.client_id = client_id
        self.metadata = metadata
        self.frames: list[JSON] = []
        self.closed = asyncio.Event()
        self._new = asyncio.Event()
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        query = f"?clientId={self.client_id}" if self.client_id else ""
        self._ws = await self.session.ws_connect(f"{self.url}/ws{query}", max_msg_size=0)
        if self.metadata:
            await self._ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await self._task

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type == WSMsgType.TEXT:
                    parsed = json.loads(msg.data)
                    self.frames.append({"kind": "json", "type": parsed["type"], "data": parsed["data"]})
                elif msg.type == WSMsgType.BINARY:
                    self.frames.append(decode_binary_frame(msg.data))
                self._new.set()
        finally:
            self.closed.set()
            self._new.set()

    async def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> JSON:
        """Wait for (and return) the first recorded frame matching ``predicate``."""
        seen = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for frame in self.frames[seen:]:
                    if predicate(frame):
                        return frame
                seen = len(self.frames)
                if self.closed.is_set():
                    raise ConnectionError("websocket closed")
                self._new.clear()
                await self._new.wait()

    async def wait_done(self, prompt_id: str, timeout_s: float = 10.0) -> JSON:
        """Wait for ``executing {node: null, prompt_id}``."""
        return await self.wait_for(
            lambda f: (
                f.get("type") == "executing"
                and f["data"].get("node") is None
                and f["data"].get("prompt_id") == prompt_id
            ),
            timeout_s,
        )

    def json_of(self, type_: str) -> list[JSON]:
        return [f["data"] for f in self.frames if f.get("type") == type_]


def decode_binary_frame(frame: bytes) -> JSON:
    """A binary WS frame → the trace's decoded-header dict."""
    (event,) = struct.unpack(">I", frame[:4])
    out: JSON = {"kind": "binary", "event": event, "len": len(frame)}
    if event == 1:
        out["image_format"] = struct.unpack(">I", frame[4:8])[0]
        out["magic"] = frame[8:12].hex()
    elif event == 4:
        (n,) = struct.unpack(">I", frame[4:8])
        out["metadata"] = json.loads(frame[8 : 8 + n])
        out["magic"] = frame[8 + n : 12 + n].hex()
    elif event == 3:
        (n,) = struct.unpack(">I", frame[4:8])
        out["node_id"] = frame[8 : 8 + n].decode()
        out["text"] = frame[8 + n :].decode()
    return out
