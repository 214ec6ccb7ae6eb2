"""What the transactional outbox costs: writes/s of a state change with its event, against a plain insert.

    .venv/bin/python benchmarks/outbox_bench.py [--writes 1500] [--concurrency 16]

Starts its own SecantusDB on a free port (or uses MONGODB_URI) and, in one run, measures:
  baseline     a plain insert_one of the state document (no event at all)
  outbox       the platform's way: state + outbox record in one multi-document transaction
  embedded     the alternative DESIGN.md mentions: the pending event inside the changed document
Prints each rate and its ratio to the baseline. Bounded by --writes per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.infra import local_mongodb_uri, mongodb_process  # noqa: E402
from deploy.processes import free_port  # noqa: E402
from shared.events.merchants import MerchantSuspended  # noqa: E402
from shared.events import Envelope  # noqa: E402
from shared.mongo import connect  # noqa: E402
from shared.outbox import Outbox, Transaction  # noqa: E402


async def timed(writes: int, concurrency: int, one) -> float:
    queue = iter(range(writes))

    async def worker():
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return writes / (time.perf_counter() - started)


async def run(uri: str, writes: int, concurrency: int) -> None:
    client = connect(uri)
    db = client[f"bench_{os.getpid()}"]
    outbox = Outbox(client, db, source="/bench")
    await outbox.ensure_indexes()

    async def baseline(i):
        await db.plain.insert_one({"_id": f"m{i}", "status": "suspended"})

    async def transactional(i):
        async def change(tx: Transaction):
            await tx.db.merchants.insert_one({"_id": f"m{i}", "status": "suspended"}, session=tx.session)
            tx.emit(MerchantSuspended(merchant_id=f"m{i}", reason="bench"))
        await outbox.transaction(change)

    async def embedded(i):
        event = Envelope.wrap(MerchantSuspended(merchant_id=f"m{i}", reason="bench"), source="/bench")
        await db.embedded.insert_one({"_id": f"m{i}", "status": "suspended",
                                      "pending_events": [event.to_document()]})

    results = {}
    for name, fn in (("baseline", baseline), ("outbox", transactional), ("embedded", embedded)):
        results[name] = await timed(writes, concurrency, fn)
    await client.drop_database(db.name)
    await client.close()
    base = results["baseline"]
    print(f"{writes} writes per phase, {concurrency} concurrent clients, {uri.split('?')[0]}")
    for name, rate in results.items():
        print(f"  {name:<9} {rate:8.0f} writes/s   ratio to baseline {rate / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-sync-on-commit", action="store_true",
                        help="run SecantusDB without fsync at each commit (faster, loses commits on a crash)")
    args = parser.parse_args()
    if os.environ.get("MONGODB_URI"):
        asyncio.run(run(os.environ["MONGODB_URI"], args.writes, args.concurrency))
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = mongodb_process(port, Path(tmp) / "data", Path(tmp),
                                 sync_on_commit=not args.no_sync_on_commit).start()
        try:
            server.wait_for_port(port, timeout=60)
            asyncio.run(run(local_mongodb_uri(port), args.writes, args.concurrency))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
