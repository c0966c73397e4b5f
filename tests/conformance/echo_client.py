"""An Autobahn testee client: drives ``wstest -m fuzzingserver`` (through clbproxy) case by case.

It follows the protocol every testee client of the Autobahn testsuite speaks, as in
autobahn-python's ``wstest/testee_client_tx.py``:

1. connect to ``/getCaseCount``; the server sends the number of cases as a text message;
2. for each case N in 1..count, connect to ``/runCase?case=N&agent=AGENT`` and echo every
   message back unchanged until the server closes;
3. connect to ``/updateReports?agent=AGENT`` so the server writes ``index.json`` and the HTML
   report.

Options match Autobahn's testee (``failByDrop=False``, UTF-8 validation on, no size limits),
and it offers ``permessage-deflate`` so cases 12.* and 13.* run compressed: first an offer
that asks the server for a 2^12-byte window, then the plain default offer as a fallback.
Both accept whatever ``client_no_context_takeover`` / ``client_max_window_bits`` the server
requests, which the 13.* cases depend on.

Usage: ``python echo_client.py --url ws://127.0.0.1:9001 --agent clbproxy``.
``--update-reports-only`` skips 1 and 2: ``run.py`` uses it to save the results of a run
that ran out of time.
Exits 0 after the reports were updated, non-zero when a connection could not be made or the
server never sent the case count.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote, urlsplit

import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.websocket.compress import (  # noqa: E402
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer, endpoints, task  # noqa: E402
from twisted.logger import Logger  # noqa: E402

log = Logger()

#: permessage-deflate offers, in order of preference.
DEFLATE_OFFERS = [
    PerMessageDeflateOffer(
        accept_no_context_takeover=True,
        accept_max_window_bits=True,
        request_no_context_takeover=False,
        request_max_window_bits=12,
    ),
    PerMessageDeflateOffer(
        accept_no_context_takeover=True,
        accept_max_window_bits=True,
        request_no_context_takeover=False,
        request_max_window_bits=0,
    ),
]


def accept_deflate(response):
    """Accept the server's ``permessage-deflate`` response with the parameters it chose."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


class OneShotProtocol(WebSocketClientProtocol):
    """Tells its factory when the connection is gone; ignores messages."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        pass

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.factory.finished.callback(None)


class CaseCountProtocol(OneShotProtocol):
    """Records the case count the fuzzing server sends on ``/getCaseCount``."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.case_count = int(payload)


class EchoClientProtocol(OneShotProtocol):
    """Sends every received message back unchanged."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class OneShotFactory(WebSocketClientFactory):
    """A factory for one connection; ``finished`` fires when its TCP connection is gone."""

    def __init__(self, url: str, agent: str, protocol: type[WebSocketClientProtocol]) -> None:
        super().__init__(url, useragent=agent)
        self.protocol = protocol
        self.case_count: int | None = None
        self.finished: defer.Deferred = defer.Deferred()
        self.setProtocolOptions(
            failByDrop=False,
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            perMessageCompressionOffers=DEFLATE_OFFERS,
            perMessageCompressionAccept=accept_deflate,
        )


@defer.inlineCallbacks
def connect_once(reactor, url: str, agent: str, protocol: type[WebSocketClientProtocol]):
    """Open one WebSocket connection to ``url``; fire with its factory once it has closed."""
    factory = OneShotFactory(url, agent, protocol)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, factory.host, factory.port, timeout=10)
    yield endpoint.connect(factory)
    yield factory.finished
    return factory


@defer.inlineCallbacks
def run_testee(reactor, base_url: str, agent: str):
    """Run every case the fuzzing server offers, then ask it to write its reports."""
    agent_query = quote(agent, safe="")
    counted = yield connect_once(reactor, f"{base_url}/getCaseCount", agent, CaseCountProtocol)
    if counted.case_count is None:
        raise RuntimeError(f"{base_url}/getCaseCount: no case count received")
    log.info("will run {count} cases as agent {agent}", count=counted.case_count, agent=agent)
    for case in range(1, counted.case_count + 1):
        log.info("case {case}/{count}", case=case, count=counted.case_count)
        url = f"{base_url}/runCase?case={case}&agent={agent_query}"
        yield connect_once(reactor, url, agent, EchoClientProtocol)
    yield update_reports(reactor, base_url, agent)


@defer.inlineCallbacks
def update_reports(reactor, base_url: str, agent: str):
    """Ask the fuzzing server to write its reports of ``agent``'s cases run so far."""
    url = f"{base_url}/updateReports?agent={quote(agent, safe='')}"
    yield connect_once(reactor, url, agent, OneShotProtocol)
    log.info("reports updated")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="fuzzing server (or proxy) ws:// URL")
    parser.add_argument("--agent", default="clbproxy", help="agent name in the reports")
    parser.add_argument("--loglevel", default="info", help="txaio log level (default: info)")
    parser.add_argument(
        "--update-reports-only",
        action="store_true",
        help="run no case, only have the reports of the cases run so far written",
    )
    options = parser.parse_args(argv)
    if urlsplit(options.url).scheme != "ws":
        parser.error("--url: only ws:// URLs are supported")
    options.url = options.url.rstrip("/")
    return options


def main(reactor, argv: list[str]) -> defer.Deferred:
    options = parse_args(argv)
    txaio.start_logging(level=options.loglevel)
    if options.update_reports_only:
        return update_reports(reactor, options.url, options.agent)
    return run_testee(reactor, options.url, options.agent)


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
