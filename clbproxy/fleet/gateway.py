"""etcd's v3 JSON gateway over treq: calls that answer once, and watches that stream.

A :class:`Gateway` knows the cluster's endpoints and which one it uses; a call
that fails (no connection, a timeout, an HTTP or etcd error) is tried on the
next endpoint, each endpoint once, and the one that answered becomes current.
A watch runs on the current endpoint through its own streaming protocol
(:class:`WatchBody`), because cancelling ``treq.collect`` leaves the HTTP
connection open: ``Watch.cancel()`` stops the transport itself, so no watch
connection is left behind on etcd.  Connections are not pooled (a pool would
keep the cut ones).

With a user (:class:`~clbproxy.fleet.access.Access`) every request carries a
token; etcd's "invalid auth token" (an expired token, a restarted member) makes
the gateway authenticate again and retry once, for calls and watches alike, so
the configuration in use is never dropped for it.  ``https://`` endpoints use
the access's CA bundle and client certificate.
"""

from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import treq
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

from clbproxy.fleet import messages
from clbproxy.fleet.access import Access, is_invalid_token, tls_policy
from clbproxy.fleet.messages import GatewayError, WatchResponse
from clbproxy.fleet.stream import WatchStream

log = Logger()

#: The header that makes a watch end when its member has no leader (about 4 s after).
HAS_LEADER = {"Grpc-Metadata-hasleader": ["true"], "Content-Type": ["application/json"]}
JSON = {"Content-Type": ["application/json"]}


class InvalidToken(GatewayError):
    """etcd did not accept the token (expired, or its member restarted)."""


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False


class _QuietPool(HTTPConnectionPool):
    """A pool whose connections do not log "Starting factory" (presence writes every 5 s)."""

    _factory = _QuietFactory


class WatchBody(Protocol):
    """Reads a watch's body: each decoded line goes to ``on_response``; ``ended`` fires
    (with the reason, a string) when the body ends, whoever ended it."""

    def __init__(self, on_response: Callable[[WatchResponse], None]) -> None:
        self.on_response = on_response
        self.stream = WatchStream()
        self.ended: defer.Deferred = defer.Deferred()
        self.stopped = False

    def dataReceived(self, data: bytes) -> None:
        for response in self.stream.feed(data):
            if not self.stopped:
                self.on_response(response)

    def connectionLost(self, reason: Failure = None) -> None:
        for response in self.stream.end():
            if not self.stopped:
                self.on_response(response)
        if not self.ended.called:
            self.ended.callback(reason.getErrorMessage() if reason is not None else "ended")

    def stop(self) -> None:
        """Cut the connection (the gateway would keep a cancelled watch open)."""
        self.stopped = True
        if self.transport is not None:
            self.transport.stopProducing()


class Watch:
    """A running watch: ``ended`` fires with a one-line reason once its stream is over."""

    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()
        self.body: Optional[WatchBody] = None
        self._request: Optional[defer.Deferred] = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.body is not None:
            self.body.stop()
        elif self._request is not None and not self._request.called:
            self._request.cancel()

    def _end(self, reason: str) -> None:
        if not self.ended.called:
            self.ended.callback(reason)


class Gateway:
    """Calls etcd's JSON gateway at ``endpoints`` (``http://host:2379``), one at a time."""

    def __init__(
        self,
        reactor,
        endpoints: Sequence[str],
        *,
        timeout: float = 3.0,
        client: Optional[treq.client.HTTPClient] = None,
        access: Optional[Access] = None,
    ) -> None:
        self.reactor = reactor
        self.endpoints = list(endpoints)
        self.index = 0
        self.timeout = timeout
        self.access = access or Access()
        #: The current token (None: not authenticated yet, or no user).
        self.token: Optional[str] = None
        #: Tokens obtained so far (the first and each renewal).
        self.authentications = 0
        self._waiting: list[defer.Deferred] = []
        self._pool = _QuietPool(reactor, persistent=False)
        self._client = client or treq.client.HTTPClient(
            Agent(reactor, contextFactory=tls_policy(self.access), pool=self._pool)
        )

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    def rotate(self) -> str:
        """Use the next endpoint (after a watch on this one failed)."""
        self.index = (self.index + 1) % len(self.endpoints)
        return self.endpoint

    @defer.inlineCallbacks
    def call(
        self,
        path: str,
        body: dict,
        timeout: Optional[float] = None,
        endpoint: Optional[str] = None,
    ):
        """POST ``body`` to ``path`` on the current endpoint, else on each other once;
        with ``endpoint``, on that one only."""
        if endpoint is not None:
            answer = yield self._post(endpoint, path, body, timeout or self.timeout)
            return answer
        errors = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                answer = yield self._post(endpoint, path, body, timeout or self.timeout)
            except Exception as error:  # every failure of one endpoint: try the next
                errors.append(f"{endpoint}: {_describe(error)}")
                self.rotate()
                continue
            return answer
        raise GatewayError("; ".join(errors))

    @defer.inlineCallbacks
    def _post(self, endpoint: str, path: str, body: dict, timeout: float):
        if self.access.authenticates and self.token is None:
            yield self.authenticate(endpoint, timeout)
        try:
            data = yield self._post_once(endpoint, path, body, timeout)
        except InvalidToken:
            if not self.access.authenticates:
                raise
            yield self.authenticate(endpoint, timeout, renew=True)
            data = yield self._post_once(endpoint, path, body, timeout)
        return data

    def _headers(self, base: dict) -> dict:
        if self.token is None:
            return base
        return {**base, "Authorization": [self.token]}

    @defer.inlineCallbacks
    def _post_once(self, endpoint: str, path: str, body: dict, timeout: float, token: bool = True):
        response = yield self._client.post(
            endpoint + path,
            data=json.dumps(body).encode(),
            headers=self._headers(JSON) if token else JSON,
            timeout=timeout,
        )
        text = yield response.content()
        try:
            data = json.loads(text)
        except ValueError:
            raise GatewayError(f"HTTP {response.code}: not JSON") from None
        problem = messages.error_text(data)
        if is_invalid_token(problem):
            raise InvalidToken(f"HTTP {response.code}: {problem}")
        if response.code != 200 or problem is not None:
            raise GatewayError(f"HTTP {response.code}: {problem or 'error'}")
        return data

    def authenticate(
        self, endpoint: Optional[str] = None, timeout: Optional[float] = None, renew: bool = False
    ) -> defer.Deferred:
        """Get a token for the access's user; callers meanwhile share the one request
        (``renew``: the current token was refused)."""
        waiter: defer.Deferred = defer.Deferred()
        self._waiting.append(waiter)
        if len(self._waiting) > 1:
            return waiter
        if renew:
            log.info("fleet: etcd refused the auth token; authenticating again")
        d = self._post_once(
            endpoint or self.endpoint,
            "/v3/auth/authenticate",
            self.access.authenticate_request(),
            timeout or self.timeout,
            token=False,
        )

        def got(data: dict) -> None:
            token = data.get("token")
            if not isinstance(token, str) or not token:
                raise GatewayError("etcd: the authenticate answer has no token")
            self.token = token
            self.authentications += 1

        def done(result) -> None:
            waiting, self._waiting = self._waiting, []
            for each in waiting:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(None)

        d.addCallback(got)
        d.addBoth(done)
        return waiter

    def range(
        self,
        key: bytes,
        range_end: Optional[bytes] = None,
        timeout: Optional[float] = None,
        endpoint: Optional[str] = None,
    ) -> defer.Deferred:
        d = self.call("/v3/kv/range", messages.range_request(key, range_end), timeout, endpoint)
        d.addCallback(messages.range_result)
        return d

    def put(self, key: bytes, value: bytes, lease: int = 0) -> defer.Deferred:
        return self.call("/v3/kv/put", messages.put_request(key, value, lease))

    def txn(self, request: dict) -> defer.Deferred:
        d = self.call("/v3/kv/txn", request)
        d.addCallback(messages.txn_succeeded)
        return d

    def grant(self, ttl: int) -> defer.Deferred:
        d = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        d.addCallback(messages.lease_id)
        return d

    def keepalive(self, lease: int) -> defer.Deferred:
        d = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        d.addCallback(messages.keepalive_ttl)
        return d

    def watch(
        self,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        on_response: Callable[[WatchResponse], None],
    ) -> Watch:
        """Watch ``[key, range_end)`` from ``start_revision`` on the current endpoint."""
        watch = Watch()
        self._watch(watch, key, range_end, start_revision, on_response, renewed=False)
        return watch

    def _watch(self, watch: Watch, key, range_end, start_revision, on_response, renewed: bool):
        """One watch request for ``watch``; a refused token renews it and asks once more."""
        endpoint = self.endpoint
        if self.access.authenticates and self.token is None and not renewed:
            d = self.authenticate(endpoint)
            _then(
                watch,
                d,
                lambda: self._watch(watch, key, range_end, start_revision, on_response, True),
            )
            return
        body = json.dumps(messages.watch_request(key, range_end, start_revision)).encode()
        d = self._client.post(
            endpoint + "/v3/watch",
            data=body,
            headers=self._headers(HAS_LEADER),
            timeout=self.timeout,
            unbuffered=True,
        )
        watch._request = d

        def renew() -> None:
            watch.body = None
            d = self.authenticate(endpoint, renew=True)
            _then(
                watch,
                d,
                lambda: self._watch(watch, key, range_end, start_revision, on_response, True),
            )

        def filtered(response: WatchResponse) -> None:
            refused = response.error if response.error is not None else response.cancel_reason
            if (
                self.access.authenticates
                and not renewed
                and (response.canceled or response.error is not None)
                and is_invalid_token(refused)
            ):
                # The stream stays open after the refusal: cut it, then ask again.
                reader.stop()
                renew()
                return
            on_response(response)

        def answered(response):
            if response.code != 200:
                # Read the refusal so the connection ends, then report it.
                done = response.content()
                if response.code == 401 and self.access.authenticates and not renewed:
                    done.addBoth(lambda _: renew())
                else:
                    done.addBoth(lambda _: watch._end(f"HTTP {response.code}"))
                return
            nonlocal reader
            reader = WatchBody(filtered)
            watch.body = reader
            if watch.cancelled:
                reader.stopped = True
            response.deliverBody(reader)
            if watch.cancelled:
                reader.stop()
            reader.ended.addCallback(ended, reader)

        def ended(reason: str, body: WatchBody) -> None:
            if body.stopped and not watch.cancelled:
                return  # cut for a new token: the next request carries on
            watch._end(reason)

        def failed(failure: Failure) -> None:
            watch._end(_describe(failure.value))

        reader: Optional[WatchBody] = None
        d.addCallbacks(answered, failed)

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()


def _then(watch: Watch, token: defer.Deferred, again: Callable[[], None]) -> None:
    """Once ``token`` (an authentication) fires, ``again()``; its failure ends ``watch``."""
    watch._request = token

    def authenticated(_) -> None:
        if watch.cancelled:
            watch._end("cancelled")
        else:
            again()

    token.addCallbacks(authenticated, lambda failure: watch._end(_describe(failure.value)))


def _describe(error: BaseException) -> str:
    if isinstance(error, defer.CancelledError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__
