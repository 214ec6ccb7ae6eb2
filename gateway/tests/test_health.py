"""The gateway's readiness reports each upstream and its own database; liveness needs nothing."""

from __future__ import annotations

import httpx

from deploy.processes import free_port

from gateway.tests.conftest import all_upstreams


async def test_ready_only_when_every_upstream_is(echo_upstream, start_gateway):
    _, server = echo_upstream
    ready = start_gateway(**all_upstreams(server.url))
    one_down = start_gateway(**{**all_upstreams(server.url), "insights_url": f"http://127.0.0.1:{free_port()}"})
    async with httpx.AsyncClient() as client:
        good = await client.get(f"{ready.url}/readyz")
        bad = await client.get(f"{one_down.url}/readyz")
        alive = await client.get(f"{one_down.url}/healthz")
    assert good.status_code == 200
    assert good.json() == {"status": "ready", "checks": {"merchants": "ok", "payments": "ok", "tourism": "ok",
                                                         "insights": "ok", "mongodb": "ok"}}
    assert bad.status_code == 503 and bad.json()["status"] == "not_ready"
    assert bad.json()["checks"]["insights"].startswith("error:")
    assert bad.json()["checks"]["payments"] == "ok"
    assert alive.status_code == 200
