"""Forwarding rules: the router that picks a rule by Host and path, and the
rule actions (rewrite, header changes, redirects).
"""
