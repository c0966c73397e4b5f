"""Microseconds per message of the HTTP/1.1 parsers (clbproxy.http.parsing), per back end.

A typical keep-alive GET (about 300 bytes, 8 fields) and a ``200`` response
with Content-Length, each fed whole to a parser that lives as long as the
connection would; and, for scale, httptools alone parsing the same request
with a bare handler (what the ``calib-http`` proxy does).  Run::

    python bench/parsers.py            # both back ends available here
    pypy3 bench/parsers.py             # h11 under PyPy
"""

from __future__ import annotations

import sys
import timeit

from clbproxy.http.parsers import available, request_parser, response_parser
from clbproxy.http.server import HTTPLimits

REQUEST = (
    b"GET /api/v1/items?id=42&sort=asc HTTP/1.1\r\n"
    b"Host: www.example.test\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n"
    b"Accept: text/html,application/json;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=abcdef0123456789\r\n"
    b"X-Request-Id: 0123456789abcdef\r\n\r\n"
)

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: backend\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 100\r\n\r\n" + b"x" * 100
)


class _Handler:
    def __init__(self) -> None:
        self.parser = None

    def request_head(self, head) -> None:
        pass

    def response_head(self, head) -> None:
        pass

    def interim(self, status, headers) -> None:
        pass

    def body_data(self, data) -> None:
        pass

    def message_complete(self, trailers) -> None:
        pass

    def parse_error(self, status, detail) -> None:
        raise AssertionError(detail)


def per_message(run, number: int) -> float:
    """The best of many short runs: on a shared machine the long ones all include others' load."""
    return min(timeit.repeat(run, number=number, repeat=40)) / number * 1e6


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{len(REQUEST)}-byte GET, {len(RESPONSE)}-byte response; us per message")
    for backend in available():
        handler = _Handler()
        requests = request_parser(handler, HTTPLimits(), backend=backend)
        responses = response_parser(handler, backend=backend)

        def request(requests=requests) -> None:
            requests.feed(REQUEST)
            requests.resume()

        def response(responses=responses) -> None:
            responses.feed(RESPONSE)
            responses.next_response(b"GET")

        print(f"{backend:10} request {per_message(request, number):6.2f}", end="")
        print(f"   response {per_message(response, number):6.2f}")
    try:
        import httptools
    except ImportError:
        return

    class Bare:
        def on_url(self, url):
            self.url = url

        def on_header(self, name, value):
            self.fields.append((name, value))

        def on_message_complete(self):
            pass

    bare = Bare()
    parser = httptools.HttpRequestParser(bare)

    def alone() -> None:
        bare.fields = []
        parser.feed_data(REQUEST)

    print(f"{'bare llhttp':10} request {per_message(alone, number):6.2f}")


if __name__ == "__main__":
    main()
