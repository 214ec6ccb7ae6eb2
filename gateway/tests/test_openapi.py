"""The merged OpenAPI document: built from the services' own, only routed paths, each once, names kept
apart, tolerant of a service that is down; and /docs serves the interactive page.

No `from __future__ import annotations` here: the stand-in services declare their models inside
functions, and FastAPI must resolve those annotations when the routes are made.
"""

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from deploy.processes import free_port

from gateway.openapi import merge_documents
from gateway.routing import RoutingTable
from gateway.tests.conftest import ServerThread


def payments_app() -> FastAPI:
    class Thing(BaseModel):
        amount: int

    app = FastAPI(title="payments")

    @app.get("/v1/payment_intents", response_model=list[Thing])
    async def list_intents():
        return []

    @app.post("/v1/payment_intents", response_model=Thing)
    async def create_intent(thing: Thing):
        return thing

    @app.get("/v1/payment_intents/{intent}", response_model=Thing)
    async def get_intent(intent: str):
        return Thing(amount=1)

    @app.get("/v1/listings")  # not payments' resource: must not appear as payments'
    async def stray():
        return {}

    @app.get("/internal/debug")  # not routed by the gateway at all
    async def debug():
        return {}

    return app


def merchants_app() -> FastAPI:
    class Thing(BaseModel):  # the same schema as payments': shared, not duplicated
        amount: int

    app = FastAPI(title="merchants")

    @app.get("/v1/products", response_model=Thing)
    async def products():
        return Thing(amount=1)

    return app


def tourism_app() -> FastAPI:
    class Thing(BaseModel):  # same name, different schema: must be kept apart
        name: str

    app = FastAPI(title="tourism")

    @app.get("/v1/listings", response_model=list[Thing])
    async def listings():
        return []

    @app.post("/v1/bookings", response_model=Thing)
    async def book(thing: Thing):
        return thing

    return app


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


async def test_one_document_from_the_services_own(start_gateway):
    servers = {"payments": ServerThread(payments_app()).start(), "merchants": ServerThread(merchants_app()).start(),
               "tourism": ServerThread(tourism_app()).start()}
    try:
        gw = start_gateway(payments_url=servers["payments"].url, merchants_url=servers["merchants"].url,
                           tourism_url=servers["tourism"].url, insights_url=f"http://127.0.0.1:{free_port()}",
                           openapi_cache_seconds=0)
        async with httpx.AsyncClient(base_url=gw.url) as client:
            document = (await client.get("/openapi.json")).json()
            paths = document["paths"]
            assert set(paths) == {"/healthz", "/readyz", "/v1/auth/token", "/v1/auth/me", "/v1/auth/users",
                                  "/v1/payment_intents", "/v1/payment_intents/{intent}", "/v1/products",
                                  "/v1/listings", "/v1/bookings"}
            assert set(paths["/v1/payment_intents"]) == {"get", "post"}
            assert paths["/v1/listings"]["get"]["x-upstream"] == "tourism"
            assert paths["/v1/products"]["get"]["x-upstream"] == "merchants"
            for ref in refs(document):
                assert resolve(document, ref), ref
            schemas = document["components"]["schemas"]
            assert set(schemas["Thing"]["properties"]) == {"amount"}
            assert set(schemas["TourismThing"]["properties"]) == {"name"}
            listing_schema = paths["/v1/listings"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert listing_schema["items"]["$ref"] == "#/components/schemas/TourismThing"
            product_schema = paths["/v1/products"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert product_schema["$ref"] == "#/components/schemas/Thing"
            operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
            assert len(operation_ids) == len(set(operation_ids))
            assert document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"][
                "tokenUrl"] == "/v1/auth/token"
            assert document["info"]["x-unavailable-services"] == ["insights"]

            # A service going down keeps its last known part of the document.
            servers["payments"].stop()
            again = (await client.get("/openapi.json")).json()
            assert "/v1/payment_intents/{intent}" in again["paths"]
            assert again["info"]["x-unavailable-services"] == ["insights"]

            docs = await client.get("/docs")
            assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
            assert "/openapi.json" in docs.text and "swagger" in docs.text.lower()
    finally:
        for server in servers.values():
            server.stop()


def test_a_schema_that_refers_to_a_renamed_one_is_renamed_too():
    def doc(path: str, thing: dict) -> dict:
        return {"paths": {path: {"get": {"operationId": "list", "responses": {"200": {"content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Wrapper"}}}}}}}},
                "components": {"schemas": {"Thing": thing, "Wrapper": {
                    "type": "object", "properties": {"thing": {"$ref": "#/components/schemas/Thing"}}}}}}

    own = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    merged = merge_documents(own, {"merchants": doc("/v1/products", {"type": "integer"}),
                                   "tourism": doc("/v1/listings", {"type": "string"}), "insights": None},
                             RoutingTable())
    schemas = merged["components"]["schemas"]
    assert schemas["TourismThing"] == {"type": "string"}
    assert schemas["TourismWrapper"]["properties"]["thing"]["$ref"] == "#/components/schemas/TourismThing"
    listing = merged["paths"]["/v1/listings"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == \
        "#/components/schemas/TourismWrapper"
    assert listing["operationId"] == "tourism_list"
    assert merged["info"]["x-unavailable-services"] == ["insights"]
