"""A listener's settings as the traffic it routes reads them: one record per listener.

Built once per listener (and again on a reload) from its configuration, and
handed with every routed request and upgrade to the HTTP forwarder and the
WebSocket relay.  It lives with routing, below both of them and below the
listener that builds it, so each can import it without reaching up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import attrs

from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.request_id import OFF, RequestIds
from clbproxy.routing.router import Router

if TYPE_CHECKING:
    from clbproxy.upstream.balancer import TargetGroup


@attrs.frozen
class ListenerSettings:
    """What a listener's traffic needs to know, taken from its configuration."""

    listener: ListenerConfig
    router: Router
    groups: dict
    scheme: str = "http"
    trusted: TrustedProxies = TrustedProxies()
    #: Who names requests and sessions (``request_id_header``, ``request_id_from``).
    request_ids: RequestIds = OFF
    #: The listener's ``trace``: replace missing or invalid ``traceparent`` headers.
    trace: bool = False

    @classmethod
    def from_config(
        cls, listener: ListenerConfig, groups: Mapping[str, TargetGroup]
    ) -> ListenerSettings:
        trusted = TrustedProxies.from_cidrs(listener.trusted_proxies)
        return cls(
            listener=listener,
            router=Router(listener.rules, listener.default_domain),
            groups=groups,
            scheme="https" if listener.protocol == "https" else "http",
            trusted=trusted,
            request_ids=request_ids(listener, trusted),
            trace=listener.trace,
        )

    def allowed_origins(self, rule: RuleConfig) -> tuple[str, ...]:
        """The origins a WebSocket upgrade on ``rule`` may come from (empty: any)."""
        if rule.allowed_origins is not None:
            return rule.allowed_origins
        return self.listener.allowed_origins

    def max_message_size(self, rule: RuleConfig) -> int:
        """The largest WebSocket message ``rule`` relays."""
        if rule.max_message_size is not None:
            return rule.max_message_size
        return self.listener.max_message_size

    def rate_limits(self, rule: RuleConfig) -> tuple[float, int, int, int, str]:
        """``(message rate, message burst, byte rate, byte burst, action)`` for ``rule``.

        Each from the rule when it sets it, else from the listener; 0: no limit
        (a burst of 0 is one second's worth of the rate).
        """
        listener = self.listener

        def pick(name: str):
            value = getattr(rule, name)
            return getattr(listener, name) if value is None else value

        return (
            pick("websocket_message_rate"),
            pick("websocket_message_burst"),
            pick("websocket_byte_rate"),
            pick("websocket_byte_burst"),
            pick("websocket_rate_action"),
        )


def request_ids(listener: ListenerConfig, trusted: TrustedProxies) -> RequestIds:
    """The request-ID policy of ``listener`` (``trusted`` is its ``trusted_proxies``)."""
    if not listener.request_id_header:
        return OFF
    return RequestIds(listener.request_id_header, listener.request_id_from, trusted)
