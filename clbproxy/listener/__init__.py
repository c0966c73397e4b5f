"""Listeners: the endpoint service, the HTTP channel with its timeouts, and the
per-connection limits and admission (allow/deny, rates).
"""
