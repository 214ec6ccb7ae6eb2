"""`./dev up` as a newcomer runs it: ready, stack.json written, every /readyz 200, Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deploy.processes import free_port, port_in_use

ROOT = Path(__file__).resolve().parent.parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds no port and no work.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _free_block() -> int:
    """A gateway port whose companions (+101..+104, +190) are free too."""
    for _ in range(50):
        base = random.randint(20000, 40000)
        if not any(port_in_use(p) for p in (base, base + 101, base + 102, base + 103, base + 104, base + 190)):
            return base
    pytest.skip("no free block of ports")


@pytest.fixture
def up_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
    env.update(GATEWAY_PORT=str(_free_block()), LOCAL_KAFKA_PORT=str(free_port()),
               LOCAL_MONGODB_PORT=str(free_port()), QT_RUN_DIR=str(tmp_path / "run"))
    return env


def test_dev_up_reaches_ready_and_ctrl_c_stops_everything(up_env):
    run_dir = Path(up_env["QT_RUN_DIR"])
    stack_file = run_dir / "stack.json"
    proc = subprocess.Popen([str(ROOT / "dev"), "up"], cwd=ROOT, env=up_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not stack_file.exists():
            assert proc.poll() is None, f"./dev up exited early:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "./dev up did not become ready"
            time.sleep(0.5)
        stack = json.loads(stack_file.read_text())
        assert stack["gateway"] == f"http://127.0.0.1:{up_env['GATEWAY_PORT']}"
        assert set(stack["services"]) == {"merchants", "payments", "tourism", "insights"}
        assert stack["kafka"] and stack["mongodb"].startswith("mongodb://") and "retryWrites=false" in stack["mongodb"]
        for url in [stack["gateway"], stack["vnpay"], *stack["services"].values()]:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                assert resp.status == 200, url
        demo = stack["demo"]
        assert set(demo["users"]) == {"shopper", "merchant", "operator", "official", "admin"}
        assert demo["merchant_secret_key"].startswith("sk_test_")

        second = subprocess.run([str(ROOT / "dev"), "up"], cwd=ROOT, env=up_env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        assert "already running" in second.stderr

        pids = list(stack["pids"].values())
        assert all(_pid_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        time.sleep(0.5)
        assert [pid for pid in pids if _pid_alive(pid)] == [], "no process left behind"
        assert not stack_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
