"""The official Stripe SDK against the running service (through the gateway): the merchant's integration."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import stripe


def client_for(api_url: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": api_url}, max_network_retries=0)


async def test_create_retrieve_update_cancel(api_url, merchant):
    sdk = client_for(api_url, merchant.secret_key)
    intent = await asyncio.to_thread(sdk.v1.payment_intents.create, params={
        "amount": 150000, "currency": "vnd", "payment_method_types": ["vnpay", "vietqr"],
        "metadata": {"order_id": "ord_SDK1"}, "description": "Vé tham quan Phong Nha"})
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.id.startswith("pi_") and intent.object == "payment_intent"
    assert intent.amount == 150000 and intent.currency == "vnd" and intent.livemode is False
    assert intent.status == "requires_action" and intent.metadata["order_id"] == "ord_SDK1"
    assert intent.next_action.type == "redirect_to_url"
    assert "vnp_SecureHash=" in intent.next_action.redirect_to_url.url
    qr = intent.next_action["vietqr_display_qr_code"]
    assert qr["data"].startswith("000201010212") and qr["image_url_png"].endswith(intent.client_secret)

    fetched = await asyncio.to_thread(sdk.v1.payment_intents.retrieve, intent.id)
    assert fetched.id == intent.id and fetched.amount == 150000
    updated = await asyncio.to_thread(sdk.v1.payment_intents.update, intent.id,
                                      params={"metadata": {"note": "bàn 4", "order_id": ""}})
    assert updated.metadata.to_dict() == {"note": "bàn 4"}

    canceled = await asyncio.to_thread(sdk.v1.payment_intents.cancel, intent.id,
                                       params={"cancellation_reason": "requested_by_customer"})
    assert canceled.status == "canceled" and canceled.cancellation_reason == "requested_by_customer"
    with pytest.raises(stripe.InvalidRequestError) as again:
        await asyncio.to_thread(sdk.v1.payment_intents.cancel, intent.id)
    assert again.value.code == "payment_intent_unexpected_state"


async def test_list_with_pagination(api_url, merchant):
    sdk = client_for(api_url, merchant.secret_key)
    created = []
    for amount in range(10000, 17000, 1000):
        intent = await asyncio.to_thread(sdk.v1.payment_intents.create,
                                         params={"amount": amount, "currency": "vnd"})
        created.append(intent.id)
    first = await asyncio.to_thread(sdk.v1.payment_intents.list, params={"limit": 3})
    assert first.object == "list" and first.has_more is True and len(first.data) == 3
    assert [i.id for i in first.data] == list(reversed(created))[:3]  # newest first
    everything = await asyncio.to_thread(lambda: [i.id for i in first.auto_paging_iter()])
    assert everything == list(reversed(created))
    before = await asyncio.to_thread(sdk.v1.payment_intents.list,
                                     params={"limit": 2, "ending_before": created[2]})
    assert [i.id for i in before.data] == [created[4], created[3]]


async def test_idempotent_retry_returns_the_first_answer(api_url, merchant):
    sdk = client_for(api_url, merchant.secret_key)
    key = str(uuid.uuid4())
    params = {"amount": 99000, "currency": "vnd", "metadata": {"cart": "42"}}
    first = await asyncio.to_thread(sdk.v1.payment_intents.create, params=params, options={"idempotency_key": key})
    second = await asyncio.to_thread(sdk.v1.payment_intents.create, params=params, options={"idempotency_key": key})
    assert first.id == second.id
    listed = await asyncio.to_thread(sdk.v1.payment_intents.list, params={"limit": 100})
    assert [i.id for i in listed.data].count(first.id) == 1 and len(listed.data) == 1
    with pytest.raises(stripe.IdempotencyError):
        await asyncio.to_thread(sdk.v1.payment_intents.create, params={**params, "amount": 98000},
                                options={"idempotency_key": key})


async def test_errors_name_the_parameter(api_url, merchant):
    sdk = client_for(api_url, merchant.secret_key)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await asyncio.to_thread(sdk.v1.payment_intents.create, params={"currency": "vnd"})
    assert missing.value.param == "amount" and missing.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as currency:
        await asyncio.to_thread(sdk.v1.payment_intents.create, params={"amount": 1000, "currency": "usd"})
    assert currency.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as small:
        await asyncio.to_thread(sdk.v1.payment_intents.create, params={"amount": 0, "currency": "vnd"})
    assert small.value.code == "amount_too_small"
    with pytest.raises(stripe.InvalidRequestError) as method:
        await asyncio.to_thread(sdk.v1.payment_intents.create,
                                params={"amount": 1000, "currency": "vnd", "payment_method_types": ["card"]})
    assert method.value.param == "payment_method_types"
    with pytest.raises(stripe.InvalidRequestError) as meta:
        await asyncio.to_thread(sdk.v1.payment_intents.create,
                                params={"amount": 1000, "currency": "vnd", "metadata": {"k" * 41: "v"}})
    assert meta.value.param.startswith("metadata")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await asyncio.to_thread(sdk.v1.payment_intents.retrieve, "pi_DOESNOTEXIST")
    assert unknown.value.http_status == 404
    with pytest.raises(stripe.AuthenticationError):
        await asyncio.to_thread(client_for(api_url, "sk_test_" + "x" * 43).v1.payment_intents.list)
    listed = await asyncio.to_thread(sdk.v1.payment_intents.list)
    assert listed.data == []  # nothing was written by the refused requests


async def test_form_bodies_with_bracket_keys_and_json(service_url, merchant):
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers) as http:
        form = await http.post("/v1/payment_intents", content=(
            "amount=25000&currency=VND&payment_method_types[]=vietqr&metadata[order_id]=ord_F1"
            "&metadata[ghi_chu]=c%C3%A0+ph%C3%AA"), headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 200, form.text
        body = form.json()
        assert body["payment_method_types"] == ["vietqr"]
        assert body["metadata"] == {"order_id": "ord_F1", "ghi_chu": "cà phê"}
        assert body["next_action"]["type"] == "vietqr_display_qr_code"
        as_json = await http.post("/v1/payment_intents", json={"amount": 25000, "currency": "vnd",
                                                                "payment_method_types": ["vnpay"]})
        assert as_json.status_code == 200 and as_json.json()["next_action"]["type"] == "redirect_to_url"
        bad = await http.post("/v1/payment_intents", content="amount=abc&currency=vnd",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
        typo = await http.post("/v1/payment_intents", json={"amount": 1000, "currency": "vnd", "amout": 1})
        assert typo.status_code == 400 and typo.json()["error"]["param"] == "amout"
