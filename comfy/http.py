"""The HTTP half of the ComfyUI client: one method per endpoint, errors mapped to ``comfy.errors``."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
from structlog.typing import FilteringBoundLogger

from comfy.errors import (
    ComfyRejected,
    ComfyResponseError,
    ComfyTimeout,
    ComfyUnreachable,
)
from comfy.results import OutputImage, PromptResult, QueueState
from core.logs import get_logger

__all__ = ["ComfyHTTP"]


class ComfyHTTP:
    """HTTP endpoints of one ComfyUI server, over a session the caller owns.

    Never sends an ``Origin`` header: ComfyUI answers 403 to a foreign Origin on a loopback Host.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        name: str | None = None,
        client_id: str,
        request_timeout_s: float = 30.0,
        preview_method: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name or self.base_url.split("://", 1)[-1]
        self.client_id = client_id
        self._session = session
        self._request_timeout_s = request_timeout_s
        #: ``extra_data.preview_method`` of every prompt unless the caller sets one (None: send none).
        self.preview_method = preview_method
        # A lazy proxy with initial values (not `.bind()`, which would freeze today's configuration):
        # logging may be configured after the client is built and tests capture logs per test.
        self._log: FilteringBoundLogger = get_logger("comfy", backend=self.name)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        """One request with a timeout; returns (status, body) for ``ok`` statuses and 400s.

        Connection failures and 403/5xx raise ComfyUnreachable; other statuses ComfyResponseError.
        """
        url = self.base_url + path
        try:
            async with asyncio.timeout(self._request_timeout_s):
                async with self._session.request(
                    method, url, json=json_body, data=data, params=params
                ) as resp:
                    body = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            raise ComfyTimeout(backend=self.name, operation=f"{method} {path}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyUnreachable(
                f"{method} {path}: {type(exc).__name__}: {exc}", backend=self.name
            ) from exc
        if status in ok or status == 400:
            return status, body
        if status == 403 or status >= 500:
            raise ComfyUnreachable(f"{method} {path}: HTTP {status}", backend=self.name, status=status)
        raise ComfyResponseError(
            f"{method} {path}: HTTP {status}: {body[:200].decode('utf-8', 'replace')}",
            backend=self.name,
            status=status,
            path=path,
        )

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self._request(method, path, **kwargs)
        if status == 400:
            raise ComfyResponseError(
                f"{method} {path}: HTTP 400: {body[:200].decode('utf-8', 'replace')}",
                backend=self.name,
                status=status,
                path=path,
            )
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ComfyResponseError(
                f"{method} {path}: answer is not JSON", backend=self.name, status=status, path=path
            ) from exc

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> int:
        """Queue an API-format graph under ``prompt_id``; returns ComfyUI's queue number.

        Sends this client's ``client_id`` so the server routes the prompt's events to our websocket.
        Raises ComfyRejected on 400 (validation), ComfyUnreachable on connection errors and 403/5xx.
        """
        body: dict[str, Any] = {
            "prompt": graph,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
            "extra_data": dict(extra_data or {}),
        }
        if self.preview_method is not None:
            # Current ComfyUI applies it per prompt (and resets to --preview-method without it); 0.3.64
            # ignores the key. See docs/COMFYUI_VERSIONS.md.
            body["extra_data"].setdefault("preview_method", self.preview_method)
        if front:
            body["front"] = True
        status, raw = await self._request("POST", "/prompt", json_body=body)
        answer = _loads(raw)
        if status == 400:
            exc = _rejected(answer, raw, backend=self.name)
            self._log.warning(
                "comfyui_rejected",
                prompt_id=prompt_id,
                error_type=exc.error_type,
                node_errors=len(exc.node_errors),
                summary=exc.summary(),
            )
            raise exc
        if not isinstance(answer, dict) or "number" not in answer:
            raise ComfyResponseError(
                "POST /prompt: unexpected answer", backend=self.name, status=status, path="/prompt"
            )
        number = int(answer["number"])
        node_errors = answer.get("node_errors") or {}
        if node_errors:
            # Partial success: some outputs failed validation and will silently not run.
            partial = ComfyRejected(
                backend=self.name, error_type="partial", message="", node_errors=node_errors
            )
            self._log.warning("comfyui_partial_validation", prompt_id=prompt_id, summary=partial.summary())
        self._log.info("comfyui_prompt_sent", prompt_id=prompt_id, number=number, nodes=len(graph))
        return number

    async def history(self, prompt_id: str) -> PromptResult | None:
        """The finished prompt's result, or ``None`` while it is unknown, queued or running."""
        answer = await self._json("GET", f"/history/{prompt_id}")
        entry = answer.get(prompt_id) if isinstance(answer, dict) else None
        if not isinstance(entry, dict):
            return None
        return PromptResult.from_history(prompt_id, entry)

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "comfybot", overwrite: bool = False
    ) -> str:
        """Upload an input image; returns the value for ``LoadImage.inputs.image`` (``subfolder/name``).

        ComfyUI dedups by content: the same name with the same bytes returns the existing file, the same
        name with other bytes gets a new name (``x (1).png``) unless ``overwrite``.
        """
        form = aiohttp.FormData()
        # A file object, not bytes: aiohttp warns (ResourceWarning) on a raw bytes body over 1 MiB, and
        # with warnings as errors the upload of any picture over 1 MiB failed ("Can not serialize value").
        form.add_field("image", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true" if overwrite else "false")
        status, raw = await self._request("POST", "/upload/image", data=form)
        answer = _loads(raw)
        if status == 400 or not isinstance(answer, dict) or "name" not in answer:
            raise ComfyResponseError(
                f"POST /upload/image: HTTP {status}", backend=self.name, status=status, path="/upload/image"
            )
        name = str(answer["name"])
        folder = str(answer.get("subfolder") or "")
        value = f"{folder}/{name}" if folder else name
        self._log.info("image_uploaded", filename=value, bytes=len(data))
        return value

    async def view(self, image: OutputImage) -> bytes:
        """Download an output (or temp/input) image's bytes."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        status, raw = await self._request("GET", "/view", params=params)
        if status == 400:
            raise ComfyResponseError("GET /view: HTTP 400", backend=self.name, status=400, path="/view")
        self._log.info("image_retrieved", filename=image.filename, subfolder=image.subfolder, bytes=len(raw))
        return raw

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running (ComfyUI ignores it otherwise)."""
        await self._request("POST", "/interrupt", json_body={"prompt_id": prompt_id})
        self._log.info("comfyui_interrupt_sent", prompt_id=prompt_id)

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove pending prompts from the queue (running ones are untouched, unknown ids ignored)."""
        await self._request("POST", "/queue", json_body={"delete": list(prompt_ids)})
        self._log.info("comfyui_queue_deleted", prompt_ids=list(prompt_ids))

    async def queue(self) -> QueueState:
        """Running prompt ids and pending ids in run order."""
        answer = await self._json("GET", "/queue")
        return QueueState.from_json(answer if isinstance(answer, dict) else {})

    async def queue_remaining(self) -> int:
        """Running + pending prompts, from ``GET /prompt``."""
        answer = await self._json("GET", "/prompt")
        info = answer.get("exec_info") if isinstance(answer, dict) else None
        remaining = info.get("queue_remaining") if isinstance(info, dict) else None
        return int(remaining) if isinstance(remaining, int | float) else 0

    async def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: versions, RAM, devices."""
        return _dict(await self._json("GET", "/system_stats"))

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info`` (all node types) or ``/object_info/{node_class}``."""
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        return _dict(await self._json("GET", path))

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask the server to unload models and/or free memory after the current prompt."""
        await self._request(
            "POST", "/free", json_body={"unload_models": unload_models, "free_memory": free_memory}
        )


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rejected(answer: Any, raw: bytes, *, backend: str) -> ComfyRejected:
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        # 400 without ComfyUI's JSON shape (a proxy?): keep the text readable.
        return ComfyRejected(
            backend=backend,
            error_type="bad_request",
            message=raw[:200].decode("utf-8", "replace") or "HTTP 400",
        )
    node_errors = answer.get("node_errors") if isinstance(answer, dict) else None
    return ComfyRejected(
        backend=backend,
        error_type=str(error.get("type") or "unknown"),
        message=str(error.get("message") or ""),
        details=str(error.get("details") or ""),
        node_errors=node_errors if isinstance(node_errors, dict) else {},
    )
