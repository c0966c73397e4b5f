"""The HTTP client side of forwarding: the agent, endpoints and connection pool per target group.

:class:`clbproxy.http.forwarder.HTTPForwarder` sends each request with one
Twisted ``Agent`` per target group (:func:`backend_agent`) over that group's own
keep-alive :class:`BackendPool`; the agent's endpoints come from
:class:`clbproxy.net.tls_client.BackendConnector` (TCP with a connect timeout, TLS
for ``https`` groups).  What a failed attempt means is decided here too:
:data:`NOT_SENT_ERRORS` (the request never left the proxy, so it may be retried)
and :func:`describe_failure` (one log line, with Agent's wrapper exceptions
unwrapped).  Nothing here knows about routing or target groups' state.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web._newclient import RequestNotSent
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.http.trailers import TrailerClientProtocol
from clbproxy.net.tls_client import BackendConnector

#: Failures that prove the request never left the proxy, so another backend may take it.
NOT_SENT_ERRORS = (ConnectError, ConnectingCancelledError, DNSLookupError, RequestNotSent)

#: Builds the agent of one target group: ``agent_factory(reactor, pool, group)``.
AgentFactory = Callable[[Any, HTTPConnectionPool, TargetGroupConfig], IAgent]


class _QuietClientFactory(_HTTP11ClientFactory):
    """Backend connections that carry trailers; quiet, as one factory per connection
    would flood the log with "Starting factory" lines."""

    noisy = False

    def buildProtocol(self, addr) -> TrailerClientProtocol:
        return TrailerClientProtocol(self._quiescentCallback)


class BackendPool(HTTPConnectionPool):
    """One target group's idle keep-alive connections to its backends.

    Each group has its own pool, so a connection is only reused for the TLS
    settings (``verify``, ``ca_file``, ``server_name``) it was opened and checked
    with; Twisted's pool keys connections by scheme, host and port only.  At
    most ``http_pool_max_idle`` connections per backend are kept idle (0: none,
    every request has its own connection), each for ``http_pool_idle_timeout``
    seconds.  A retired pool (its group's settings changed, or the listener
    stopped) closes every connection as soon as it is idle.
    """

    _factory = _QuietClientFactory

    def __init__(self, reactor, group: TargetGroupConfig) -> None:
        super().__init__(reactor, persistent=group.http_pool_max_idle > 0)
        self.maxPersistentPerHost = group.http_pool_max_idle
        self.cachedConnectionTimeout = group.http_pool_idle_timeout
        self._retired = False

    def retire(self) -> Deferred:
        """Keep no connection from now on; fires once the idle ones are closed."""
        self._retired = True
        return self.closeCachedConnections()

    def _putConnection(self, key, connection) -> None:
        # Twisted calls this when a request on ``connection`` is done and it may be reused.
        if self._retired:
            connection.transport.loseConnection()
            return
        super()._putConnection(key, connection)


def pool_settings(group: TargetGroupConfig) -> tuple:
    """What a group's pooled connections depend on: a change needs a new pool."""
    return (
        group.tls,
        group.verify,
        group.ca_file,
        group.server_name,
        group.http_pool_max_idle,
        group.http_pool_idle_timeout,
    )


@implementer(IAgentEndpointFactory)
class _BackendEndpointFactory:
    """Endpoints to one target group's backends: TCP with a connect timeout, TLS for https.

    Twisted's ``URI`` keeps the brackets of an IPv6 literal in ``host``, which
    the standard endpoint factory would try to resolve as a name.
    """

    def __init__(self, reactor, group: TargetGroupConfig, connector=None) -> None:
        self._group = group
        self._connector = connector if connector is not None else BackendConnector(reactor)

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return self._connector.endpoint(BackendConfig(host, uri.port), self._group)


class ExactTargetAgent(Agent):
    """An ``Agent`` that sends the request target exactly as it stands in the URL.

    ``Agent.request`` re-parses the URL and rebuilds the target from its parts,
    which drops an empty trailing ``;`` (``/exact;`` becomes ``/exact``) and a
    fragment: a request routed as one path would reach the backend as another.
    Here everything after ``scheme://authority`` goes on the request line as
    it is, so the backend receives the bytes the router matched.  (Twisted's
    ``_requestWithEndpoint`` is private; tests pin its use.)
    """

    def request(self, method, uri, headers=None, bodyProducer=None):
        parsed = URI.fromBytes(uri)
        try:
            endpoint = self._getEndpoint(parsed)
        except SchemeNotSupported:
            return fail()
        target = uri[len(parsed.scheme) + 3 + len(parsed.netloc) :] or b"/"
        key = (parsed.scheme, parsed.host, parsed.port)
        return self._requestWithEndpoint(
            key, endpoint, method, parsed, headers, bodyProducer, target
        )


def backend_agent(
    reactor, pool: HTTPConnectionPool, group: TargetGroupConfig, connector=None
) -> IAgent:
    """The ``Agent`` that sends requests to ``group``'s backends through ``pool``."""
    return ExactTargetAgent.usingEndpointFactory(
        reactor, _BackendEndpointFactory(reactor, group, connector), pool=pool
    )


def caused_by(failure: Failure, error_type: type) -> bool:
    """True when ``failure`` or a reason wrapped in it (Agent's wrappers) is ``error_type``."""
    if failure.check(error_type):
        return True
    return any(caused_by(reason, error_type) for reason in getattr(failure.value, "reasons", ()))


def describe_failure(failure: Failure) -> str:
    """One line saying why a backend exchange failed, unwrapping Agent's wrapper exceptions."""
    error = failure.value
    inner = getattr(error, "reasons", None)
    if isinstance(error, (ResponseFailed, RequestTransmissionFailed)) and inner:
        causes = "; ".join(describe_failure(reason) for reason in inner)
        return f"{type(error).__name__}: {causes}"
    message = failure.getErrorMessage()
    name = type(error).__name__
    return f"{name}: {message}" if message and message != name else name
