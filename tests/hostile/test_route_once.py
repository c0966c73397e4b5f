"""An upgrade is routed once, and the backend gets the target that was routed.

The rule the listener matched, and whose ``allow``/``deny`` it checked, is the
rule whose backends serve the request: a Host that one parser reads as another
host than the next one (``internal.test:1:1``, ``a, b``) is refused with 400 before
anything is routed (RFC 9110 7.2), the relay takes the listener's decision
instead of routing again, and an upgrade aimed at a rule that answers by itself
(a fixed response, a redirect) gets that answer.  A request target is sent to
the backend exactly as it was matched: a fragment is refused (400, as nginx and
HAProxy answer) and ``;`` parameters, an empty trailing one too, reach the
backend as written.
"""

from __future__ import annotations

from tests.hostile import catalog
from tests.hostile.catalog import CatalogTestCase, Status, proxy_fixture
from tests.hostile.test_http import BACKEND_LOG

_UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def upgrade(host: bytes, target: bytes = b"/secret-report") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + _UPGRADE


def get(host: bytes, target: bytes = b"/secret-report") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"


def refused(name: str, request: bytes, status: int, headers=()) -> catalog.Case:
    return catalog.case(name, request, expect=Status(status, tuple(headers), closes=True))


#: Hosts that name the internal rule (denied to 127.0.0.0/8, the test client) to one
#: reader and another rule to the next: each is refused before it is routed.
AMBIGUOUS_HOSTS = [
    b"internal.test:1:1",
    b"internal.test:80:80",
    b"a.internal.test:1:1",
    b"allowed.test:1:1",
    b"internal.test, public.test",
    b"public.test, internal.test",
    b"public.test internal.test",
    b"internal.test/x",
    b"public.test@internal.test",
    b"[::1]:1:1",
    b"",
]

ROUTE_CASES = (
    [
        refused(f"upgrade with ambiguous Host {index} {host.decode()!r}", upgrade(host), 400)
        for index, host in enumerate(AMBIGUOUS_HOSTS)
    ]
    + [
        refused(f"plain GET with ambiguous Host {index} {host.decode()!r}", get(host), 400)
        for index, host in enumerate(AMBIGUOUS_HOSTS[:3])
    ]
    + [
        refused("upgrade to the denied host", upgrade(b"internal.test"), 403),
        refused("upgrade to the denied host with a port", upgrade(b"INTERNAL.test:8080"), 403),
        refused("upgrade to the denied host with a trailing dot", upgrade(b"internal.test."), 403),
        refused("upgrade to the denied wildcard host", upgrade(b"a.internal.test"), 403),
        refused(
            "upgrade to the denied host in absolute form",
            b"GET http://internal.test/x HTTP/1.1\r\nHost: public.test\r\n" + _UPGRADE,
            403,
        ),
        refused("upgrade to a host outside its allow list", upgrade(b"allowed.test"), 403),
        refused("plain GET to the denied host", get(b"internal.test"), 403),
        refused("upgrade to a fixed-response rule", upgrade(b"fixed.test"), 418),
        refused(
            "upgrade to a redirect rule",
            upgrade(b"moved.test"),
            301,
            [("Location", "https://public.test/secret-report")],
        ),
        refused("upgrade with a fragment", upgrade(b"public.test", b"/x#/../secret"), 400),
        refused("plain GET with a fragment", get(b"public.test", b"/admin#/../public"), 400),
        refused("plain GET with an empty fragment", get(b"public.test", b"/admin#"), 400),
    ]
)


class RouteOnceCatalogue(CatalogTestCase):
    """No Host spelling reaches the internal backend; the backend sees none of these."""

    fixture = proxy_fixture(
        listener=dict(
            default_domain="public.test",
            rules=[
                {"host": "internal.test", "deny": ["127.0.0.0/8"]},
                {"host": "*.internal.test", "deny": ["127.0.0.0/8"]},
                {"host": "allowed.test", "allow": ["10.0.0.0/8"]},
                {"host": "fixed.test", "fixed_response": {"status": 418, "body": "fixed"}},
                {"host": "moved.test", "redirect": {"location": "https://public.test$request_uri"}},
                {"host": "public.test", "path": "/public"},
            ],
        )
    )
    cases = ROUTE_CASES

    def check_log(self, entry: catalog.Case, text: str) -> None:
        self.assertEqual(BACKEND_LOG.findall(text), [], "a refused request reached the backend")


#: Targets that rules would match differently if the backend received another
#: spelling: each reaches the backend exactly as sent.
EXACT_TARGETS = [
    b"/exact;",
    b"/exact;;",
    b"/exact;a=b",
    b"/anchored;",
    b"/anchored;?q=1",
    b"/exact;/",
    b"/p;x=1/q;y=2?z",
]


class ExactTargetCatalogue(CatalogTestCase):
    """``= /exact`` and ``~ ^/anchored$`` answer 403; other spellings go, unchanged, on."""

    fixture = proxy_fixture(
        listener=dict(
            rules=[
                {"path": "= /exact", "fixed_response": {"status": 403, "body": "denied"}},
                {"path": "~ ^/anchored$", "fixed_response": {"status": 403, "body": "denied"}},
                {"path": "/"},
            ]
        )
    )
    sent = {
        f"target {index} {target.decode()} reaches the backend as sent": target
        for index, target in enumerate(EXACT_TARGETS)
    }
    cases = [
        catalog.case(name, get(b"a.test", target), expect=Status(200, closes=True))
        for name, target in sent.items()
    ] + [
        refused("the exact path itself", get(b"a.test", b"/exact"), 403),
        refused("the anchored path itself", get(b"a.test", b"/anchored"), 403),
    ]

    def check_log(self, entry: catalog.Case, text: str) -> None:
        served = BACKEND_LOG.findall(text)
        target = self.sent.get(entry.name)
        if target is None:
            self.assertEqual(served, [], "a refused request reached the backend")
        else:
            self.assertEqual(served, [f"GET {target.decode()} HTTP/1.1"])
