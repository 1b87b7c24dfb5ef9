"""The OpenAPI document against the real API: every route documented, nothing documented that is not a
route, the checked-in copy current, and real answers of the documented status, content type and shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.http_api import EVENTS, WebhookOptions
from gateway.models import Succeeded
from gateway.openapi import openapi_document
from tests.gateway.conftest import harness
from tests.gateway.test_http_api import auth
from tests.gateway.test_http_events import JOB, Api, read_events, serving

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def problems(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """What in ``value`` breaks ``schema``: $ref, type (with nullable), enum, required, properties,
    items, additionalProperties — the structural part of OpenAPI 3.0 schemas."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return problems(doc, doc["components"]["schemas"][name], value, where)
    if value is None:
        return [] if schema.get("nullable") or "type" not in schema else [f"{where}: null"]
    kind = schema.get("type")
    if kind is not None:
        wanted = _TYPES[kind]
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            return [f"{where}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    found: list[str] = []
    if isinstance(value, dict):
        found += [f"{where}: no {key!r}" for key in schema.get("required", []) if key not in value]
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                found += problems(doc, props[key], item, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += problems(doc, schema["additionalProperties"], item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(doc, schema["items"], item, f"{where}[{i}]")
    return found


class Checker:
    """Checks each real answer against the operation the document has for its route."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.doc = openapi_document()
        self.checked: set[tuple[str, str, int]] = set()

    def operation(self, method: str, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        """The documented operation for the answered path: ``{path}`` may hold slashes, others not."""
        path = resp.url.path
        for template, item in self.doc["paths"].items():
            pattern = re.sub(
                r"\\\{(\w+)\\\}", lambda m: ".+" if m[1] == "path" else "[^/]+", re.escape(template)
            )
            if re.fullmatch(pattern, path) and method in item:
                op: dict[str, Any] = item[method]
                return op
        raise AssertionError(f"{method} {path} is not documented")

    async def check(self, method: str, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        op = self.operation(method, resp)
        documented = op["responses"].get(str(resp.status))
        assert documented is not None, (method, resp.url.path, resp.status, "status not documented")
        self.checked.add((method, resp.url.path, resp.status))
        content = documented.get("content", {})
        if not content:
            assert not await resp.read(), "an undocumented body"
            return {}
        media = resp.content_type
        key = media if media in content else next((k for k in content if k.endswith("/*")), None)
        assert key is not None and media.startswith(key.removesuffix("*")), (media, list(content))
        if media == "application/json":
            body = await resp.json()
            assert not problems(self.doc, content[key]["schema"], body), problems(
                self.doc, content[key]["schema"], body
            )
            return body if isinstance(body, dict) else {"body": body}
        if media == "text/event-stream":
            events = [e async for e in read_events(resp)]
            for event in events:
                assert not problems(self.doc, content[key]["schema"], event.data), event
            return {"events": events}
        assert await resp.read()
        return {}


def test_every_route_is_documented_and_every_documented_operation_is_a_route(api_app) -> None:
    doc = openapi_document()
    routes = {
        (resource.canonical, route.method.lower())
        for resource in api_app.router.resources()
        for route in resource
        if route.method.lower() in METHODS
    }
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert routes == documented
    assert doc["openapi"].startswith("3.")
    for path, item in doc["paths"].items():
        for method in set(item) & METHODS:
            assert "401" in item[method]["responses"], (path, method, "every route needs the token")
            for status in item[method]["responses"]:
                assert status.isdigit()


def test_the_checked_in_copy_is_current() -> None:
    assert json.loads(DOCS.read_text()) == openapi_document(), (
        "docs/openapi.json is stale: python -c 'import json, gateway.openapi as o; "
        "print(json.dumps(o.openapi_document(), indent=2))' > docs/openapi.json"
    )


@pytest.fixture
async def api_app(session, registry, data_dir):
    async with harness(session, registry, data_dir) as h, serving(h) as api:
        yield api.runner.app


async def test_real_answers_match_the_document(session, registry, data_dir) -> None:
    async with (
        harness(session, registry, data_dir) as h,
        serving(h, WebhookOptions(secret="s", backoff_s=0.01)) as api,
    ):
        c = Checker(api)
        url = api.url
        async with session.get(f"{url}/v1/openapi.json", headers=auth()) as resp:
            assert await c.check("get", resp) == openapi_document()
        async with session.get(f"{url}/v1/health") as resp:
            await c.check("get", resp)  # 401
        async with session.post(f"{url}/v1/jobs", json=JOB, headers=auth()) as resp:
            accepted = await c.check("post", resp)
        job_id = accepted["job_id"]
        assert isinstance(await h.log.terminal(job_id), Succeeded)
        async with session.get(f"{url}/v1/jobs/{job_id}", headers=auth()) as resp:
            record = await c.check("get", resp)
        async with session.get(f"{url}/v1/jobs/{job_id}/events", headers=auth()) as resp:
            events = (await c.check("get", resp))["events"]
        assert events[-1].event == "succeeded"
        headers = {**auth(), "Last-Event-ID": "outcome"}
        async with session.get(f"{url}/v1/jobs/{job_id}/events", headers=headers) as resp:
            await c.check("get", resp)  # 204
        async with session.get(url + events[-1].data["images"][0]["url"], headers=auth()) as resp:
            await c.check("get", resp)
        assert record["images"][0]["path"] == events[-1].data["images"][0]["path"]
        for bad, status in [
            ({**JOB, "params": {"prompt": "x", "steps": 999}}, 400),
            ({**JOB, "workflow": "nope"}, 404),
            ({**JOB, "callback_url": "file:///etc/passwd"}, 400),
        ]:
            async with session.post(f"{url}/v1/jobs", json=bad, headers=auth()) as resp:
                assert resp.status == status
                await c.check("post", resp)
        for path in ("/v1/jobs/nope", "/v1/jobs/nope/events", "/v1/images/previews/nope.png"):
            async with session.get(url + path, headers=auth()) as resp:
                assert resp.status == 404
                await c.check("get", resp)
        async with session.delete(f"{url}/v1/jobs/{job_id}", headers=auth()) as resp:
            await c.check("delete", resp)
        for path in ("/v1/health", "/v1/stats"):
            async with session.get(url + path, headers=auth()) as resp:
                await c.check("get", resp)
        assert api.runner.app[EVENTS].webhooks is not None
    statuses = {status for _, _, status in c.checked}
    assert {200, 202, 204, 400, 401, 404} <= statuses


def test_the_checker_finds_a_missing_field_and_a_wrong_type() -> None:
    doc = openapi_document()
    ref = {"$ref": "#/components/schemas/Accepted"}
    good = {"job_id": "j", "request_id": "r", "position": 1, "depth": 1, "eta_s": None, "blocked": None}
    assert problems(doc, ref, good) == []
    assert problems(doc, ref, {**good, "position": "1"}) == ["$.position: str is not integer"]
    assert problems(doc, ref, {k: v for k, v in good.items() if k != "job_id"}) == ["$: no 'job_id'"]
