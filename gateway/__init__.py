"""The API gateway: one origin for every client — routing, identity, rate limits, one OpenAPI, web pages."""
