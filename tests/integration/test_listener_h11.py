"""The listener's HTTP integration tests again, its connections parsing with ``h11``.

:mod:`tests.integration.test_listener_http`, :mod:`~tests.integration.test_limits_timeouts`
(HTTP timeouts and access lists) and :mod:`~tests.integration.test_trailers` run on
the default back end (llhttp on CPython); each class here reruns one of them with
``CLBPROXY_HTTP_PARSER=h11`` (:class:`tests.support.parsers.OnH11`).
"""

from __future__ import annotations

from tests.integration import test_limits_timeouts, test_listener_http, test_trailers
from tests.support.parsers import OnH11


class StreamingUploadTestsOnH11(OnH11, test_listener_http.StreamingUploadTests):
    pass


class ExpectContinueTestsOnH11(OnH11, test_listener_http.ExpectContinueTests):
    pass


class RuleActionTestsOnH11(OnH11, test_listener_http.RuleActionTests):
    pass


class AbsoluteFormTestsOnH11(OnH11, test_listener_http.AbsoluteFormTests):
    pass


class ProxyProtocolTestsOnH11(OnH11, test_listener_http.ProxyProtocolTests):
    pass


class KeepAliveTestsOnH11(OnH11, test_listener_http.KeepAliveTests):
    pass


class SameListenerTestsOnH11(OnH11, test_listener_http.SameListenerTests):
    pass


class HTTPTimeoutTestsOnH11(OnH11, test_limits_timeouts.HTTPTimeoutTests):
    pass


class AccessTestsOnH11(OnH11, test_limits_timeouts.AccessTests):
    pass


class TrailerTestsOnH11(OnH11, test_trailers.TrailerTests):
    pass
