"""How much the gateway adds: latency (p50/p95) and throughput through the gateway vs. the service directly.

    .venv/bin/python benchmarks/gateway_bench.py                  # starts what it needs on free ports
    .venv/bin/python benchmarks/gateway_bench.py --stack .run/stack.json   # a running ./dev up

The same request (GET /v1/listings with a shopper's token, answered by the tourism service) is
sent to the service's own port and through the gateway, first one at a time (added latency), then
with `--concurrency` clients at once (throughput). Bounded: `--requests` per phase and `--max-seconds`
overall. Everything runs on this machine, so client, gateway and service share its cores; compare
the ratios, not the absolute figures, across machines.

Against a running stack the gateway keeps its production rate limits: the load is spread over
many shoppers' tokens (signed with the stack's local key in `.run/keys/`) so that no one client
goes over its budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.processes import ManagedProcess, free_port, uvicorn_command  # noqa: E402
from shared.auth import TokenIssuer, new_signing_key  # noqa: E402

PATH = "/v1/listings"


def _uvicorn(app: str, port: int) -> list[str]:
    return uvicorn_command(app, port) + ["--log-level", "warning"]


def start_own(stack: ExitStack, run_dir: Path) -> tuple[str, str, str]:
    """Broker, database, the tourism service and a gateway on free ports; returns
    (gateway url, service url, private key)."""
    from deploy.infra import start_infra

    infra = start_infra(free_port(), free_port(), run_dir)
    stack.callback(infra.stop)
    private, public = new_signing_key()
    common = {"APP_ENV": "local", "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
              "MONGODB_URI": infra.mongodb_uri, "AUTH_PUBLIC_KEY_PEM": public, "LOG_LEVEL": "WARNING",
              "KAFKA_TOPIC_PREFIX": "bench."}
    service_port, gateway_port = free_port(), free_port()
    service = ManagedProcess("tourism", _uvicorn("services.tourism.app:create_app", service_port),
                             log_path=run_dir / "logs" / "tourism.log", env={**common, "SERVICE_NAME": "tourism"},
                             cwd=ROOT).start()
    stack.callback(service.stop)
    service_url = f"http://127.0.0.1:{service_port}"
    # A silent upstream for the others: the gateway only needs them for /readyz, which we skip.
    gateway_env = {**common, "AUTH_PRIVATE_KEY_PEM": private, "TOURISM_URL": service_url,
                   "RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}
    gateway = ManagedProcess("gateway", _uvicorn("gateway.app:create_app", gateway_port),
                             log_path=run_dir / "logs" / "gateway.log", env=gateway_env, cwd=ROOT).start()
    stack.callback(gateway.stop)
    service.wait_for_http(f"{service_url}/readyz", timeout=60)
    gateway.wait_for_http(f"http://127.0.0.1:{gateway_port}/healthz", timeout=60)
    return f"http://127.0.0.1:{gateway_port}", service_url, private


def from_stack_file(path: Path) -> tuple[str, str, str]:
    described = json.loads(path.read_text())
    key = path.parent / "keys" / "auth_ed25519.pem"
    return described["gateway"], described["services"]["tourism"], key.read_text()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run_phase(base: str, tokens: list[str], requests: int, concurrency: int, deadline: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        async def worker():
            nonlocal next_index
            while next_index < requests and time.monotonic() < deadline:
                i = next_index
                next_index += 1
                headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                started = time.perf_counter()
                response = await client.get(PATH, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        for _ in range(min(50, requests)):  # warm the pools and the code paths
            await client.get(PATH, headers={"Authorization": f"Bearer {tokens[0]}"})
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000, "statuses": statuses}


async def bench(gateway: str, service: str, private_key: str, requests: int, concurrency: int,
                max_seconds: float) -> dict:
    issuer = TokenIssuer(private_key)
    tokens = [issuer.issue(f"usr_bench_{i}", "shopper") for i in range(64)]
    deadline = time.monotonic() + max_seconds
    # Each phase gets its share of the time budget, so one slow phase cannot starve the others.
    share = max_seconds / 4
    results = {}
    for name, base, conc in (("direct_sequential", service, 1), ("gateway_sequential", gateway, 1),
                             ("direct_concurrent", service, concurrency), ("gateway_concurrent", gateway, concurrency)):
        results[name] = await run_phase(base, tokens, requests, conc, min(deadline, time.monotonic() + share))
    return results


def report(results: dict) -> str:
    lines = [f"{'phase':<20}{'requests':>9}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}  statuses"]
    for name, r in results.items():
        lines.append(f"{name:<20}{r['requests']:>9}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}  {r['statuses']}")
    for mode in ("sequential", "concurrent"):
        d, g = results[f"direct_{mode}"], results[f"gateway_{mode}"]
        lines.append(f"{mode}: gateway adds p50 {g['p50_ms'] - d['p50_ms']:+.2f} ms, p95 {g['p95_ms'] - d['p95_ms']:+.2f} ms;"
                     f" latency ratio p50 {g['p50_ms'] / d['p50_ms']:.2f}x, p95 {g['p95_ms'] / d['p95_ms']:.2f}x;"
                     f" throughput ratio {g['rps'] / d['rps']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, help="a running stack's stack.json (default: start our own)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="overall time budget for the load")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        if args.stack:
            gateway, service, key = from_stack_file(args.stack)
        else:
            print("==> starting broker, database, tourism service and gateway on free ports …", flush=True)
            gateway, service, key = start_own(stack, Path(tmp))
        print(f"==> {args.requests} requests per phase, concurrency {args.concurrency}, "
              f"at most {args.max_seconds:.0f} s: GET {PATH} via {gateway} and {service}", flush=True)
        results = asyncio.run(bench(gateway, service, key, args.requests, args.concurrency, args.max_seconds))
        print(report(results))
        if args.json:
            print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
