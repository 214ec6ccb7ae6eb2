"""Payments' HTTP routes, one module per resource."""
