"""An Autobahn WebSocket echo server: the backend behind clbproxy in the ``fuzzingclient`` run.

It is configured like Autobahn's own testee server (``wstest/testee_server_tx.py`` in
autobahn-python), so that a run straight against it (``run.py --direct``) is all green and
any non-pass through the proxy is the proxy's doing:

- every message is echoed whole (``onMessage`` -> ``sendMessage``), same type;
- ``failByDrop=False``: close with a close frame on protocol errors instead of dropping TCP,
  as RFC 6455 prefers and the testsuite expects;
- incoming UTF-8 is validated (Autobahn's default), no frame or message size limit;
- every ``permessage-deflate`` offer is accepted as offered, so cases 12.* and 13.* run
  compressed.

Usage: ``python echo_server.py --port 9001`` (listens on 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import sys

import txaio

txaio.use_twisted()

import autobahn.twisted  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (  # noqa: E402
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import defer, endpoints, task  # noqa: E402


class EchoServerProtocol(WebSocketServerProtocol):
    """Sends every received message back unchanged."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def accept_deflate(offers):
    """Accept the client's first ``permessage-deflate`` offer with its own parameters."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def make_factory() -> WebSocketServerFactory:
    """The echo server's factory, with the testee options described in the module docstring."""
    factory = WebSocketServerFactory(server=autobahn.twisted.__ident__)
    factory.protocol = EchoServerProtocol
    factory.setProtocolOptions(
        failByDrop=False,
        maxFramePayloadSize=0,
        maxMessagePayloadSize=0,
        perMessageCompressionAccept=accept_deflate,
    )
    return factory


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--loglevel", default="info", help="txaio log level (default: info)")
    return parser.parse_args(argv)


def main(reactor, argv: list[str]) -> defer.Deferred:
    """Listen until the process is terminated."""
    options = parse_args(argv)
    txaio.start_logging(level=options.loglevel)
    endpoint = endpoints.serverFromString(reactor, f"tcp:{options.port}:interface=127.0.0.1")
    listening = endpoint.listen(make_factory())
    return listening.addCallback(lambda _port: defer.Deferred())


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
