"""The payments service may be killed at any moment: after a restart every accepted write is there,
its events are published, and events sent while it was down are applied once each."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from shared.bus import Producer
from shared.clock import utcnow
from shared.events import Envelope
from shared.events.merchants import OrderLine, OrderPlaced

from services.payments.tests.helpers import kafka_events, wait_for


async def test_killed_service_restarts_with_nothing_lost_and_nothing_doubled(stack, infra, merchant):
    payments = stack.by_name["payments"]
    service_url = stack.config.service_url("payments")
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=30) as http:
        accepted = await http.post("/v1/payment_intents", json={"amount": 120000, "currency": "vnd",
                                                                "payment_method_types": ["vietqr"]})
        assert accepted.status_code == 200
        payments.kill()  # SIGKILL right after answering: the relay may not have published yet

        orders = [f"ord_{uuid.uuid4().hex[:12]}" for _ in range(10)]
        producer = Producer(infra.kafka_bootstrap)
        await producer.start()
        try:
            envelopes = [Envelope.wrap(OrderPlaced(
                order_id=order_id, merchant_id=merchant.merchant_id, commune_code=19189, sector="food",
                amount=50000, lines=[OrderLine(product_id="prd_1", quantity=1, unit_amount=50000)],
                payment_method_types=["vietqr"], expires_at=utcnow() + timedelta(minutes=10)), source="/tests")
                for order_id in orders]
            topic = stack.config.topic_prefix + "merchants.events"
            # Every order event is delivered twice while payments is down.
            await producer.publish_many([(topic, e.to_kafka()) for e in envelopes + envelopes])
        finally:
            await producer.stop()

        payments.start()
        payments.wait_for_http(f"{service_url}/readyz", timeout=90)

        retrieved = await http.get(f"/v1/payment_intents/{accepted.json()['id']}")
        assert retrieved.status_code == 200 and retrieved.json()["amount"] == 120000

        async def all_orders():
            data = (await http.get("/v1/payment_intents", params={"limit": 100})).json()["data"]
            mine = [i for i in data if i["metadata"].get("order_id") in orders]
            return mine if len(mine) >= len(orders) else None
        intents = await wait_for(all_orders, timeout=60)
        assert sorted(i["metadata"]["order_id"] for i in intents) == sorted(orders), "one intent per order"

        async def created_event():
            events = (await http.get("/v1/events", params={"type": "payment_intent.created", "limit": 100})).json()
            return [e for e in events["data"] if e["data"]["object"]["id"] == accepted.json()["id"]]
        [event] = await wait_for(created_event)
        # The same event id reaches Kafka once the restarted relay finds it unsent (or it was sent before).
        on_kafka = await kafka_events(infra.kafka_bootstrap, stack.config.topic_prefix + "payments.events",
                                      {event["id"]}, timeout=30)
        assert on_kafka[event["id"]].subject == accepted.json()["id"]
