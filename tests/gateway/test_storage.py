"""gateway.storage: content-addressed, atomic, traversal-proof image storage with retention."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from structlog.testing import capture_logs

from gateway.errors import ImageRejected, StorageError
from gateway.images import CleanImage, inspect_and_clean
from gateway.models import FailureCode, ImageRef
from gateway.storage import CleanupReport, ImageStore, Retention

HOUR = 3600.0
DAY = 24 * HOUR
T0 = datetime(2026, 11, 21, 0, 30, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def png(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 6), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def jpeg(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 6)) -> bytes:
    return png(color, size, "JPEG")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(data_dir: Path, clock: FakeClock) -> ImageStore:
    return ImageStore(data_dir, clock=clock)


def temporary_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def clean(color: tuple[int, int, int] = (255, 0, 0)) -> CleanImage:
    return inspect_and_clean(png(color))


async def test_input_is_content_addressed_under_the_day(store: ImageStore, data_dir: Path) -> None:
    image = clean()
    ref = await store.save_input(image)
    assert ref.path.startswith("inputs/20261121/") and ref.path.endswith(".png")
    assert len(Path(ref.path).stem) == 64
    assert (ref.width, ref.height, ref.bytes, ref.mime) == (8, 6, len(image.data), "image/png")
    assert store.path(ref) == data_dir / ref.path
    assert store.path(ref).read_bytes() == image.data
    assert await store.read(ref) == image.data
    again = await store.save_input(image)
    assert again == ref
    assert await store.save_input(clean((0, 0, 255))) != ref


async def test_no_temporary_files_are_left(store: ImageStore, data_dir: Path) -> None:
    await store.save_input(clean())
    await store.save_output("job1", 0, png())
    await store.save_preview("job1", png())
    assert temporary_files(data_dir) == []


async def test_output_reads_dimensions_from_the_header(store: ImageStore) -> None:
    data = png(size=(30, 20))
    ref = await store.save_output("job1", 0, data)
    assert ref.path.startswith("outputs/20261121/")
    assert (ref.width, ref.height, ref.bytes, ref.mime) == (30, 20, len(data), "image/png")


async def test_output_that_is_not_an_image_is_refused(store: ImageStore) -> None:
    with pytest.raises(ImageRejected):
        await store.save_output("job1", 0, b"<html>not an image</html>")


async def test_output_format_comes_from_the_bytes(store: ImageStore) -> None:
    ref = await store.save_output("job1", 0, png(), mime="image/jpeg")
    assert ref.mime == "image/png" and ref.path.endswith(".png")


async def test_unsupported_output_format_is_refused(store: ImageStore) -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="TIFF")
    with pytest.raises(StorageError):
        await store.save_output("job1", 0, out.getvalue())


async def test_preview_is_overwritten_per_job(store: ImageStore) -> None:
    first = await store.save_preview("job-1", jpeg((255, 0, 0)))
    second = await store.save_preview("job-1", jpeg((0, 255, 0), size=(4, 4)))
    assert first.path == second.path == "previews/job-1.jpg"
    assert await store.read(second) == jpeg((0, 255, 0), size=(4, 4))
    assert (second.width, second.mime) == (4, "image/jpeg")
    assert (await store.save_preview("job-1", png())).path == "previews/job-1.png"


async def test_preview_refuses_a_job_id_that_is_a_path(store: ImageStore) -> None:
    with pytest.raises(StorageError) as info:
        await store.save_preview("../../etc/passwd", png())
    assert info.value.code is FailureCode.INVALID_INPUT


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.png",
        "inputs/20261121/../../../etc/passwd",
        "/etc/passwd",
        "inputs/20261121/" + "a" * 64 + ".png/../../x.png",
        "inputs\\20261121\\" + "a" * 64 + ".png",
        "outputs/2026112/" + "a" * 64 + ".png",
        "other/20261121/" + "a" * 64 + ".png",
        "inputs/20261121/" + "A" * 64 + ".png",
        "inputs/20261121/" + "a" * 64 + ".exe",
        "previews/../inputs.jpg",
        "previews/job.jpg\x00.png",
        "",
    ],
)
def test_path_refuses_traversal_and_malformed_refs(store: ImageStore, rel: str) -> None:
    with capture_logs() as logs, pytest.raises(StorageError) as info:
        store.path(rel)
    assert info.value.code is FailureCode.INVALID_INPUT
    assert logs[0]["event"] == "image_ref_refused"


async def test_read_of_a_refused_ref_never_touches_the_disk(store: ImageStore) -> None:
    ref = ImageRef(path="../../../../etc/hostname", width=1, height=1, bytes=1)
    with pytest.raises(StorageError):
        await store.read(ref)


async def test_read_of_a_removed_file_is_a_storage_error(store: ImageStore) -> None:
    ref = await store.save_input(clean())
    store.path(ref).unlink()
    with pytest.raises(StorageError):
        await store.read(ref)


async def test_retention_with_a_fake_clock(store: ImageStore, clock: FakeClock) -> None:
    inp = await store.save_input(clean())
    out = await store.save_output("job1", 0, png((1, 2, 3)))
    prev = await store.save_preview("job1", png())

    assert await store.cleanup(now=T0 + 30 * 60) == CleanupReport()
    report = await store.cleanup(now=T0 + 2 * HOUR)
    assert (report.removed_files, report.by_kind) == (1, {"previews": 1})
    assert report.freed_bytes == prev.bytes
    assert not store.path(prev).exists() and store.path(inp).exists()

    report = await store.cleanup(now=T0 + 25 * HOUR)
    assert report.by_kind == {"inputs": 1} and report.freed_bytes == inp.bytes
    assert not store.path(inp).exists() and store.path(out).exists()
    assert not store.path(inp).parent.exists()  # the empty day directory went too

    clock.now = T0 + 31 * DAY
    report = await store.cleanup()
    assert report.by_kind == {"outputs": 1}
    assert not store.path(out).exists()


async def test_saving_again_restarts_retention(store: ImageStore, clock: FakeClock) -> None:
    ref = await store.save_input(clean())
    clock.now = T0 + 20 * HOUR
    again = await store.save_input(clean())
    assert again.path == ref.path  # same day directory, same content
    assert (await store.cleanup(now=T0 + 30 * HOUR)).removed_files == 0
    assert (await store.cleanup(now=T0 + 45 * HOUR)).removed_files == 1


async def test_retention_is_configurable(data_dir: Path, clock: FakeClock) -> None:
    store = ImageStore(data_dir, clock=clock, retention=Retention(inputs_s=60, outputs_s=120, previews_s=30))
    await store.save_input(clean())
    await store.save_output("j", 0, png((9, 9, 9)))
    assert (await store.cleanup(now=T0 + 90)).by_kind == {"inputs": 1}
    assert (await store.cleanup(now=T0 + 121)).by_kind == {"outputs": 1}


async def test_cleanup_removes_stale_temporary_files_only(store: ImageStore, data_dir: Path) -> None:
    day = data_dir / "outputs" / "20261121"
    day.mkdir(parents=True)
    stale, fresh = day / ".tmp-aaaa-x.png", day / ".tmp-bbbb-y.png"
    for p, age in ((stale, 2 * HOUR), (fresh, 60.0)):
        p.write_bytes(b"partial")
        os.utime(p, (T0 - age, T0 - age))
    report = await store.cleanup(now=T0)
    assert report.removed_files == 1
    assert not stale.exists() and fresh.exists()


async def test_cleanup_does_not_follow_symlinks(store: ImageStore, data_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.utime(victim, (0, 0))
    (data_dir / "previews").mkdir()
    (data_dir / "previews" / "link.jpg").symlink_to(victim)
    await store.cleanup(now=T0 + 365 * DAY)
    assert victim.read_text() == "keep me"


async def test_cleanup_of_an_empty_data_dir(store: ImageStore) -> None:
    assert await store.cleanup() == CleanupReport()


async def test_run_cleanup_forever_runs_then_stops(store: ImageStore, clock: FakeClock) -> None:
    await store.save_preview("job1", png())
    clock.now = T0 + 2 * HOUR
    stop = asyncio.Event()
    stop.set()
    with capture_logs() as logs:
        await asyncio.wait_for(store.run_cleanup_forever(interval_s=3600, stop=stop), timeout=10)
    (event,) = [e for e in logs if e["event"] == "storage_cleanup"]
    assert event["removed_files"] == 1


class SignallingStore(ImageStore):
    """Sets an event after each cleanup pass, so tests wait on it instead of sleeping."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.passed = asyncio.Event()

    async def cleanup(self, now: float | None = None) -> CleanupReport:
        report = await super().cleanup(now)
        self.passed.set()
        return report


async def test_run_cleanup_forever_is_cancellable(data_dir: Path) -> None:
    store = SignallingStore(data_dir)
    task = asyncio.create_task(store.run_cleanup_forever(interval_s=3600))
    await asyncio.wait_for(store.passed.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class FailingStore(SignallingStore):
    async def cleanup(self, now: float | None = None) -> CleanupReport:
        self.passed.set()
        raise PermissionError("disk says no")


async def test_a_failing_pass_is_logged_not_fatal(data_dir: Path) -> None:
    store = FailingStore(data_dir)
    stop = asyncio.Event()
    stop.set()
    with capture_logs() as logs:
        await asyncio.wait_for(store.run_cleanup_forever(interval_s=3600, stop=stop), timeout=10)
    assert [e["event"] for e in logs] == ["storage_cleanup_failed"]
