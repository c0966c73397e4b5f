"""Helpers shared by every test tier: request heads, WebSocket clients, TLS fixtures.

One copy of each: a tier that needs a variant passes arguments rather than
keeping its own.
"""
