"""One OpenAPI document for the whole platform, merged from the services' own documents.

Each service's `/openapi.json` is fetched when the merged document is asked for, cached for a while,
and reused (stale) when the service is down: the document then names the services it could not
reach. Only the paths the gateway routes to a service are taken from it, each once, together with
the gateway's own auth routes. Component names that two services use for different schemas are
kept apart by prefixing the later one with its service's name.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from shared.logging import current_request_id

from gateway.routing import RoutingTable

log = structlog.get_logger("gateway.openapi")

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class _Cached:
    document: dict[str, Any] | None = None
    fetched_at: float = float("-inf")


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    """A copy of `node` whose `$ref`s to renamed components point to the new names."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _merge_components(merged: dict[str, dict], theirs: dict[str, dict], service: str) -> dict[str, str]:
    """Adds one service's components; returns its `$ref` renames (old ref → new ref)."""
    renames: dict[str, str] = {}
    prefix = service.capitalize()
    # A schema equal to one already merged is shared, unless it refers to a component that had to
    # be renamed; renaming one can make another differ, so repeat until nothing changes.
    changed = True
    while changed:
        changed = False
        for kind, items in theirs.items():
            ours = merged.get(kind, {})
            for name, definition in items.items():
                ref = f"#/components/{kind}/{name}"
                if ref in renames or name not in ours:
                    continue
                if ours[name] != _rewrite_refs(definition, renames):
                    new_name = f"{prefix}{name}"
                    while new_name in ours:
                        new_name = f"{prefix}{new_name}"
                    renames[ref] = f"#/components/{kind}/{new_name}"
                    changed = True
    for kind, items in theirs.items():
        ours = merged.setdefault(kind, {})
        for name, definition in items.items():
            ref = f"#/components/{kind}/{name}"
            target = renames.get(ref, ref).rsplit("/", 1)[1]
            if target not in ours:
                ours[target] = _rewrite_refs(definition, renames)
    return renames


def merge_documents(own: dict[str, Any], services: dict[str, dict[str, Any] | None],
                    table: RoutingTable) -> dict[str, Any]:
    merged = copy.deepcopy(own)
    paths: dict[str, Any] = merged.setdefault("paths", {})
    components: dict[str, dict] = merged.setdefault("components", {})
    tags = {t["name"]: t for t in merged.get("tags", [])}
    operation_ids = {op.get("operationId") for item in paths.values() for m, op in item.items()
                     if m in HTTP_METHODS and isinstance(op, dict)}
    unavailable = []
    for service, document in services.items():
        if document is None:
            unavailable.append(service)
            continue
        owned = {p: item for p, item in document.get("paths", {}).items()
                 if table.upstream_of(p) == service and p not in paths}
        if not owned:
            continue
        renames = _merge_components(components, document.get("components", {}), service)
        for path, item in owned.items():
            item = _rewrite_refs(item, renames)
            for method, operation in item.items():
                if method not in HTTP_METHODS or not isinstance(operation, dict):
                    continue
                operation["x-upstream"] = service
                op_id = operation.get("operationId")
                if op_id in operation_ids:
                    operation["operationId"] = f"{service}_{op_id}"
                operation_ids.add(operation.get("operationId"))
            paths[path] = item
        for tag in document.get("tags", []):
            tags.setdefault(tag["name"], tag)
    if tags:
        merged["tags"] = list(tags.values())
    if unavailable:
        merged["info"]["x-unavailable-services"] = unavailable
        merged["info"]["description"] = (
            merged["info"].get("description", "")
            + f"\n\nChưa lấy được tài liệu của / not available right now: {', '.join(unavailable)}."
        )
    return merged


class MergedOpenAPI:
    def __init__(self, client: httpx.AsyncClient, upstreams: dict[str, str], table: RoutingTable,
                 own: Callable[[], dict[str, Any]], *, cache_seconds: float, fetch_timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.upstreams = upstreams
        self.table = table
        self.own = own
        self.cache_seconds = cache_seconds
        self.fetch_timeout = fetch_timeout
        self._clock = clock
        self._cache = {name: _Cached() for name in upstreams}
        self._locks = {name: asyncio.Lock() for name in upstreams}
        self._merged: tuple[tuple, dict[str, Any]] | None = None

    async def _service_document(self, name: str) -> dict[str, Any] | None:
        cached = self._cache[name]
        if self._clock() - cached.fetched_at < self.cache_seconds:
            return cached.document
        async with self._locks[name]:
            if self._clock() - cached.fetched_at < self.cache_seconds:
                return cached.document
            headers = {"x-request-id": rid} if (rid := current_request_id()) else {}
            try:
                response = await self.client.get(f"{self.upstreams[name]}/openapi.json", headers=headers,
                                                 timeout=self.fetch_timeout)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("openapi_fetch_failed", upstream=name, error=type(exc).__name__)
                # Keep serving the last good copy; try again at the next request, not after a full period.
                return cached.document
            cached.document = document
            cached.fetched_at = self._clock()
            return document

    async def document(self) -> dict[str, Any]:
        names = list(self.upstreams)
        documents = await asyncio.gather(*(self._service_document(n) for n in names))
        key = tuple(self._cache[n].fetched_at for n in names)
        if self._merged is None or self._merged[0] != key:
            self._merged = (key, merge_documents(self.own(), dict(zip(names, documents)), self.table))
        return self._merged[1]
