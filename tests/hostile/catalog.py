"""A table-driven runner for hostile inputs: raw bytes over real sockets, exact answers.

A :class:`Case` is a name, a script (bytes to send, pauses, bytes trickled one
at a time, a WebSocket opening handshake, a half-close), the one answer the proxy
must give and, optionally, the reason it must log:

- :class:`Status`: an HTTP response with that status and those headers;
- :class:`WsClose`: a WebSocket Close frame with that code (after the listed
  messages, if any);
- :class:`Messages`: exactly these WebSocket messages come back (the session stays
  usable);
- :class:`Closed`: the connection is closed without a single byte of response.

A test module declares a :class:`CatalogTestCase` subclass with a ``fixture`` (the
server process and its settings) and ``cases``; one test method per case is
generated.  The server process is started once per class (lazily, by the first
test) and ends when the test run does.  After each case the runner also checks
that the process is still alive and has logged no traceback or unhandled error,
so every case also proves "the proxy keeps serving everyone else".

The runner uses blocking sockets with timeouts and no reactor, so it works for any
server the fixture process starts: the HTTP catalogue reuses it with its own table.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence, Union

import attrs
from twisted.trial import unittest

from tests.support.handshakes import upgrade_request

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Patterns in a server log that mean an error escaped the code that should own it.
LOG_ALARMS = ("Traceback", "Unhandled error", "Unhandled Error", "Unhandled error in Deferred")


# -- the script --------------------------------------------------------------------


@attrs.frozen
class Send:
    """Write these bytes."""

    data: bytes


@attrs.frozen
class Pause:
    """Wait before the next step (for trickled input)."""

    seconds: float


@attrs.frozen
class Trickle:
    """Write these bytes one at a time, ``every`` seconds apart, until the server answers.

    The trickle stops early as soon as the server has sent something or closed
    (a slowloris client that is cut off); the answer is then read as usual.
    """

    data: bytes
    every: float = 0.2


@attrs.frozen
class HalfClose:
    """Shut down the sending side (FIN) and keep reading."""


@attrs.frozen
class Upgrade:
    """A valid WebSocket opening handshake; the proxy must answer 101 before the script goes on."""

    path: str = "/echo"
    host: str = "127.0.0.1"
    extra: bytes = b""


Step = Union[Send, Pause, Trickle, HalfClose, Upgrade, bytes]

# -- the expected answers ----------------------------------------------------------


@attrs.frozen
class Status:
    """An HTTP response: this status, these headers (name -> exact value, None: absent).

    ``closes``: True when the connection must close right after the response.
    """

    status: int
    headers: tuple[tuple[str, Optional[str]], ...] = ()
    closes: Optional[bool] = None

    def __str__(self) -> str:
        return f"HTTP {self.status}"


@attrs.frozen
class WsClose:
    """A Close frame with ``code`` (None: a Close without a code), after ``messages``."""

    code: Optional[int]
    messages: tuple[bytes, ...] = ()

    def __str__(self) -> str:
        return f"close {self.code}"


@attrs.frozen
class Messages:
    """These WebSocket messages (payloads) come back, in order."""

    messages: tuple[bytes, ...]

    def __str__(self) -> str:
        return f"{len(self.messages)} messages"


@attrs.frozen
class Closed:
    """The connection is closed without any response byte."""

    def __str__(self) -> str:
        return "closed without response"


Expectation = Union[Status, WsClose, Messages, Closed]


@attrs.frozen
class Case:
    """One hostile input and the exact answer it gets."""

    name: str
    script: tuple[Step, ...]
    expect: Expectation
    timeout: float = 5.0
    #: Text the server must have logged while the case ran (its one-line reason).
    log: Optional[str] = None


def case(
    name: str,
    *script: Step,
    expect: Expectation,
    timeout: float = 5.0,
    log: Optional[str] = None,
) -> Case:
    return Case(name, tuple(script), expect, timeout, log)


def ws_case(name: str, *frames: Step, expect: Expectation, path: str = "/echo") -> Case:
    """A case that opens a WebSocket session first, then sends ``frames``."""
    return Case(name, (Upgrade(path), *frames), expect)


# -- WebSocket frames, as a hostile client writes them ------------------------------

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: Optional[bytes] = b"\x37\xfa\x21\x3d",
    length: Optional[int] = None,
    length_form: Optional[int] = None,
) -> bytes:
    """One frame; ``length`` lies about the payload size, ``length_form`` forces 7/16/64 bits."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    mask_bit = 0x80 if mask is not None else 0
    form = length_form or (7 if size < 126 else 16 if size < 65536 else 64)
    if form == 7:
        head = struct.pack("!BB", first, mask_bit | size)
    elif form == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def close_payload(code: Optional[int], reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


# -- reading answers ---------------------------------------------------------------


class AnswerMismatch(AssertionError):
    pass


class Reader:
    """Blocking reads with one deadline for the whole case."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.eof = False
        self.received_any = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise AnswerMismatch(f"timed out; received so far: {self.buffer[:300]!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AnswerMismatch(f"timed out; received so far: {self.buffer[:300]!r}") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.received_any = True
        self.buffer += data
        return True

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise AnswerMismatch(
                    f"connection closed after {self.buffer[:300]!r}, wanted {count} bytes"
                )
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def head(self) -> tuple[int, list[tuple[str, str]]]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AnswerMismatch(f"no complete HTTP response head: {self.buffer[:300]!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise AnswerMismatch(f"not an HTTP response: {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return int(parts[1]), headers

    def frame(self) -> tuple[int, bytes]:
        first, second = self.take(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.take(8))
        if second & 0x80:
            raise AnswerMismatch("the proxy sent a masked frame to a client")
        return first & 0x0F, self.take(size)

    def until_eof(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def header_value(headers: Sequence[tuple[str, str]], name: str) -> Optional[str]:
    values = [value for key, value in headers if key.lower() == name.lower()]
    return ", ".join(values) if values else None


def _check_status(reader: Reader, expect: Status) -> str:
    status, headers = reader.head()
    if status != expect.status:
        raise AnswerMismatch(f"status {status}, expected {expect.status}; headers {headers}")
    for name, value in expect.headers:
        got = header_value(headers, name)
        if got != value:
            raise AnswerMismatch(f"header {name}: {got!r}, expected {value!r}")
    length = header_value(headers, "content-length")
    if length is not None and length.isdigit():
        reader.take(int(length))
    if expect.closes is not None:
        rest = reader.until_eof() if expect.closes else b""
        if expect.closes and rest:
            raise AnswerMismatch(f"bytes after the response: {rest[:200]!r}")
    return f"{status}"


def _check_ws_close(reader: Reader, expect: WsClose) -> str:
    data = b""
    while True:
        opcode, payload = reader.frame()
        if opcode == CLOSE:
            close = payload
            break
        if opcode not in (PING, PONG):
            data += payload
    if data != _joined(expect.messages):
        raise AnswerMismatch(f"data {data[:200]!r} before the Close, expected {expect.messages!r}")
    code = struct.unpack("!H", close[:2])[0] if len(close) >= 2 else None
    if code != expect.code:
        raise AnswerMismatch(f"close code {code} ({close[2:]!r}), expected {expect.code}")
    return f"close {code}"


def _joined(messages: Sequence[bytes]) -> bytes:
    return b"".join(messages)


def _check_messages(reader: Reader, expect: Messages) -> str:
    want = _joined(expect.messages)
    got = b""
    while len(got) < len(want):
        opcode, payload = reader.frame()
        if opcode == CLOSE:
            raise AnswerMismatch(f"Close frame {payload!r} after {got!r}, expected {want!r}")
        if opcode not in (PING, PONG):
            got += payload
    if got != want:
        raise AnswerMismatch(f"messages {got!r}, expected {want!r}")
    return "messages"


def _check_closed(reader: Reader, expect: Closed) -> str:
    rest = reader.until_eof()
    if rest:
        raise AnswerMismatch(f"expected no response, got {rest[:300]!r}")
    return "closed"


def _trickle(sock: socket.socket, step: Trickle, deadline: float) -> bool:
    """Send ``step.data`` a byte at a time; False when the server answered or closed first.

    The trickle also ends at the case's ``deadline`` (the answer is then late).
    """
    for index in range(len(step.data)):
        if index:
            time.sleep(step.every)
        if time.monotonic() > deadline:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return False
        try:
            sock.sendall(step.data[index : index + 1])
        except (BrokenPipeError, ConnectionResetError):
            return False
    return True


def run_case(port: int, case: Case) -> str:
    """Play ``case`` against 127.0.0.1:``port``; raises AnswerMismatch on any other answer."""
    deadline = time.monotonic() + case.timeout
    with socket.create_connection(("127.0.0.1", port), timeout=case.timeout) as sock:
        reader = Reader(sock, deadline)
        for step in case.script:
            if isinstance(step, bytes):
                step = Send(step)
            if isinstance(step, Send):
                try:
                    sock.sendall(step.data)
                except (BrokenPipeError, ConnectionResetError):
                    break
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            elif isinstance(step, Trickle):
                if not _trickle(sock, step, deadline):
                    break
            elif isinstance(step, HalfClose):
                sock.shutdown(socket.SHUT_WR)
            elif isinstance(step, Upgrade):
                sock.sendall(upgrade_request(step.path, step.host, step.extra))
                status, headers = reader.head()
                if status != 101:
                    raise AnswerMismatch(f"opening handshake answered {status}, expected 101")
        expect = case.expect
        if isinstance(expect, Status):
            return _check_status(reader, expect)
        if isinstance(expect, WsClose):
            return _check_ws_close(reader, expect)
        if isinstance(expect, Messages):
            return _check_messages(reader, expect)
        return _check_closed(reader, expect)


# -- the server process ------------------------------------------------------------


class ServerProcess:
    """A server in a child process that prints its ports as one JSON line on stdout.

    Started on first use, once per test class; it exits when its stdin closes (at the
    latest when the test run ends).  Its log goes to a temporary file that
    :meth:`new_log` reads incrementally.
    """

    def __init__(self, argv: Sequence[str], env: Optional[dict] = None, preexec_fn=None) -> None:
        self.argv = list(argv)
        self.env = env
        self.preexec_fn = preexec_fn
        self.process: Optional[subprocess.Popen] = None
        self.ports: dict[str, int] = {}
        self._log_path = ""
        self._log_offset = 0

    def start(self) -> dict[str, int]:
        if self.process is not None:
            return self.ports
        fd, self._log_path = tempfile.mkstemp(prefix="clbproxy-hostile-", suffix=".log")
        log = os.fdopen(fd, "wb")
        env = dict(os.environ, PYTHONPATH=REPOSITORY, **(self.env or {}))
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPOSITORY,
            env=env,
            preexec_fn=self.preexec_fn,
        )
        log.close()
        atexit.register(self.stop)
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(5)
            raise RuntimeError(f"fixture process failed to start:\n{self.read_log()}")
        self.ports = json.loads(line)
        return self.ports

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        if self._log_path:
            os.unlink(self._log_path)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read_log(self) -> str:
        with open(self._log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def new_log(self) -> str:
        """Log text written since the last call."""
        with open(self._log_path, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        return data.decode("utf-8", "replace")


def proxy_fixture(
    listener: Optional[dict] = None, group: Optional[dict] = None, preexec_fn=None
) -> ServerProcess:
    """The proxy (with these listener / target group settings) and an echo backend."""
    spec = json.dumps({"listener": listener or {}, "group": group or {}})
    return ServerProcess(
        [sys.executable, "-m", "tests.hostile.fixture", spec], preexec_fn=preexec_fn
    )


def _test_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name.lower())
    return "test_" + "_".join(part for part in cleaned.split("_") if part)


class CatalogTestCase(unittest.SynchronousTestCase):
    """Base of a catalogue: subclasses set ``fixture``, ``port_name`` and ``cases``.

    One ``test_<case name>`` method is generated per case.
    """

    fixture: Optional[ServerProcess] = None
    port_name = "proxy"
    cases: Sequence[Case] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for entry in cls.cases:
            name = _test_name(entry.name)
            if hasattr(cls, name):
                raise ValueError(f"{cls.__name__}: two cases named {name}")
            setattr(cls, name, _make_test(entry))

    def play(self, entry: Case) -> None:
        ports = self.fixture.start()
        try:
            run_case(ports[self.port_name], entry)
        except AnswerMismatch as mismatch:
            self.fail(f"{entry.name}: expected {entry.expect}: {mismatch}")
        self.assertTrue(self.fixture.alive(), "the server process died")
        text = self.assert_log_clean()
        if entry.log is not None:
            self.assertIn(entry.log, text, f"{entry.name}: the server did not log {entry.log!r}")
        self.check_log(entry, text)

    def check_log(self, entry: Case, text: str) -> None:
        """Further checks of what the server logged during ``entry`` (for subclasses)."""

    def assert_log_clean(self) -> str:
        """The server's log since the last call, after checking it holds no alarm."""
        text = self.fixture.new_log()
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text, f"the server logged {alarm!r}:\n{text[-3000:]}")
        return text


def _make_test(entry: Case):
    def test(self):
        self.play(entry)

    test.__doc__ = f"{entry.name} -> {entry.expect}"
    return test


def websocket_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()
