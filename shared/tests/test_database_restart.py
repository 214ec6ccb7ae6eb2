"""The database may be killed at any moment: every acknowledged state change and its pending event
are there after a restart, and the relay then publishes the events."""

from __future__ import annotations

from deploy.infra import local_mongodb_uri, mongodb_process
from deploy.processes import free_port
from shared.events.merchants import MerchantSuspended
from shared.mongo import connect
from shared.outbox import Outbox, Transaction


async def test_acknowledged_writes_survive_a_killed_database(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    server = mongodb_process(port, data, tmp_path).start()
    server.wait_for_port(port, timeout=60)
    client = connect(local_mongodb_uri(port))
    try:
        outbox = Outbox(client, client["crash"], source="/tests")
        await outbox.ensure_indexes()
        for i in range(200):
            async def change(tx: Transaction, i=i):
                await tx.db.merchants.insert_one({"_id": f"mch_{i}", "status": "suspended"}, session=tx.session)
                tx.emit(MerchantSuspended(merchant_id=f"mch_{i}", reason="test"))
            await outbox.transaction(change)
        server.kill()  # SIGKILL: no clean shutdown, no checkpoint
    finally:
        await client.close()

    server = mongodb_process(port, data, tmp_path).start()
    server.wait_for_port(port, timeout=60)
    client = connect(local_mongodb_uri(port))
    try:
        db = client["crash"]
        assert await db.merchants.count_documents({}) == 200
        assert await db.outbox.count_documents({"sent_at": None}) == 200
        subjects = {d["subject"] async for d in db.outbox.find({}, {"subject": 1})}
        assert subjects == {f"mch_{i}" for i in range(200)}
    finally:
        await client.close()
        server.stop()
