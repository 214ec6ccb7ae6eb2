"""What payments does with other services' events: one function per event type, applied once per event id."""

from __future__ import annotations

import structlog

from shared.clock import as_utc, utcnow
from shared.consumers import EventContext, EventHandlers
from shared.events.merchants import MerchantApproved, OrderCancelled, OrderPlaced
from shared.events.tourism import BookingCancelled, BookingExpired, BookingHeld

from services.payments import domain, store

log = structlog.get_logger(__name__)


class AccountMissing(RuntimeError):
    """An order for a merchant whose account is not open yet: retried, then dead-lettered with this message."""


def event_handlers(providers: store.Providers) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on
    async def open_merchant_account(event: MerchantApproved, ctx: EventContext) -> None:
        await store.open_account(ctx.tx, store.AccountDetails(
            merchant_id=event.merchant_id, display_name=event.display_name, commune_code=event.commune_code,
            sector=event.sector, bank_bin=event.bank_bin, bank_account_no=event.bank_account_no,
            bank_account_name=event.bank_account_name), providers)

    async def create_for(ctx: EventContext, *, source_type: str, source_id: str, merchant_id: str, amount: int,
                         methods: list[str], expires_at, commune_code: int, sector: str | None) -> None:
        source_key = f"{source_type}:{source_id}"
        if await ctx.tx.db[store.INTENTS].find_one({"source_key": source_key}, session=ctx.tx.session):
            return  # the same order placed twice (another event id) still gets one intent
        account = await ctx.tx.db[store.ACCOUNTS].find_one({"merchant_id": merchant_id}, session=ctx.tx.session)
        if account is None:
            raise AccountMissing(f"merchant {merchant_id} has no payment account")
        now = utcnow()
        # The hold's own expiry, kept within what VNPay accepts.
        expiry = min(max(as_utc(expires_at), now + domain.MIN_INTENT_LIFETIME), now + domain.MAX_INTENT_LIFETIME)
        await store.create_intent(ctx.tx, account, store.IntentSpec(
            amount=amount, payment_method_types=domain.check_methods(methods),
            metadata={f"{source_type}_id": source_id}, description=None, return_url=None, expires_at=expiry,
            ip_address="127.0.0.1", source_type=source_type, source_id=source_id, commune_code=commune_code,
            sector=sector), providers)

    @handlers.on
    async def create_intent_for_order(event: OrderPlaced, ctx: EventContext) -> None:
        await create_for(ctx, source_type="order", source_id=event.order_id, merchant_id=event.merchant_id,
                         amount=event.amount, methods=list(event.payment_method_types), expires_at=event.expires_at,
                         commune_code=event.commune_code, sector=event.sector)

    @handlers.on
    async def create_intent_for_booking(event: BookingHeld, ctx: EventContext) -> None:
        await create_for(ctx, source_type="booking", source_id=event.booking_id, merchant_id=event.merchant_id,
                         amount=event.amount, methods=list(event.payment_method_types), expires_at=event.expires_at,
                         commune_code=event.commune_code, sector=None)

    async def close(ctx: EventContext, source_key: str, reason: str, refund_amount: int) -> None:
        intent = await ctx.tx.db[store.INTENTS].find_one({"source_key": source_key}, session=ctx.tx.session)
        if intent is None:
            log.info("nothing_to_close", source=source_key)
            return
        if intent["status"] in domain.CANCELABLE_STATES:
            await store.cancel_intent(ctx.tx, intent, reason, providers)
        elif intent["status"] == domain.SUCCEEDED and refund_amount > 0:
            remaining = intent["amount_received"] - intent["amount_refunded"]
            if remaining <= 0:
                return
            # The refund worker sends it to VNPay; keyed by the order/booking so it is reserved only once.
            await store.reserve_refund(ctx.tx, intent, amount=min(refund_amount, remaining),
                                       reason="requested_by_customer", metadata={"reason": reason},
                                       source_key=f"cancel:{source_key}")

    @handlers.on
    async def cancel_for_order(event: OrderCancelled, ctx: EventContext) -> None:
        await close(ctx, f"order:{event.order_id}", "requested_by_customer", event.refund_amount)

    @handlers.on
    async def cancel_for_expired_booking(event: BookingExpired, ctx: EventContext) -> None:
        await close(ctx, f"booking:{event.booking_id}", "abandoned", 0)

    @handlers.on
    async def refund_cancelled_booking(event: BookingCancelled, ctx: EventContext) -> None:
        await close(ctx, f"booking:{event.booking_id}", "requested_by_customer", event.refund_amount)

    return handlers

