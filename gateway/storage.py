"""Where images live on disk: cleaned inputs, job outputs and live previews under one data dir.

Layout (every :class:`~gateway.models.ImageRef` path is relative to ``data_dir``)::

    inputs/YYYYMMDD/<sha256>.png|jpg     cleaned uploads, content-addressed, kept 24 h by default
    outputs/YYYYMMDD/<sha256>.png|...    ComfyUI results, content-addressed, kept 30 days by default
    previews/<job_id>.jpg                the latest preview of a running job, overwritten, kept 1 h

Writes are atomic (temporary file in the same directory, fsync except for previews, ``os.replace``), so
a reader never sees half an image and a crash leaves at most a ``.tmp-*`` file that cleanup removes.
Saving content that is already stored only refreshes its mtime; retention is measured from the last save.
References are checked against a strict pattern before touching the filesystem, so a ref coming back
from a queue or an HTTP client cannot escape the data dir.

With ``shared`` (:mod:`gateway.blobs`, Redis when ``REDIS_URL`` is set) every saved image is also put
there, and :meth:`ImageStore.read` of an image this machine does not have fetches it and keeps a copy:
processes with different data dirs, on different machines, read each other's images.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.logs import get_logger
from gateway.blobs import PREVIEW_TTL_S, SHARED_TTL_S, Blobs
from gateway.errors import StorageError
from gateway.images import CleanImage, probe
from gateway.models import FailureCode, ImageRef

log = get_logger("gateway")

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_MIMES = {ext: mime for mime, ext in _EXTENSIONS.items()}
_EXT = "|".join(sorted(_MIMES))
_REF_RE = re.compile(
    rf"^(?:(?:inputs|outputs)/[0-9]{{8}}/[0-9a-f]{{64}}|previews/[A-Za-z0-9_-]{{1,64}})\.(?:{_EXT})$"
)
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TMP_PREFIX = ".tmp-"
_TMP_MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of file is kept after it was last saved, in seconds."""

    inputs_s: float = 24 * 3600.0
    outputs_s: float = 30 * 24 * 3600.0
    previews_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one :meth:`ImageStore.cleanup` pass removed."""

    removed_files: int = 0
    freed_bytes: int = 0
    errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _ext_for(mime: str) -> str:
    try:
        return _EXTENSIONS[mime]
    except KeyError:
        raise StorageError(f"unsupported mime {mime!r}", code=FailureCode.INVALID_IMAGE) from None


def _atomic_write(final: Path, data: bytes, *, durable: bool = True) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{_TMP_PREFIX}{secrets.token_hex(6)}-{final.name}")
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            if durable:  # a delivered result must survive a power cut, not become 0 bytes
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class ImageGone(StorageError):
    """A well-formed reference whose image is neither on this disk nor shared (past retention)."""


class ImageStore:
    """Stores images under ``data_dir`` and hands out :class:`~gateway.models.ImageRef` values.

    ``clock`` (seconds since the epoch) picks the date directory and is the default ``now`` of
    :meth:`cleanup`; tests inject a fake one instead of sleeping.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
        shared: Blobs | None = None,
        shared_ttl_s: float = SHARED_TTL_S,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.retention = retention if retention is not None else Retention()
        self._clock = clock
        self.shared = shared
        self.shared_ttl_s = shared_ttl_s

    # --- references ---------------------------------------------------------------------------

    def path(self, ref: ImageRef | str) -> Path:
        """The absolute path of a stored image. Refuses anything but a well-formed reference
        (absolute paths, ``..``, backslashes, unknown folders) with a :class:`StorageError`."""
        rel = ref.path if isinstance(ref, ImageRef) else ref
        if not _REF_RE.fullmatch(rel):
            log.warning("image_ref_refused", component="gateway", ref=rel[:200])
            raise StorageError(f"bad image reference {rel[:200]!r}", code=FailureCode.INVALID_INPUT)
        return self.data_dir / rel

    def _day(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%d")

    # --- blocking implementations -------------------------------------------------------------

    def _store(self, rel: str, data: bytes, *, dedupe: bool, durable: bool = True) -> None:
        final = self.data_dir / rel
        if not (dedupe and final.is_file()):
            _atomic_write(final, data, durable=durable)
        # Retention counts from the latest save, on the same clock cleanup() uses.
        now = self._clock()
        os.utime(final, (now, now))

    def save_input_sync(self, clean: CleanImage) -> ImageRef:
        """Blocking :meth:`save_input`."""
        digest = hashlib.sha256(clean.data).hexdigest()
        rel = f"inputs/{self._day()}/{digest}.{_ext_for(clean.mime)}"
        self._store(rel, clean.data, dedupe=True)
        log.info("image_stored", component="gateway", kind="input", path=rel, bytes=len(clean.data))
        return ImageRef(
            path=rel, width=clean.width, height=clean.height, bytes=len(clean.data), mime=clean.mime
        )

    def save_output_sync(self, job_id: str, index: int, data: bytes, mime: str | None = None) -> ImageRef:
        """Blocking :meth:`save_output`."""
        width, height, probed = probe(data)
        # The bytes decide the extension; a caller's mime (from a filename) is only a fallback.
        mime = probed if probed in _EXTENSIONS else (mime or probed)
        digest = hashlib.sha256(data).hexdigest()
        rel = f"outputs/{self._day()}/{digest}.{_ext_for(mime)}"
        self._store(rel, data, dedupe=True)
        log.info(
            "image_stored",
            component="gateway",
            kind="output",
            job_id=job_id,
            index=index,
            path=rel,
            bytes=len(data),
        )
        return ImageRef(path=rel, width=width, height=height, bytes=len(data), mime=mime)

    def save_preview_sync(self, job_id: str, data: bytes, mime: str | None = None) -> ImageRef:
        """Blocking :meth:`save_preview`."""
        if not _JOB_ID_RE.fullmatch(job_id):
            raise StorageError(f"bad job id {job_id[:80]!r}", code=FailureCode.INVALID_INPUT)
        width, height, probed = probe(data)
        mime = probed if probed in _EXTENSIONS else (mime or probed)
        rel = f"previews/{job_id}.{_ext_for(mime)}"
        # No fsync: a preview is overwritten a second later and worthless after a crash, and a disk that
        # stalls on fsync (seen here: 1.3 s) must not slow the job down.
        self._store(rel, data, dedupe=False, durable=False)
        log.debug(
            "image_stored", component="gateway", kind="preview", job_id=job_id, path=rel, bytes=len(data)
        )
        return ImageRef(path=rel, width=width, height=height, bytes=len(data), mime=mime)

    def read_sync(self, ref: ImageRef | str) -> bytes:
        """Blocking :meth:`read`."""
        target = self.path(ref)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise ImageGone(f"image gone: {target.relative_to(self.data_dir)}") from None

    def cleanup_sync(self, now: float | None = None) -> CleanupReport:
        """Blocking :meth:`cleanup`."""
        now = self._clock() if now is None else now
        removed = freed = errors = 0
        by_kind: dict[str, int] = {}
        plans = (
            ("inputs", self.retention.inputs_s, True),
            ("outputs", self.retention.outputs_s, True),
            ("previews", self.retention.previews_s, False),
        )
        for kind, keep_s, dated in plans:
            root = self.data_dir / kind
            if not root.is_dir():
                continue
            dirs = sorted(d for d in root.iterdir() if d.is_dir()) if dated else [root]
            for folder in dirs:
                for entry in folder.iterdir():
                    try:
                        st = entry.lstat()
                        if not stat.S_ISREG(st.st_mode):
                            continue  # never follow a symlink out of the data dir
                        max_age = _TMP_MAX_AGE_S if entry.name.startswith(_TMP_PREFIX) else keep_s
                        if now - st.st_mtime < max_age:
                            continue
                        entry.unlink()
                    except FileNotFoundError:
                        continue  # another process's cleanup got there first
                    except OSError as exc:
                        errors += 1
                        log.warning(
                            "storage_cleanup_error", component="gateway", path=str(entry), error=repr(exc)
                        )
                        continue
                    removed += 1
                    freed += st.st_size
                    by_kind[kind] = by_kind.get(kind, 0) + 1
                if dated:
                    with contextlib.suppress(OSError):  # not empty (or gone): keep it
                        folder.rmdir()
        report = CleanupReport(removed_files=removed, freed_bytes=freed, errors=errors, by_kind=by_kind)
        log.info(
            "storage_cleanup",
            component="gateway",
            removed_files=removed,
            freed_bytes=freed,
            errors=errors,
            by_kind=by_kind,
        )
        return report

    # --- async API ----------------------------------------------------------------------------

    async def save_input(self, clean: CleanImage) -> ImageRef:
        """Store a cleaned upload under ``inputs/YYYYMMDD/<sha256>``; returns its reference."""
        ref = await asyncio.to_thread(self.save_input_sync, clean)
        await self._share(ref.path, clean.data, min(self.retention.inputs_s, self.shared_ttl_s))
        return ref

    async def save_output(self, job_id: str, index: int, data: bytes, mime: str | None = None) -> ImageRef:
        """Store a job result under ``outputs/YYYYMMDD/<sha256>``. Width and height come from the
        header (:func:`gateway.images.probe`), and so does the mime (``mime`` is a fallback). Raises
        :class:`~gateway.errors.ImageRejected` when ``data`` is not an image and
        :class:`~gateway.errors.StorageError` for formats other than PNG, JPEG, WebP and GIF."""
        ref = await asyncio.to_thread(self.save_output_sync, job_id, index, data, mime)
        await self._share(ref.path, data, min(self.retention.outputs_s, self.shared_ttl_s))
        return ref

    async def save_preview(self, job_id: str, data: bytes, mime: str | None = None) -> ImageRef:
        """Store (overwrite) the live preview of ``job_id`` at ``previews/<job_id>.<ext>`` (``.jpg`` for
        the JPEG previews ComfyUI usually sends); ``job_id`` must be ``[A-Za-z0-9_-]{1,64}``."""
        ref = await asyncio.to_thread(self.save_preview_sync, job_id, data, mime)
        await self._share(ref.path, data, PREVIEW_TTL_S)
        return ref

    async def _share(self, rel: str, data: bytes, ttl_s: float) -> None:
        if self.shared is not None:
            await self.shared.put(rel, data, ttl_s)

    async def read(self, ref: ImageRef | str) -> bytes:
        """The stored bytes of ``ref``: from this disk, else from the shared copy (kept here after);
        :class:`StorageError` when the ref is unsafe, :class:`ImageGone` when it is nowhere."""
        try:
            return await asyncio.to_thread(self.read_sync, ref)
        except ImageGone:
            rel = ref.path if isinstance(ref, ImageRef) else ref
            data = None if self.shared is None else await self.shared.get(rel)
            if data is None:
                raise
        # Previews change under the same name: never cached, always read fresh from the shared copy.
        if not rel.startswith("previews/"):
            await asyncio.to_thread(self._store, rel, data, dedupe=True)
        log.info("image_fetched", component="gateway", path=rel, bytes=len(data))
        return data

    async def cleanup(self, now: float | None = None) -> CleanupReport:
        """Delete files older than their :class:`Retention` (and stale temporary files)."""
        return await asyncio.to_thread(self.cleanup_sync, now)

    async def run_cleanup_forever(
        self, interval_s: float = 600.0, *, stop: asyncio.Event | None = None
    ) -> None:
        """Run :meth:`cleanup` now and every ``interval_s`` until ``stop`` is set or the task is
        cancelled. A failing pass is logged and retried at the next interval."""
        stop = stop if stop is not None else asyncio.Event()
        while True:
            try:
                await self.cleanup()
            except Exception as exc:
                log.error("storage_cleanup_failed", component="gateway", error=repr(exc))
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if stop.is_set():
                return


__all__ = ["CleanupReport", "ImageGone", "ImageStore", "Retention"]
