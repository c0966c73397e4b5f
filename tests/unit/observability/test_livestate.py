"""Recent backend errors keep the ID of the request or session each was about."""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.livestate import RecentErrors


def warning(**fields) -> dict:
    return {"log_level": LogLevel.warn, "log_time": 1.0, "log_format": "", **fields}


class RecentErrorRequestIdTests(unittest.TestCase):
    def test_a_failed_request_keeps_its_id(self):
        errors = RecentErrors()
        errors(
            warning(
                backend="10.0.0.1:80",
                group="web",
                reason="connection refused",
                outcome="answered 502",
                request_id="0af7651916cd43dd8448eb211c80319c",
            )
        )
        (error,) = errors.recent("web", "10.0.0.1:80")
        self.assertEqual(error["request_id"], "0af7651916cd43dd8448eb211c80319c")
        self.assertEqual(error["message"], "connection refused (answered 502)")

    def test_a_failed_handshake_keeps_the_sessions_id(self):
        errors = RecentErrors()
        record = accesslog.SessionRecord(
            status=502, backend="10.0.0.1:80", group="ws", request_id="session-7"
        )
        errors(
            {
                "log_namespace": accesslog.NAMESPACE,
                "log_level": LogLevel.info,
                "log_time": 2.0,
                **record.fields(),
            }
        )
        (error,) = errors.recent("ws", "10.0.0.1:80")
        self.assertEqual(error["request_id"], "session-7")

    def test_without_ids_the_error_has_none(self):
        errors = RecentErrors()
        errors(warning(backend="10.0.0.1:80", group="web", reason="reset", request_id="-"))
        errors(warning(backend="10.0.0.1:80", group="web", reason="reset"))
        self.assertEqual(
            [error["request_id"] for error in errors.recent("web", "10.0.0.1:80")], [None, None]
        )


class RecentErrorLevelTests(unittest.TestCase):
    def test_warnings_errors_and_criticals_are_kept_info_and_debug_are_not(self):
        errors = RecentErrors()
        for level in LogLevel.iterconstants():
            errors(
                {
                    "log_level": level,
                    "log_time": 1.0,
                    "backend": "10.0.0.1:80",
                    "group": "web",
                    "reason": level.name,
                }
            )
        kept = sorted(error["message"] for error in errors.recent("web", "10.0.0.1:80"))
        self.assertEqual(kept, ["critical", "error", "warn"])
