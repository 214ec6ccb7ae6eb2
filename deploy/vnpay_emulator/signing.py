"""The emulator's three checksums: VNPay's query hash, VNPay's pipe hash, the bank's signature header."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote_plus

# Fields that never take part in the query checksum.
UNSIGNED_QUERY_FIELDS = frozenset({"vnp_SecureHash", "vnp_SecureHashType"})

QUERYDR_REQUEST_FIELDS = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef",
    "vnp_TransactionDate", "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo",
)
REFUND_REQUEST_FIELDS = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TransactionType",
    "vnp_TxnRef", "vnp_Amount", "vnp_TransactionNo", "vnp_TransactionDate", "vnp_CreateBy",
    "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo",
)
REFUND_RESPONSE_FIELDS = (
    "vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode",
    "vnp_TxnRef", "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo",
    "vnp_TransactionType", "vnp_TransactionStatus", "vnp_OrderInfo",
)
# querydr signs the refund list plus the two promotion fields, even when they are empty.
QUERYDR_RESPONSE_FIELDS = REFUND_RESPONSE_FIELDS + ("vnp_PromotionCode", "vnp_PromotionAmount")


def _hmac_hex(secret: str, data: str, algorithm) -> str:
    return hmac.new(secret.encode("utf-8"), data.encode("utf-8"), algorithm).hexdigest()


def canonical_query(params: Mapping[str, str]) -> str:
    """VNPay's sign data: vnp_* fields except the hash ones, empty values dropped, sorted by key,
    key and value encoded as `quote_plus` does, joined `k=v` with `&`. It is also the query sent."""
    items = sorted(
        (key, value)
        for key, value in params.items()
        if key.startswith("vnp_") and key not in UNSIGNED_QUERY_FIELDS and value not in (None, "")
    )
    return "&".join(f"{quote_plus(key)}={quote_plus(str(value))}" for key, value in items)


def sign_query(params: Mapping[str, str], secret: str) -> str:
    return _hmac_hex(secret, canonical_query(params), hashlib.sha512)


def signed_query_string(params: Mapping[str, str], secret: str) -> str:
    """The query VNPay puts on IPN and return URLs: the sign data plus `&vnp_SecureHash=<hex>`."""
    return f"{canonical_query(params)}&vnp_SecureHash={sign_query(params, secret)}"


def verify_query(params: Mapping[str, str], secret: str) -> bool:
    given = str(params.get("vnp_SecureHash") or "")
    return bool(given) and hmac.compare_digest(given.lower(), sign_query(params, secret))


def pipe_data(values: Mapping[str, object], fields: Iterable[str]) -> str:
    """The merchant web API's sign data: the listed fields' values in that order, joined by `|`,
    a missing field counting as the empty string."""
    return "|".join("" if values.get(name) is None else str(values.get(name)) for name in fields)


def sign_pipe(values: Mapping[str, object], fields: Iterable[str], secret: str) -> str:
    return _hmac_hex(secret, pipe_data(values, fields), hashlib.sha512)


def verify_pipe(values: Mapping[str, object], fields: Iterable[str], secret: str) -> bool:
    given = str(values.get("vnp_SecureHash") or "")
    return bool(given) and hmac.compare_digest(given.lower(), sign_pipe(values, fields, secret))


def bank_signature_header(secret: str, timestamp: int, raw_body: bytes) -> str:
    """`X-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + raw_body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
