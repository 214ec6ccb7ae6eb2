"""VietQR: NAPAS EMVCo merchant-presented QR payloads (static and dynamic), their CRC, and QR images (segno)."""

from __future__ import annotations

import io
import unicodedata

import segno

NAPAS_GUID = "A000000727"
SERVICE_TO_ACCOUNT = "QRIBFTTA"
CURRENCY_VND = "704"
COUNTRY_VN = "VN"
POINT_OF_INITIATION_STATIC = "11"
POINT_OF_INITIATION_DYNAMIC = "12"
# EMVCo caps every field at 99 characters; NAPAS caps the purpose (62.08) at 25.
MAX_PURPOSE = 25
MAX_MERCHANT_NAME = 25


def crc16_ccitt_false(data: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out) as 4 uppercase hex digits."""
    crc = 0xFFFF
    for byte in data.encode("utf-8"):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return f"{crc:04X}"


def field(tag: str, value: str) -> str:
    if not value:
        raise ValueError(f"EMVCo field {tag} is empty")
    if len(value) > 99:
        raise ValueError(f"EMVCo field {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def ascii_upper(text: str, limit: int) -> str:
    """Banking apps show tag 59 in plain ASCII capitals: strip Vietnamese diacritics (đ has no decomposition)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(plain.upper().split())[:limit]


def payload(*, bank_bin: str, account_no: str, amount: int | None = None, purpose: str | None = None,
            merchant_name: str | None = None) -> str:
    """A VietQR string for a transfer to a bank account. With an amount it is a dynamic (one payment) QR,
    without one a static QR the payer types the amount into."""
    if not (len(bank_bin) == 6 and bank_bin.isdigit()):
        raise ValueError("bank_bin must be 6 digits")
    if amount is not None and amount <= 0:
        raise ValueError("amount must be positive")
    beneficiary = field("00", bank_bin) + field("01", account_no)
    account_info = field("00", NAPAS_GUID) + field("01", beneficiary) + field("02", SERVICE_TO_ACCOUNT)
    parts = [
        field("00", "01"),
        field("01", POINT_OF_INITIATION_DYNAMIC if amount is not None else POINT_OF_INITIATION_STATIC),
        field("38", account_info),
        field("53", CURRENCY_VND),
    ]
    if amount is not None:
        parts.append(field("54", str(amount)))
    parts.append(field("58", COUNTRY_VN))
    if merchant_name:
        name = ascii_upper(merchant_name, MAX_MERCHANT_NAME)
        if name:
            parts.append(field("59", name))
    if purpose:
        parts.append(field("62", field("08", purpose[:MAX_PURPOSE])))
    body = "".join(parts) + "6304"
    return body + crc16_ccitt_false(body)


def png(data: str, scale: int = 6) -> bytes:
    buffer = io.BytesIO()
    # Error correction M: survives a little glare on a phone screen and keeps the code small.
    segno.make(data, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def svg(data: str, scale: int = 6) -> bytes:
    buffer = io.BytesIO()
    segno.make(data, error="m", micro=False).save(buffer, kind="svg", scale=scale, border=4, xmldecl=True)
    return buffer.getvalue()
