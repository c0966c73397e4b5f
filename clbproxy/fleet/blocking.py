"""etcd's JSON gateway without a reactor: for start-up and the ``clbproxy fleet`` commands.

``twistd clbproxy`` must know its configuration before the reactor runs (it
binds its sockets before dropping privileges), and the ``clbproxy`` command
runs no reactor at all; both make a handful of calls, so a blocking client is
the simple thing.  It speaks the same messages as :class:`clbproxy.fleet.gateway.Gateway`
and fails over the same way: each endpoint once per call; it authenticates and
renews a refused token the same way too (:mod:`clbproxy.fleet.access`).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Optional, Sequence

from clbproxy.fleet import messages
from clbproxy.fleet.access import Access, is_invalid_token, ssl_context
from clbproxy.fleet.messages import GatewayError, RangeResult


class BlockingGateway:
    """Blocking calls to the gateways at ``endpoints``, ``timeout`` seconds each."""

    def __init__(
        self, endpoints: Sequence[str], timeout: float = 3.0, access: Optional[Access] = None
    ) -> None:
        self.endpoints = list(endpoints)
        self.index = 0
        self.timeout = timeout
        self.access = access or Access()
        self.token: Optional[str] = None
        self._context: Optional[ssl.SSLContext] = None
        if any(url.startswith("https://") for url in self.endpoints):
            self._context = ssl_context(self.access)

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    def call(self, path: str, body: dict, timeout: Optional[float] = None) -> dict:
        errors = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                return self._post(endpoint, path, body, timeout or self.timeout)
            except (OSError, GatewayError, ValueError) as error:
                errors.append(f"{endpoint}: {_describe(error)}")
                self.index = (self.index + 1) % len(self.endpoints)
        raise GatewayError("; ".join(errors))

    def _post(self, endpoint: str, path: str, body: dict, timeout: float) -> dict:
        if not self.access.authenticates:
            return self._post_once(endpoint, path, body, timeout)
        if self.token is None:
            self._authenticate(endpoint, timeout)
        try:
            return self._post_once(endpoint, path, body, timeout)
        except GatewayError as error:
            if not is_invalid_token(str(error)):
                raise
        self._authenticate(endpoint, timeout)
        return self._post_once(endpoint, path, body, timeout)

    def _authenticate(self, endpoint: str, timeout: float) -> None:
        self.token = None
        answer = self._post_once(
            endpoint, "/v3/auth/authenticate", self.access.authenticate_request(), timeout
        )
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise GatewayError("etcd: the authenticate answer has no token")
        self.token = token

    def _post_once(self, endpoint: str, path: str, body: dict, timeout: float) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = self.token
        request = urllib.request.Request(
            endpoint + path, data=json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(
                request, timeout=timeout, context=self._context
            ) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                problem = messages.error_text(json.loads(error.read()))
            except ValueError:
                problem = None
            raise GatewayError(f"HTTP {error.code}: {problem or error.reason}") from None
        problem = messages.error_text(data)
        if problem is not None:
            raise GatewayError(problem)
        return data

    def range(self, key: bytes, range_end: Optional[bytes] = None) -> RangeResult:
        return messages.range_result(
            self.call("/v3/kv/range", messages.range_request(key, range_end))
        )

    def txn(self, request: dict) -> tuple[bool, int]:
        return messages.txn_succeeded(self.call("/v3/kv/txn", request))


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error).splitlines()[0] if str(error) else type(error).__name__
