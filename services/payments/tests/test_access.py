"""Who may do what: merchants see only their own objects, admins all, other roles nothing; keys roll."""

from __future__ import annotations

import httpx


async def test_no_cross_merchant_reads_or_writes(api_url, merchant, other_merchant, issuer):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        mine = (await http.post("/v1/payment_intents", headers=merchant.key_headers,
                                json={"amount": 30000, "currency": "vnd"})).json()
        theirs = other_merchant.key_headers
        assert (await http.get(f"/v1/payment_intents/{mine['id']}", headers=theirs)).status_code == 404
        assert (await http.post(f"/v1/payment_intents/{mine['id']}/cancel", headers=theirs)).status_code == 404
        assert (await http.post(f"/v1/payment_intents/{mine['id']}", headers=theirs,
                                json={"metadata": {"x": "y"}})).status_code == 404
        assert (await http.post("/v1/refunds", headers=theirs, json={"payment_intent": mine["id"]})).status_code == 404
        assert (await http.get("/v1/payment_intents", headers=theirs)).json()["data"] == []
        their_events = (await http.get("/v1/events", headers=theirs)).json()["data"]
        assert [e["type"] for e in their_events] == ["merchant_account.activated"]  # only their own
        assert (await http.get("/v1/payment_intents", headers=theirs,
                               params={"merchant": merchant.merchant_id})).status_code == 403
        assert (await http.post("/v1/payment_intents", headers=theirs, json={
            "amount": 1000, "currency": "vnd", "merchant": merchant.merchant_id})).status_code == 403
        assert (await http.get(f"/v1/accounts/{merchant.account['id']}", headers=theirs)).status_code == 404
        # A person's merchant token works like the key, for its own merchant only.
        token = {"Authorization": f"Bearer {merchant.token}"}
        assert (await http.get(f"/v1/payment_intents/{mine['id']}", headers=token)).status_code == 200
        for role in ("shopper", "official", "operator"):
            other = {"Authorization": f"Bearer {issuer.issue('someone', role)}"}
            answer = await http.get("/v1/payment_intents", headers=other)
            assert answer.status_code == 403, role
        assert (await http.get("/v1/payment_intents")).status_code == 401
        admin = {"Authorization": f"Bearer {issuer.issue('root', 'admin')}"}
        seen = (await http.get("/v1/payment_intents", headers=admin,
                               params={"merchant": merchant.merchant_id})).json()["data"]
        assert [i["id"] for i in seen] == [mine["id"]]
        assert (await http.post("/v1/payment_intents", headers=admin,
                                json={"amount": 1000, "currency": "vnd"})).json()["error"]["param"] == "merchant"
        assert (await http.post("/v1/accounts", headers=merchant.key_headers, json={})).status_code == 403


async def test_rolling_keys_revokes_or_keeps_a_grace(service_url, merchant, issuer):
    async with httpx.AsyncClient(base_url=service_url, timeout=30) as http:
        token = {"Authorization": f"Bearer {merchant.token}"}
        old = merchant.key_headers
        graced = (await http.post("/v1/api_keys/roll", headers=token, json={"expires_in": 3600})).json()
        assert (await http.get("/v1/payment_intents", headers=old)).status_code == 200
        new = {"Authorization": f"Bearer {graced['secret']}"}
        assert (await http.get("/v1/payment_intents", headers=new)).status_code == 200
        assert (await http.post("/v1/api_keys/roll", headers=new)).status_code == 403  # a key cannot roll keys
        final = (await http.post("/v1/api_keys/roll", headers=token)).json()
        assert final["secret"].startswith("sk_test_") and len(final["secret"]) > 40
        for revoked in (old, new):
            answer = await http.get("/v1/payment_intents", headers=revoked)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
        admin = {"Authorization": f"Bearer {issuer.issue('root', 'admin')}"}
        by_admin = await http.post("/v1/api_keys/roll", headers=admin, json={"merchant_id": merchant.merchant_id})
        assert by_admin.status_code == 200 and by_admin.json()["merchant"] == merchant.merchant_id
        final = by_admin.json()
        basic = httpx.BasicAuth(final["secret"], "")
        assert (await http.get("/v1/payment_intents", auth=basic)).status_code == 200
