"""EMVCo merchant-presented QR: TLV parsing and building, CRC-16/CCITT-FALSE, reading a VietQR (NAPAS)."""

from __future__ import annotations

from dataclasses import dataclass

NAPAS_GUID = "A000000727"
VNPAYQR_GUID = "A000000775"
VIETQR_SERVICE_CODES = {"QRIBFTTA": "account", "QRIBFTTC": "card"}


class EmvcoError(ValueError):
    """A payload that cannot be accepted; `field` names the tag path, e.g. "38.00" or "63"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def crc16_ccitt_false(data: str) -> str:
    """Polynomial 0x1021, initial 0xFFFF, no reflection, no final xor; 4 uppercase hex digits."""
    crc = 0xFFFF
    for byte in data.encode("utf-8"):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return f"{crc:04X}"


def parse_tlv(data: str, path: str = "") -> dict[str, str]:
    """Split `IDLLvalue…` into {id: value}; a repeated id or a length running past the end is an error."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 4]
        if len(header) < 4 or not header.isdigit():
            raise EmvcoError(path or "payload", f"TLV hỏng tại vị trí {pos} / malformed TLV at offset {pos}")
        tag, length = header[:2], int(header[2:])
        value = data[pos + 4 : pos + 4 + length]
        name = f"{path}.{tag}" if path else tag
        if len(value) != length:
            raise EmvcoError(name, f"Độ dài trường {name} sai / field {name} is shorter than its length")
        if tag in fields:
            raise EmvcoError(name, f"Trường {name} lặp lại / field {name} appears twice")
        fields[tag] = value
        pos += 4 + length
    return fields


def tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"EMVCo field {tag} longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def with_crc(body_without_crc: str) -> str:
    """Append tag 63: the CRC covers everything before it, including the "6304" header itself."""
    head = body_without_crc + "6304"
    return head + crc16_ccitt_false(head)


@dataclass(frozen=True)
class VietQR:
    point_of_initiation: str  # "11" static, "12" dynamic
    bank_bin: str
    account_no: str
    service_code: str
    amount: int | None
    merchant_name: str
    purpose: str  # tag 62.08, the transfer reference


def parse_vietqr(payload: str) -> VietQR:
    payload = payload.strip()
    if len(payload) < 8 or payload[-8:-4] != "6304":
        raise EmvcoError("63", "Thiếu CRC (tag 63) ở cuối / the payload must end with 6304XXXX")
    expected = crc16_ccitt_false(payload[:-4])
    if payload[-4:] != expected:
        raise EmvcoError("63", f"CRC sai: {payload[-4:]} ≠ {expected} / CRC mismatch")
    top = parse_tlv(payload)
    if top.get("00") != "01":
        raise EmvcoError("00", "Payload format indicator phải là 01 / tag 00 must be 01")
    if top.get("01") not in ("11", "12"):
        raise EmvcoError("01", "Tag 01 phải là 11 hoặc 12 / tag 01 must be 11 (static) or 12 (dynamic)")
    if "38" not in top:
        raise EmvcoError("38", "Thiếu tài khoản NAPAS (tag 38) / merchant account information missing")
    account = parse_tlv(top["38"], "38")
    if account.get("00") != NAPAS_GUID:
        raise EmvcoError("38.00", f"GUID phải là {NAPAS_GUID} / tag 38.00 must be NAPAS's {NAPAS_GUID}")
    if "01" not in account:
        raise EmvcoError("38.01", "Thiếu ngân hàng thụ hưởng / beneficiary organisation missing")
    beneficiary = parse_tlv(account["01"], "38.01")
    bin_ = beneficiary.get("00", "")
    if len(bin_) != 6 or not bin_.isdigit():
        raise EmvcoError("38.01.00", "Mã BIN ngân hàng phải gồm 6 chữ số / acquirer BIN must be 6 digits")
    account_no = beneficiary.get("01", "")
    if not account_no:
        raise EmvcoError("38.01.01", "Thiếu số tài khoản / account number missing")
    service = account.get("02", "")
    if service not in VIETQR_SERVICE_CODES:
        raise EmvcoError("38.02", "Mã dịch vụ phải là QRIBFTTA/QRIBFTTC / service code must be QRIBFTTA/QRIBFTTC")
    if top.get("53") != "704":
        raise EmvcoError("53", "Đơn vị tiền tệ phải là 704 (VND) / currency must be 704 (VND)")
    if top.get("58", "VN") != "VN":
        raise EmvcoError("58", "Mã quốc gia phải là VN / country code must be VN")
    amount: int | None = None
    if "54" in top:
        raw = top["54"]
        if not raw.isdigit() or int(raw) <= 0:
            raise EmvcoError("54", "Số tiền phải là số nguyên dương / amount must be a positive integer")
        amount = int(raw)
    purpose = ""
    if "62" in top:
        purpose = parse_tlv(top["62"], "62").get("08", "")
    return VietQR(
        point_of_initiation=top["01"],
        bank_bin=bin_,
        account_no=account_no,
        service_code=service,
        amount=amount,
        merchant_name=top.get("59", ""),
        purpose=purpose,
    )


def vnpayqr_payload(tmn_code: str, txn_ref: str, amount_vnd: int, merchant_name: str) -> str:
    """A VNPAY-QR style payload (EMVCo, VNPAY's GUID) for the emulator's pay page image."""
    account = tlv("00", VNPAYQR_GUID) + tlv("01", tmn_code[:20])
    body = (
        tlv("00", "01") + tlv("01", "12") + tlv("26", account) + tlv("52", "0000") + tlv("53", "704")
        + tlv("54", str(amount_vnd)) + tlv("58", "VN") + tlv("59", merchant_name[:25])
        + tlv("60", "QUANG TRI") + tlv("62", tlv("05", txn_ref[:25]))
    )
    return with_crc(body)
