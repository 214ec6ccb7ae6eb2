"""Reading Stripe-style requests: form bodies with bracket keys (`metadata[order_id]`, `expand[0]`) or JSON."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
MAX_BODY = 256 * 1024


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b]=1&c[]=x&c[]=y&d[0]=z` → {"a": {"b": "1"}, "c": ["x", "y"], "d": ["z"]} (Stripe's encoding)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise InvalidRequest(f"Tham số không hợp lệ: {key} / invalid parameter name: {key}", param=key)
        path = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for i, part in enumerate(path):
            if part == "":
                part = str(len(node))  # `a[]` appends
            last = i == len(path) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise InvalidRequest(f"Tham số {key} bị lặp / parameter {key} given twice", param=key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise InvalidRequest(f"Tham số {key} bị lặp / parameter {key} given twice", param=key)
                node = child
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


async def body_params(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidRequest("Nội dung yêu cầu quá lớn / request body too large")
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            params = json.loads(raw)
        except ValueError:
            raise InvalidRequest("Nội dung JSON không hợp lệ / body is not valid JSON") from None
        if not isinstance(params, dict):
            raise InvalidRequest("Nội dung JSON phải là một đối tượng / JSON body must be an object")
        return params
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("Nội dung phải là UTF-8 / body must be UTF-8") from None
    return nest(parse_qsl(text, keep_blank_values=True))


def query_params(request: Request) -> dict[str, Any]:
    return nest(parse_qsl(request.url.query, keep_blank_values=True))


def parse(model: type[M], params: dict[str, Any]) -> M:
    """Validates into `model`; every problem becomes Stripe's 400 naming the parameter in bracket form."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *_client_loc(e["loc"]))} for e in exc.errors()]) from None


# pydantic's own steps in a location (a union member such as `function-after[…]` or `literal['']`, a dict's
# `[key]`): not part of the parameter's name as the client wrote it.
_PYDANTIC_STEP = re.compile(r"^(\[key\]|[a-z][a-z-]*\[.*\])$")


def _client_loc(loc: tuple) -> tuple:
    return tuple(p for p in loc if not (isinstance(p, str) and _PYDANTIC_STEP.match(p)))


def client_ip(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[0].strip()[:45]
    return request.client.host if request.client else "127.0.0.1"
