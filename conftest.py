"""Fixtures shared by every test: the real broker and database, started once per session.

When KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI are both set, the tests use those servers instead
(for example a real Apache Kafka and MongoDB); otherwise Tansu and SecantusDB are started on free
ports by the same launcher code that `./dev up` uses.
"""

from __future__ import annotations

import os
import uuid

import pytest

from deploy.infra import start_infra
from deploy.processes import free_port
from shared.mongo import connect


class InfraAddresses:
    def __init__(self, kafka: str, mongodb_uri: str):
        self.kafka_bootstrap = kafka
        self.mongodb_uri = mongodb_uri


@pytest.fixture(scope="session")
def infra(tmp_path_factory):
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        yield InfraAddresses(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URI"])
        return
    run_dir = tmp_path_factory.mktemp("infra")
    started = start_infra(free_port(), free_port(), run_dir)
    try:
        yield InfraAddresses(started.kafka_bootstrap, started.mongodb_uri)
    finally:
        started.stop()


@pytest.fixture
def unique() -> str:
    """A short token that keeps one test's databases, topics and groups apart from the others'."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def mongo(infra):
    client = connect(infra.mongodb_uri)
    yield client
    await client.close()


@pytest.fixture
def topic_prefix(unique) -> str:
    return f"t{unique}."


@pytest.fixture(scope="session")
def stack(infra, tmp_path_factory):
    """The whole platform as `./dev up` runs it (services, gateway, VNPay emulator as real processes),
    on free ports, over the session's broker and database, seeded with the demo data."""
    from deploy.stack import Stack, StackConfig

    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("stack"), external_kafka=infra.kafka_bootstrap,
                                       external_mongodb=infra.mongodb_uri, topic_prefix=f"s{uuid.uuid4().hex[:6]}.",
                                       app_env="test")
    running = Stack(config)
    running.start(seed=True)
    try:
        yield running
    finally:
        running.stop()
