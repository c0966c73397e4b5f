"""Backend states are enums that read, compare and serialise as the words users see."""

from __future__ import annotations

import json
import warnings

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health import checks, view
from clbproxy.upstream.health.checks import CheckedHealth
from clbproxy.upstream.health.view import (
    HEALTH_STATES,
    BackendStatus,
    IHealthView,
    UnknownHealth,
    all_backends,
)
from clbproxy.upstream.states import AdminState, Health

A = BackendConfig("10.0.0.1", 8080)
B = BackendConfig("10.0.0.2", 8080, weight=3)


class StateTextTests(unittest.TestCase):
    def test_every_state_is_its_word_in_text_json_and_comparison(self):
        for state in [*Health, *AdminState]:
            self.assertEqual(state, state.value)
            self.assertEqual(str(state), state.value)
            self.assertEqual(f"{state}", state.value)
            self.assertEqual(json.dumps(state), json.dumps(state.value))

    def test_the_words_are_todays(self):
        self.assertEqual([h.value for h in Health], ["healthy", "unhealthy", "ejected", "unknown"])
        self.assertEqual([s.value for s in AdminState], ["ready", "drain", "maint"])
        self.assertEqual([h.value for h in HEALTH_STATES], ["healthy", "unhealthy", "unknown"])

    def test_an_ejected_backend_is_reported_unhealthy(self):
        self.assertIs(Health.EJECTED.reported, Health.UNHEALTHY)
        self.assertIs(Health.HEALTHY.reported, Health.HEALTHY)


class AdminStateTests(unittest.TestCase):
    def test_set_state_takes_the_word_and_stores_the_enum(self):
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A,)), task.Clock())
        control = group.set_state(A.address, "drain")
        self.assertIs(control.state, AdminState.DRAIN)

    def test_an_unknown_state_is_refused_with_its_name(self):
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A,)), task.Clock())
        with self.assertRaises(ValueError) as raised:
            group.set_state(A.address, "paused")
        self.assertEqual(str(raised.exception), "unknown state 'paused'")


class ReadModelTests(unittest.TestCase):
    def test_without_checks_every_backend_is_unknown_with_no_detail(self):
        health = UnknownHealth([TargetGroupConfig(name="g", backends=(A, B))])
        self.assertTrue(IHealthView.providedBy(health))
        records = all_backends(health)
        self.assertEqual(
            [(r.group, r.address, r.health, r.detail, r.weight) for r in records],
            [("g", A.address, Health.UNKNOWN, "", 10), ("g", B.address, Health.UNKNOWN, "", 3)],
        )

    def test_the_checker_reports_an_ejection_as_unhealthy_with_its_error(self):
        clock = task.Clock()
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), clock)
        for _ in range(3):
            group.report_failure(A, "connection refused")
        first, second = all_backends(CheckedHealth({"g": group}))
        self.assertEqual((first.state, first.health), (Health.EJECTED, Health.UNHEALTHY))
        self.assertEqual(first.detail, "connection refused")
        self.assertEqual((second.health, second.detail), (Health.HEALTHY, ""))

    def test_an_ejection_without_an_error_names_the_state_as_detail(self):
        status = BackendStatus("g", A.address, Health.EJECTED)
        self.assertEqual((status.health, status.detail), (Health.UNHEALTHY, "ejected"))


class FormerNameTests(unittest.TestCase):
    def former(self, module, name):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(module, name)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        return value

    def test_the_former_health_names_still_work_with_a_warning(self):
        self.assertIs(self.former(checks, "IHealthState"), IHealthView)
        self.assertIs(self.former(checks, "HealthState"), CheckedHealth)
        self.assertIs(self.former(checks, "BackendHealth"), checks.GroupHealth)
        self.assertIs(self.former(view, "BackendHealth"), BackendStatus)
        state = CheckedHealth({})
        self.assertIs(self.former(view, "CheckedHealth")(state), state)

    def test_an_unknown_name_is_still_an_attribute_error(self):
        with self.assertRaises(AttributeError):
            checks.NoSuchName  # noqa: B018
