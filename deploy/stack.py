"""The local stack behind `./dev up`: broker, database, VNPay emulator, the four services, the gateway.

Starts everything as child processes, waits until each answers `/readyz`, seeds the demo data,
writes `.run/stack.json`, prints the URLs and stays in the foreground; Ctrl-C or SIGTERM stops
every process it started, in reverse order. The tests start the very same stack (`Stack`) on
free ports.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from deploy.infra import kafka_process, local_mongodb_uri, mongodb_process
from deploy.processes import ManagedProcess, free_port, port_in_use, uvicorn_command
from shared.auth import new_signing_key, public_key_pem_of

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("merchants", "payments", "tourism", "insights")
DEFAULT_TMN_CODE = "QTDEMO01"
DEFAULT_HASH_SECRET = "QTDEMOSECRETQTDEMOSECRETQTDEMO00"
DEFAULT_BANK_SECRET = "QTDEMOBANKSECRET"


class AlreadyRunning(RuntimeError):
    pass


@dataclass
class StackConfig:
    run_dir: Path
    gateway_port: int
    service_ports: dict[str, int]
    emulator_port: int
    kafka_port: int
    mongodb_port: int
    external_kafka: str | None = None
    external_mongodb: str | None = None
    vnpay_pay_url: str | None = None
    vnpay_api_url: str | None = None
    vnpay_tmn_code: str = DEFAULT_TMN_CODE
    vnpay_hash_secret: str = DEFAULT_HASH_SECRET
    topic_prefix: str = ""
    app_env: str = "local"
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, run_dir: Path) -> StackConfig:
        env = os.environ
        gateway = int(env.get("GATEWAY_PORT", "8000"))
        return cls(
            run_dir=run_dir, gateway_port=gateway,
            service_ports={name: gateway + 101 + i for i, name in enumerate(SERVICES)},
            emulator_port=gateway + 190, kafka_port=int(env.get("LOCAL_KAFKA_PORT", "19092")),
            mongodb_port=int(env.get("LOCAL_MONGODB_PORT", "27027")),
            external_kafka=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            external_mongodb=env.get("MONGODB_URI") or None,
            vnpay_pay_url=env.get("VNPAY_PAY_URL") or None, vnpay_api_url=env.get("VNPAY_API_URL") or None,
            vnpay_tmn_code=env.get("VNPAY_TMN_CODE") or DEFAULT_TMN_CODE,
            vnpay_hash_secret=env.get("VNPAY_HASH_SECRET") or DEFAULT_HASH_SECRET,
        )

    @classmethod
    def on_free_ports(cls, run_dir: Path, **kwargs) -> StackConfig:
        return cls(run_dir=run_dir, gateway_port=free_port(), service_ports={s: free_port() for s in SERVICES},
                   emulator_port=free_port(), kafka_port=free_port(), mongodb_port=free_port(), **kwargs)

    @property
    def kafka(self) -> str:
        return self.external_kafka or f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return self.external_mongodb or local_mongodb_uri(self.mongodb_port)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.service_ports[name]}"


def _keypair(run_dir: Path) -> tuple[str, str]:
    """The local signing key for people's tokens, made once per run directory."""
    key_file = run_dir / "keys" / "auth_ed25519.pem"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(new_signing_key()[0])
        key_file.chmod(0o600)
    private = key_file.read_text()
    return private, public_key_pem_of(private)


class Stack:
    """Every process of the local platform, started in dependency order and stopped in reverse."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.by_name: dict[str, ManagedProcess] = {}
        self.demo: dict = {}
        self.private_key, self.public_key = _keypair(config.run_dir)

    def _add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        self.by_name[process.name] = process
        return process.start()

    def _env(self, **extra: str) -> dict[str, str]:
        c = self.config
        return {"APP_ENV": c.app_env, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": c.kafka,
                "MONGODB_URI": c.mongodb_uri, "KAFKA_TOPIC_PREFIX": c.topic_prefix,
                "AUTH_PUBLIC_KEY_PEM": self.public_key, **c.extra_env, **extra}

    def service_env(self, name: str) -> dict[str, str]:
        """The environment each service starts with (the same names its settings read)."""
        c = self.config
        env = self._env(SERVICE_NAME=name)
        if c.external_kafka is None:
            # The local broker is memory-only: refill it from the outboxes on every start.
            env["OUTBOX_REPLAY_ON_START_SECONDS"] = str(7 * 24 * 3600)
        if name == "payments":
            env.update({
                "VNPAY_PAY_URL": c.vnpay_pay_url or f"{c.emulator_url}/paymentv2/vpcpay.html",
                "VNPAY_API_URL": c.vnpay_api_url or f"{c.emulator_url}/merchant_webapi/api/transaction",
                "VNPAY_TMN_CODE": c.vnpay_tmn_code, "VNPAY_HASH_SECRET": c.vnpay_hash_secret,
                "VNPAY_RETURN_URL": f"{c.gateway_url}/v1/vnpay/return",
                "BANK_NOTIFY_SECRET": DEFAULT_BANK_SECRET, "PUBLIC_BASE_URL": c.gateway_url,
            })
        return env

    def gateway_env(self) -> dict[str, str]:
        c = self.config
        env = self._env(AUTH_PRIVATE_KEY_PEM=self.private_key, GATEWAY_PORT=str(c.gateway_port),
                        DEMO_USERS_SEED="true")
        if c.app_env == "test":
            # Every test client comes from 127.0.0.1; the limiter's own tests use their own gateway.
            env.update(RATE_LIMIT_PER_SECOND="2000", RATE_LIMIT_BURST="4000", SIGNIN_ATTEMPTS_PER_MINUTE="600",
                       SIGNIN_BURST="200")
        env.update({f"{name.upper()}_URL": c.service_url(name) for name in SERVICES})
        return env

    def emulator_env(self) -> dict[str, str]:
        c = self.config
        return self._env(VNPAY_TMN_CODE=c.vnpay_tmn_code, VNPAY_HASH_SECRET=c.vnpay_hash_secret,
                         VNPAY_EMULATOR_IPN_URL=f"{c.gateway_url}/v1/vnpay/ipn",
                         BANK_NOTIFY_URL=f"{c.gateway_url}/v1/vietqr/notifications",
                         BANK_NOTIFY_SECRET=DEFAULT_BANK_SECRET)

    def check_ports(self) -> None:
        c = self.config
        wanted = {"gateway (GATEWAY_PORT)": c.gateway_port, "VNPay emulator": c.emulator_port,
                  **{name: port for name, port in c.service_ports.items()}}
        if c.external_kafka is None:
            wanted["kafka (LOCAL_KAFKA_PORT)"] = c.kafka_port
        if c.external_mongodb is None:
            wanted["mongodb (LOCAL_MONGODB_PORT)"] = c.mongodb_port
        busy = [f"{name}: {port}" for name, port in wanted.items() if port_in_use(port)]
        if busy:
            raise AlreadyRunning("Cổng đang bận / ports already in use — " + ", ".join(busy))

    def start(self, seed: bool = True) -> None:
        c = self.config
        logs = c.run_dir / "logs"
        try:
            if c.external_kafka is None:
                self._add(kafka_process(c.kafka_port, logs)).wait_for_port(c.kafka_port)
            if c.external_mongodb is None:
                self._add(mongodb_process(c.mongodb_port, c.run_dir / "mongodb-data", logs)) \
                    .wait_for_port(c.mongodb_port, timeout=60)
            emulator = self._add(ManagedProcess("vnpay-emulator",
                                                uvicorn_command("deploy.vnpay_emulator.app:create_app", c.emulator_port),
                                                log_path=logs / "vnpay-emulator.log", env=self.emulator_env(),
                                                cwd=ROOT))
            services = [self._add(ManagedProcess(name, uvicorn_command(f"services.{name}.app:create_app",
                                                                c.service_ports[name]),
                                                 log_path=logs / f"{name}.log", env=self.service_env(name), cwd=ROOT))
                        for name in SERVICES]
            # --no-proxy-headers: a local client must not choose its own address (rate limits) by
            # sending X-Forwarded-For; behind a real load balancer TRUST_FORWARDED_HEADERS says so.
            gateway = self._add(ManagedProcess("gateway", uvicorn_command("gateway.app:create_app", c.gateway_port)
                                               + ["--no-proxy-headers"],
                                               log_path=logs / "gateway.log", env=self.gateway_env(), cwd=ROOT))
            emulator.wait_for_http(f"{c.emulator_url}/readyz")
            for name, process in zip(SERVICES, services):
                process.wait_for_http(f"{c.service_url(name)}/readyz", timeout=90)
            gateway.wait_for_http(f"{c.gateway_url}/readyz", timeout=60)
            if seed:
                from deploy.seed import seed_demo
                self.demo = seed_demo(self)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def describe(self) -> dict:
        c = self.config
        return {"gateway": c.gateway_url, "services": {name: c.service_url(name) for name in SERVICES},
                "kafka": c.kafka, "mongodb": c.mongodb_uri, "vnpay": c.emulator_url, "demo": self.demo,
                "pids": {p.name: p.pid for p in self.processes}}


def _lock(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / "up.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        raise AlreadyRunning(f"./dev up đang chạy rồi (pid {pid}) / ./dev up is already running (pid {pid}); "
                             "stop it with Ctrl-C first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def up(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev up", description="Start the whole local platform.")
    parser.add_argument("--no-seed", action="store_true", help="do not seed the demo data")
    args = parser.parse_args(argv)
    # QT_RUN_DIR lets a test run a second, isolated `./dev up` beside a developer's own.
    run_dir = Path(os.environ.get("QT_RUN_DIR") or ROOT / ".run")
    try:
        lock = _lock(run_dir)
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    stack_file = run_dir / "stack.json"
    stack_file.unlink(missing_ok=True)
    stack = Stack(StackConfig.from_env(run_dir))
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.check_ports()
        print("==> starting broker, database, VNPay emulator, services and gateway …", flush=True)
        stack.start(seed=not args.no_seed)
    except Exception as exc:  # noqa: BLE001 - say what failed, in words, and stop cleanly
        print(f"\nKhông khởi động được / could not start: {exc}", file=sys.stderr)
        print(f"logs: {run_dir / 'logs'}", file=sys.stderr)
        return 1
    try:
        description = stack.describe()
        stack_file.write_text(json.dumps(description, indent=2, ensure_ascii=False))
        print(_banner(description, stack_file), flush=True)
        while not stopping.is_set():
            stopping.wait(1.0)
            dead = [p.name for p in stack.processes if not p.alive()]
            if dead:
                print(f"!! stopped unexpectedly: {', '.join(dead)} — see {run_dir / 'logs'}", file=sys.stderr)
                return 1
        return 0
    finally:
        print("\n==> stopping …", flush=True)
        stack.stop()
        stack_file.unlink(missing_ok=True)
        lock.close()
        print("==> stopped", flush=True)


def _banner(d: dict, stack_file: Path) -> str:
    lines = ["", "Sẵn sàng / ready — Quảng Trị Digital Economy Platform", "",
             f"  Gateway, web, API     {d['gateway']}   (docs: {d['gateway']}/docs)"]
    lines += [f"  {name:<22}{url}" for name, url in d["services"].items()]
    lines += [f"  VNPay emulator        {d['vnpay']}", f"  Kafka                 {d['kafka']}",
              f"  MongoDB               {d['mongodb']}"]
    for role, user in d.get("demo", {}).get("users", {}).items():
        lines.append(f"  demo {role:<17}{user['username']} / {user['password']}")
    lines += ["", f"  {stack_file}", "  Ctrl-C to stop everything."]
    return "\n".join(lines)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    if command != "up":
        print("usage: python -m deploy.stack up [--no-seed]", file=sys.stderr)
        sys.exit(2)
    sys.exit(up(sys.argv[2:]))
