"""Public ids: a type prefix and a time-sortable, monotonic ULID-style suffix (`pi_01JD…`)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0

PREFIXES = frozenset(
    {"pi", "re", "evt", "mch", "ord", "bk", "prd", "lst", "tkt", "we", "cs", "acct", "usr", "ch", "po", "req",
     # payments: ledger (balance) transactions, API keys, webhook deliveries, flagged payments
     "txn", "key", "whd", "flag"}
)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def ulid() -> str:
    """A 26-character id: 48 bits of milliseconds then 80 bits that grow within one millisecond.

    Monotonic within this process, so events written in one transaction keep their order when
    the outbox relay sorts by id.
    """
    global _last_ms, _last_rand
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            now = _last_ms
            _last_rand += 1
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms = now
        return _encode(now, 10) + _encode(_last_rand, 16)


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{ulid()}"
