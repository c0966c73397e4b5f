"""The hostile HTTP table and the slow and flooding clients again, the listener on ``h11``.

The listener frames requests with llhttp (``httptools``) on CPython and with
``h11`` on PyPy (:mod:`clbproxy.http.parsers`); every case must come out the
same on both.  :mod:`tests.hostile.test_http` runs the default back end; here
the proxy process is started with ``CLBPROXY_HTTP_PARSER=h11``.
"""

from __future__ import annotations

from clbproxy.http.parsers import ENVIRONMENT
from tests.hostile import test_http
from tests.hostile.catalog import ServerProcess
from tests.support.parsers import NeedsH11, OnH11


def on_h11(fixture: ServerProcess) -> ServerProcess:
    """The same proxy process as ``fixture``, its listener parsing with ``h11``."""
    return ServerProcess(fixture.argv, env={ENVIRONMENT: "h11"}, preexec_fn=fixture.preexec_fn)


class HostileRequestCatalogueOnH11(NeedsH11, test_http.HostileRequestCatalogue):
    fixture = on_h11(test_http.HostileRequestCatalogue.fixture)
    cases = ()


class PathBypassCatalogueOnH11(NeedsH11, test_http.PathBypassCatalogue):
    fixture = on_h11(test_http.PathBypassCatalogue.fixture)
    cases = ()


class HostHeaderCatalogueOnH11(NeedsH11, test_http.HostHeaderCatalogue):
    fixture = on_h11(test_http.HostHeaderCatalogue.fixture)
    cases = ()


class SlowClientCatalogueOnH11(NeedsH11, test_http.SlowClientCatalogue):
    fixture = on_h11(test_http.SlowClientCatalogue.fixture)
    cases = ()


class PipeliningFloodTestsOnH11(NeedsH11, test_http.PipeliningFloodTests):
    fixture = on_h11(test_http.PipeliningFloodTests.fixture)


class ForwardedRequestTestsOnH11(OnH11, test_http.ForwardedRequestTests):
    pass
