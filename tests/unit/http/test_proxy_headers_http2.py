"""Trailers for HTTP/2 clients: asked of the backend with ``TE``, carried whatever the length."""

from __future__ import annotations

import attrs
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.proxy_headers import backend_request_fields, response_carries_trailers


@attrs.define
class Response:
    """What :func:`response_carries_trailers` reads of a backend's response head."""

    status: int = 200
    content_length: object = 10


@attrs.define
class Address:
    host: str = "192.0.2.7"
    port: int = 443


class Transport:
    """A client connection without a certificate."""


@attrs.define
class Channel:
    transport: Transport = attrs.Factory(Transport)


@attrs.define
class Request:
    clientproto: bytes = b"HTTP/2.0"
    method: bytes = b"GET"
    requestHeaders: Headers = attrs.Factory(Headers)
    channel: Channel = attrs.Factory(Channel)

    def getClientAddress(self) -> Address:
        return Address()

    def getHost(self) -> Address:
        return Address("127.0.0.1")


class ResponseTrailerTests(unittest.TestCase):
    def test_an_http2_response_carries_trailers_with_or_without_a_length(self) -> None:
        self.assertEqual(
            [
                response_carries_trailers(Response(content_length=10), Request()),
                response_carries_trailers(Response(content_length=None), Request()),
            ],
            [True, True],
        )

    def test_head_and_bodyless_responses_carry_none(self) -> None:
        self.assertEqual(
            [
                response_carries_trailers(Response(), Request(method=b"HEAD")),
                response_carries_trailers(Response(status=204), Request()),
                response_carries_trailers(Response(status=304), Request()),
            ],
            [False, False, False],
        )

    def test_http11_still_needs_a_chunked_response(self) -> None:
        http11 = Request(clientproto=b"HTTP/1.1")
        self.assertEqual(
            [
                response_carries_trailers(Response(content_length=10), http11),
                response_carries_trailers(Response(content_length=None), http11),
            ],
            [False, True],
        )

    def test_an_http2_client_accepting_trailers_has_the_backend_asked_for_them(self) -> None:
        request = Request(requestHeaders=Headers({b"te": [b"trailers"], b"host": [b"a"]}))
        fields = backend_request_fields(
            request, scheme="https", trusted=TrustedProxies.from_cidrs(())
        )
        self.assertEqual(fields[b"TE"], [b"trailers"])
