"""HTML of the emulator's pages: the pay page with its VNPAY-QR image, VNPay-style error pages."""

from __future__ import annotations

from html import escape

import segno

from .emulator import Payment, format_vnp_date
from .emvco import vnpayqr_payload

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f6fb;margin:0;color:#1d2939}
main{max-width:560px;margin:32px auto;background:#fff;border-radius:12px;box-shadow:0 2px 12px #0001;padding:28px}
h1{font-size:1.3rem;margin:0 0 4px;color:#005baa}
.en{color:#667085;font-size:.9em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:20px 0}
dt{color:#667085}
dd{margin:0}
.amount{font-size:1.6rem;font-weight:700;color:#d92d20}
.qr{text-align:center;margin:16px 0}
.actions{display:flex;gap:12px;margin-top:20px}
button{flex:1;padding:12px;border-radius:8px;border:0;font-size:1rem;cursor:pointer}
.pay{background:#005baa;color:#fff}
.cancel{background:#eaecf0;color:#1d2939}
.code{font-family:monospace;color:#667085}
.banner{background:#fef0c7;border-radius:8px;padding:8px 12px;font-size:.85rem;margin-bottom:16px}
"""


def format_vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".") + " ₫"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )


def pay_page(payment: Payment, confirm_path: str) -> str:
    payload = vnpayqr_payload(payment.tmn_code, payment.txn_ref, payment.amount_vnd, "QUANG TRI DEMO")
    qr = segno.make(payload, error="m")
    token = escape(payment.token, quote=True)
    body = f"""
<div class="banner">Môi trường thử nghiệm (giả lập VNPAY sandbox) / Test environment (VNPAY sandbox emulator)</div>
<h1>Cổng thanh toán VNPAY <span class="en">/ VNPAY payment gateway</span></h1>
<dl>
  <dt>Đơn vị chấp nhận <span class="en">/ Merchant</span></dt><dd>{escape(payment.tmn_code)}</dd>
  <dt>Mã giao dịch <span class="en">/ Reference</span></dt><dd class="code">{escape(payment.txn_ref)}</dd>
  <dt>Nội dung <span class="en">/ Order info</span></dt><dd>{escape(payment.order_info)}</dd>
  <dt>Số tiền <span class="en">/ Amount</span></dt><dd class="amount">{format_vnd(payment.amount_vnd)}</dd>
  <dt>Hết hạn lúc <span class="en">/ Expires at</span></dt><dd>{escape(_show_date(payment))} (GMT+7)</dd>
</dl>
<p>Quét mã VNPAY-QR bằng ứng dụng ngân hàng <span class="en">/ Scan the VNPAY-QR code with a banking app</span></p>
<div class="qr">{qr.svg_inline(scale=5, title="VNPAY-QR")}</div>
<form method="post" action="{escape(confirm_path, quote=True)}" class="actions">
  <input type="hidden" name="token" value="{token}">
  <button class="pay" type="submit" name="action" value="approve">Thanh toán <span class="en">/ Pay</span></button>
  <button class="cancel" type="submit" name="action" value="decline">Hủy <span class="en">/ Cancel</span></button>
</form>
"""
    return _page("Thanh toán VNPAY / VNPAY payment", body)


def _show_date(payment: Payment) -> str:
    text = format_vnp_date(payment.expire_at)
    return f"{text[6:8]}/{text[4:6]}/{text[0:4]} {text[8:10]}:{text[10:12]}:{text[12:14]}"


def error_page(code: str, message: str, detail: str = "") -> str:
    vi, _, en = message.partition(" / ")
    body = f"""
<h1>Thông báo <span class="en">/ Notice</span></h1>
<p><strong>{escape(vi)}</strong></p>
<p class="en">{escape(en)}</p>
<p class="code">Mã lỗi / Error code: {escape(code)}</p>
{f'<p class="code">{escape(detail)}</p>' if detail else ''}
"""
    return _page(f"Lỗi {code} / Error {code}", body)
