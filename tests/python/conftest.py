"""Shared fixtures and helpers for Warren's pika end-to-end suite.

Broker selection
----------------
* If ``AMQP_URL`` is set, every test talks to that broker and no Warren
  process is spawned.  This is how the suite is checked against real RabbitMQ,
  which keeps the assertions honest: they must describe RabbitMQ's behaviour.
* Otherwise one Warren process is started for the whole session from
  ``$WARREN_BIN`` (or ``<repo>/target/debug/warren``) as
  ``warren --bind 127.0.0.1 --port 0``; the port is read from its
  ``Listening for AMQP on 127.0.0.1:PORT`` line and the tests start once it
  prints ``Server startup complete``.  It receives SIGTERM at session end.

Helpers that tests import (``from conftest import ...``): ``eventually``,
``quiet_period``, ``get_message``, ``channel_error``, ``Collector``,
``fresh_queue``, ``ready_count``, ``publish_all``, ``drain``,
``start_warren``, ``amqp_mode_is_external``.
"""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import pika
import pika.exceptions
import pytest

# tests/python/conftest.py -> repository root is two levels up.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WARREN_BIN = REPO_ROOT / "target" / "debug" / "warren"

STARTUP_TIMEOUT = 10.0          # seconds to wait for "Server startup complete"
SHUTDOWN_TIMEOUT = 10.0         # seconds to wait for exit after SIGTERM
TEST_WATCHDOG_SECONDS = 30      # hard limit per test (setup + call + teardown)

LISTEN_RE = re.compile(r"Listening for AMQP on ([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
# Management API / UI and Prometheus ports (asked as 0: each broker gets free ones).
HTTP_RE = re.compile(r"Listening for HTTP on ([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
PROMETHEUS_RE = re.compile(r"Listening for Prometheus on ([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
# RabbitMQ stream protocol (rabbitmq_stream's port 5552; asked as 0 like the others).
STREAM_RE = re.compile(r"Listening for streams on ([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
READY_LINE = "Server startup complete"


def amqp_mode_is_external():
    """True when the suite runs against an externally provided broker."""
    return bool(os.environ.get("AMQP_URL"))


# --------------------------------------------------------------------------
# Polling helpers
# --------------------------------------------------------------------------

def eventually(fn, timeout=5.0, interval=0.02, connection=None):
    """Poll ``fn`` until it succeeds and return its result.

    ``fn`` succeeds when it returns a truthy value; returning a falsy value or
    raising ``AssertionError`` means "not yet".  When ``connection`` (a
    ``pika.BlockingConnection``) is given, the wait between attempts is spent
    in ``connection.process_data_events`` so consumer callbacks, returns and
    heartbeats are dispatched; otherwise it sleeps.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = fn()
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f": {last_error}" if last_error else ""
            raise AssertionError(f"condition not met within {timeout}s{detail}")
        if connection is not None:
            connection.process_data_events(time_limit=interval)
        else:
            time.sleep(interval)


def quiet_period(connection, seconds=0.3):
    """Dispatch events on ``connection`` for a fixed time.

    Used only to prove that something does *not* happen (e.g. no delivery
    beyond the prefetch window), which cannot be established by polling.
    """
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        connection.process_data_events(time_limit=remaining)


def get_message(channel, queue, timeout=5.0, auto_ack=False):
    """basic.get from ``queue`` until a message arrives.

    Returns ``(method, properties, body)``; fails if the queue stays empty.
    """
    def attempt():
        method, props, body = channel.basic_get(queue, auto_ack=auto_ack)
        return (method, props, body) if method is not None else None

    return eventually(attempt, timeout=timeout)


def channel_error(channel, action):
    """Run ``action`` and return the ``ChannelClosedByBroker`` it provokes.

    Asynchronous methods (basic.publish, basic.ack, ...) get no reply, so a
    synchronous round trip (basic.qos) follows the action: the broker handles
    the offending method first, and its channel.close arrives while pika waits
    for qos-ok.  Fails if the channel survives.
    """
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action()
        channel.basic_qos(prefetch_count=0)
    assert channel.is_closed
    return info.value


# --------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------

class Collector:
    """A consumer callback that records every delivery."""

    def __init__(self):
        self.deliveries = []

    def __call__(self, ch, method, properties, body):
        self.deliveries.append((method, properties, body))

    @property
    def bodies(self):
        return [body for _, _, body in self.deliveries]

    @property
    def tags(self):
        return [method.delivery_tag for method, _, _ in self.deliveries]


def fresh_queue(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    return name


def ready_count(connection, queue):
    ch = connection.channel()
    count = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return count


def publish_all(channel, queue, bodies):
    for body in bodies:
        channel.basic_publish("", queue, body)


def drain(channel, queue):
    """basic.get (auto-ack) until empty; returns [(method, body), ...]."""
    out = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((method, body))


# --------------------------------------------------------------------------
# Warren process management
# --------------------------------------------------------------------------

class WarrenProcess:
    """A running Warren broker whose output is drained by a thread."""

    def __init__(self, binary, log_path=None, extra_args=(), data_dir=None, preexec_fn=None):
        """``data_dir``: the broker's data directory (a scratch one when None,
        removed on ``terminate``); ``extra_args``: more command-line flags;
        ``preexec_fn``: run in the child before exec (e.g. to lower a limit)."""
        self.binary = str(binary)
        self.port = None
        self.http_port = None           # management API / UI
        self.prometheus_port = None     # /metrics
        self.stream_port = None         # stream protocol
        self.host = "127.0.0.1"
        self.lines = deque(maxlen=200)          # recent output, for diagnostics
        self._ready = threading.Event()
        self._log = open(log_path, "w") if log_path else None
        # Nothing the broker writes lands in the repository.
        self._scratch = None
        if data_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="warren-pytest-data-")
            data_dir = self._scratch.name
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", "0", "--management-port", "0",
             "--prometheus-port", "0", "--stream-port", "0", "--data-dir", data_dir,
             *extra_args],
            cwd=data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            preexec_fn=preexec_fn,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        # Keep reading for the whole life of the process so a chatty broker
        # never blocks on a full pipe.
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._log:
                self._log.write(line + "\n")
                self._log.flush()
            if self.port is None:
                match = LISTEN_RE.search(line)
                if match:
                    self.port = int(match.group(2))
            if self.http_port is None and (match := HTTP_RE.search(line)):
                self.http_port = int(match.group(2))
            if self.prometheus_port is None and (match := PROMETHEUS_RE.search(line)):
                self.prometheus_port = int(match.group(2))
            if self.stream_port is None and (match := STREAM_RE.search(line)):
                self.stream_port = int(match.group(2))
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()   # EOF: wake up a waiter so it can report the exit

    def output(self):
        return "\n".join(self.lines)

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(
                f"Warren did not print {READY_LINE!r} within {timeout}s; output:\n"
                + self.output())
        if self.proc.poll() is not None and self.port is None:
            raise RuntimeError(
                f"Warren exited with {self.proc.returncode} during startup; output:\n"
                + self.output())
        if self.port is None:
            self.kill()
            raise RuntimeError(
                "Warren became ready without a 'Listening for AMQP on' line; output:\n"
                + self.output())
        return self

    def terminate(self, timeout=SHUTDOWN_TIMEOUT):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._reader.join(2)
        if self._log:
            self._log.close()
            self._log = None
        if self._scratch:
            self._scratch.cleanup()
            self._scratch = None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def warren_binary():
    return Path(os.environ.get("WARREN_BIN") or DEFAULT_WARREN_BIN)


def start_warren(log_path=None):
    """Start a Warren process and wait until it accepts connections."""
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(
            f"Warren binary not found at {binary}: build it (cargo build) or set "
            "WARREN_BIN, or set AMQP_URL to test another broker", pytrace=False)
    return WarrenProcess(binary, log_path).wait_ready()


# --------------------------------------------------------------------------
# Broker description and connection parameters
# --------------------------------------------------------------------------

class Broker:
    """Where the broker under test listens and how to log in."""

    def __init__(self, host, port, vhost="/", username="guest", password="guest",
                 process=None):
        self.host = host
        self.port = port
        self.vhost = vhost
        self.username = username
        self.password = password
        self.process = process      # WarrenProcess, or None for AMQP_URL

    def params(self, **overrides):
        """pika.ConnectionParameters for this broker; keywords override."""
        settings = dict(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.username, self.password),
            connection_attempts=1,
            socket_timeout=5,
            stack_timeout=10,
        )
        settings.update(overrides)
        return pika.ConnectionParameters(**settings)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    url = os.environ.get("AMQP_URL")
    if url:
        parsed = pika.URLParameters(url)
        yield Broker(parsed.host, parsed.port, parsed.virtual_host,
                     parsed.credentials.username, parsed.credentials.password)
        return

    log_path = tmp_path_factory.mktemp("warren") / "warren.log"
    try:
        process = start_warren(log_path)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Broker(process.host, process.port, process=process)
    finally:
        process.terminate()


# --------------------------------------------------------------------------
# Per-test fixtures
# --------------------------------------------------------------------------

class _TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog():
    """Abort a test that hangs (e.g. a broker that never answers a method).

    SIGALRM interrupts pika's blocking select() in the main thread, so the
    test fails with a clear message instead of stalling the whole suite.
    """
    def on_alarm(signum, frame):
        raise _TestTimeout(f"test exceeded {TEST_WATCHDOG_SECONDS}s watchdog")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_WATCHDOG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def _created_names(broker):
    """Names handed out by ``unique_name``; their queues/exchanges are deleted
    after the test (after the test's own connections have closed)."""
    names = []
    yield names
    if not names:
        return
    try:
        conn = pika.BlockingConnection(broker.params())
    except Exception:
        return
    try:
        for name in names:
            # Each delete gets its own channel: a failure closes the channel.
            for delete in ("queue_delete", "exchange_delete"):
                try:
                    ch = conn.channel()
                    getattr(ch, delete)(name)
                    ch.close()
                except Exception:
                    if conn.is_closed:
                        return
    finally:
        if conn.is_open:
            try:
                conn.close()
            except Exception:
                pass


@pytest.fixture
def unique_name(request, _created_names):
    """Factory of collision-free names: ``unique_name("q")``.

    Parallel runs and leftovers from earlier runs never clash because every
    name carries a random suffix.
    """
    test = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40]

    def make(kind="q"):
        name = f"warren-pytest.{test}.{kind}.{uuid.uuid4().hex[:10]}"
        _created_names.append(name)
        return name

    return make


@pytest.fixture
def connect(broker, _created_names):
    """Factory opening BlockingConnections (keyword args override the
    connection parameters); all are closed after the test."""
    opened = []

    def make(**overrides):
        try:
            conn = pika.BlockingConnection(broker.params(**overrides))
        except pika.exceptions.AMQPConnectionError:
            # A crashed Warren makes every later test fail to connect; say so.
            proc = broker.process
            if proc is not None and proc.proc.poll() is not None:
                pytest.fail(f"Warren exited with code {proc.proc.returncode}; "
                            f"last output:\n{proc.output()}", pytrace=False)
            raise
        opened.append(conn)
        return conn

    yield make
    close_all(opened)


@pytest.fixture
def connection(connect):
    return connect()


@pytest.fixture
def channel(connection):
    return connection.channel()


@pytest.fixture
def open_connection():
    """Factory: ``open_connection(parameters)`` opens a pika BlockingConnection;
    every connection it opened is closed (errors ignored) after the test."""
    opened = []

    def make(parameters):
        conn = pika.BlockingConnection(parameters)
        opened.append(conn)
        return conn

    yield make
    close_all(opened)


def close_all(connections):
    """Close every still-open connection, ignoring errors (test teardown)."""
    for conn in connections:
        if conn.is_open:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
