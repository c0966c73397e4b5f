"""The HTTP forwarder's integration tests again, the front's connections parsing with ``h11``.

:mod:`tests.integration.test_httpproxy` runs them with the listener's connection
in front on the environment's parser back end (llhttp on CPython by default);
here with ``CLBPROXY_HTTP_PARSER=h11`` (:class:`tests.support.parsers.OnH11`).
"""

from __future__ import annotations

from tests.integration import test_httpproxy
from tests.support.parsers import OnH11


class HTTPForwarderTestsOnH11(OnH11, test_httpproxy.HTTPForwarderTests):
    pass
