"""Durability across broker restarts: durable exchanges, queues, bindings and
queue arguments are recovered from ``--data-dir``, persistent messages
(delivery_mode=2) in durable queues survive both a graceful stop (SIGTERM) and
a crash (SIGKILL), and transient entities and messages do not.

Each test owns its Warren processes and a scratch data directory: it stops the
broker, waits for the process to exit (the data directory is locked by the
running broker) and starts a new one on the same directory.  RabbitMQ cannot
be restarted from a test, so the module is skipped when AMQP_URL is set.
"""

import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest

from conftest import (Collector, WarrenProcess, amqp_mode_is_external, drain,
                      eventually, warren_binary)

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="restarts the broker on the same data directory: needs a Warren "
           "process owned by the test (AMQP_URL is set: an external broker "
           "cannot be restarted from a test)")

STOP_TIMEOUT = 10.0     # seconds for a broker to exit after SIGTERM / SIGKILL
CONFIRM_TIMEOUT = 5.0   # seconds for the confirm of one publish
PERSISTENT = 2
TRANSIENT = 1


# --------------------------------------------------------------------------
# Broker processes on a given data directory
# --------------------------------------------------------------------------

class DurableWarren(WarrenProcess):
    """A Warren on a caller-owned data directory, so that a later process can
    be started on the same directory.  Output handling as ``WarrenProcess``."""

    def __init__(self, binary, data_dir):
        super().__init__(binary, data_dir=data_dir)

    def params(self):
        return pika.ConnectionParameters(
            host=self.host, port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, socket_timeout=5, stack_timeout=10)

    def stop(self, *connections):
        """SIGTERM, let the given client connections see the broker's
        connection.close, and wait for a clean exit (code 0)."""
        self.proc.send_signal(signal.SIGTERM)
        for conn in connections:
            _wait_closed_by_broker(conn)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"Warren did not exit within {STOP_TIMEOUT}s of SIGTERM; "
                        f"output:\n{self.output()}", pytrace=False)
        self._reader.join(2)
        assert code == 0, f"exit code {code} after SIGTERM; output:\n{self.output()}"

    def crash(self):
        """SIGKILL and wait until the process is gone."""
        self.proc.kill()
        code = self.proc.wait(STOP_TIMEOUT)
        self._reader.join(2)
        assert code == -signal.SIGKILL, code


def _wait_closed_by_broker(conn, timeout=STOP_TIMEOUT):
    """Dispatch events on ``conn`` until the broker has closed it."""
    deadline = time.monotonic() + timeout
    while conn.is_open and time.monotonic() < deadline:
        try:
            conn.process_data_events(time_limit=0.1)
        except pika.exceptions.AMQPError:
            break


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="warren-pytest-durable-") as path:
        yield path


@pytest.fixture
def warren(data_dir):
    """Factory: ``warren()`` starts a broker on this test's data directory
    and returns it once it accepts connections.  Every process started is
    killed after the test if still running."""
    started = []

    def start():
        binary = warren_binary()
        if not binary.is_file():
            pytest.fail(f"Warren binary not found at {binary}", pytrace=False)
        for earlier in started:
            assert earlier.proc.poll() is not None, "previous broker still running"
        proc = DurableWarren(binary, data_dir)
        started.append(proc)
        try:
            return proc.wait_ready()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)

    yield start
    for proc in started:
        proc.kill()
        proc._reader.join(2)


@pytest.fixture
def connect(open_connection):
    """Factory: ``connect(proc)`` opens a BlockingConnection to ``proc``;
    all connections are closed (errors ignored) after the test."""
    return lambda proc: open_connection(proc.params())


class _ConfirmTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds):
    """Raise ``_ConfirmTimeout`` in the block after ``seconds`` (SIGALRM
    interrupts pika's blocking wait).  Nests inside conftest's per-test
    watchdog: its handler and remaining time are restored afterwards."""
    def on_alarm(signum, frame):
        raise _ConfirmTimeout()

    outer_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL,
                     min(seconds, outer_remaining) if outer_remaining else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_remaining:
            left = outer_remaining - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def publish_confirmed(channel, exchange, routing_key, messages):
    """basic.publish each ``(body, properties)`` on a confirm-mode channel.

    BlockingChannel.basic_publish returns once the broker has acked the
    publish (NackError otherwise); a confirm that never comes fails the test
    after CONFIRM_TIMEOUT with the publish's number instead of hanging.
    """
    for number, (body, props) in enumerate(messages, start=1):
        try:
            with _time_limit(CONFIRM_TIMEOUT):
                channel.basic_publish(exchange, routing_key, body, props)
            confirmed = True
        except _ConfirmTimeout:
            confirmed = False
        if not confirmed:
            pytest.fail(f"no publisher confirm within {CONFIRM_TIMEOUT}s for publish "
                        f"#{number} (body {body!r}): the broker lost a confirm",
                        pytrace=False)


def assert_not_found(conn, declare):
    """``declare(channel)`` on a fresh channel must fail with 404."""
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        declare(ch)
    assert info.value.reply_code == 404, repr(info.value)
    assert "NOT_FOUND" in info.value.reply_text


def message_count(conn, queue):
    ch = conn.channel()
    count = ch.queue_declare(queue, durable=True, passive=True).method.message_count
    ch.close()
    return count


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_durable_topology_and_persistent_messages_survive_graceful_restart(warren, connect):
    exchange, queue = "dur.orders", "dur.orders.q"
    transient_exchange, transient_queue = "tr.events", "tr.events.q"
    headers = {"k": "v", "n": 42, "nested": {"a": "b"}}

    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, "orders.#")
    ch.exchange_declare(transient_exchange, "fanout", durable=False)
    ch.queue_declare(transient_queue, durable=False)
    ch.queue_bind(transient_queue, exchange, "orders.#")
    ch.queue_bind(transient_queue, transient_exchange)

    ch.confirm_delivery()
    publish_confirmed(ch, exchange, "orders.new", [
        (str(i).encode(),
         pika.BasicProperties(delivery_mode=PERSISTENT, headers=headers,
                              content_type="application/json", message_id=f"id-{i}"))
        for i in range(50)])
    publish_confirmed(ch, exchange, "orders.new", [
        (f"transient-{i}".encode(), pika.BasicProperties(delivery_mode=TRANSIENT))
        for i in range(5)])
    assert message_count(conn, queue) == 55
    assert message_count(conn, transient_queue) == 55

    # Message 0 is consumed for good, message 1 is delivered and left unacked
    # (its connection is still open when the broker stops).
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"0" and not method.redelivered
    method, _, body = ch.basic_get(queue, auto_ack=False)
    assert body == b"1" and not method.redelivered
    assert message_count(conn, queue) == 53

    broker.stop(conn)
    broker = warren()
    conn = connect(broker)

    assert message_count(conn, queue) == 49

    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    collector = Collector()
    ch.basic_consume(queue, collector)
    eventually(lambda: len(collector.deliveries) >= 49, connection=conn)
    assert collector.bodies == [str(i).encode() for i in range(1, 50)]
    redelivered = [m.redelivered for m, _, _ in collector.deliveries]
    assert redelivered == [True] + [False] * 48
    for i, (_, props, _) in enumerate(collector.deliveries, start=1):
        assert props.delivery_mode == PERSISTENT
        assert props.content_type == "application/json"
        assert props.headers == headers
        assert props.message_id == f"id-{i}"
    ch.basic_ack(collector.deliveries[-1][0].delivery_tag, multiple=True)

    # The durable exchange (still a topic exchange) and its binding route.
    ch.exchange_declare(exchange, "topic", durable=True, passive=True)
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.basic_publish(exchange, "orders.after.restart", b"routed",
                     pika.BasicProperties(delivery_mode=PERSISTENT))
    ch.basic_publish(exchange, "unbound.key", b"dropped")
    eventually(lambda: len(collector.deliveries) == 50, connection=conn)
    assert collector.bodies[-1] == b"routed"
    assert message_count(conn, queue) == 0

    assert_not_found(conn, lambda c: c.queue_declare(transient_queue, passive=True))
    assert_not_found(conn, lambda c: c.exchange_declare(transient_exchange, passive=True))


def test_confirmed_persistent_messages_survive_sigkill(warren, connect):
    queue, n = "dur.crash.q", 2000

    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=PERSISTENT)
    # Each publish returns only once the broker has confirmed it.
    publish_confirmed(ch, "", queue, [(str(i).encode(), props) for i in range(n)])

    broker.crash()
    broker = warren()
    conn = connect(broker)

    assert message_count(conn, queue) == n
    bodies = [body for _, body in drain(conn.channel(), queue)]
    assert len(bodies) == n
    assert bodies == [str(i).encode() for i in range(n)]


def test_deleted_queue_stays_deleted_and_queue_arguments_survive_restart(warren, connect):
    deleted, kept, limited = "dur.deleted.q", "dur.kept.q", "dur.limited.q"
    exchange = "dur.args.x"
    args = {"x-max-length": 10, "x-message-ttl": 600000}

    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare(exchange, "direct", durable=True)
    for name in (deleted, kept):
        ch.queue_declare(name, durable=True)
        ch.queue_bind(name, exchange, "k")
    ch.queue_declare(limited, durable=True, arguments=args)
    ch.basic_publish("", deleted, b"gone", pika.BasicProperties(delivery_mode=PERSISTENT))
    ch.queue_delete(deleted)

    broker.stop(conn)
    broker = warren()
    conn = connect(broker)

    assert_not_found(conn, lambda c: c.queue_declare(deleted, durable=True, passive=True))
    # Re-creating the deleted queue gives an empty, unbound queue.
    ch = conn.channel()
    ch.queue_declare(deleted, durable=True)
    ch.confirm_delivery()
    ch.basic_publish(exchange, "k", b"to-kept")
    assert message_count(conn, deleted) == 0
    assert message_count(conn, kept) == 1

    # Identical arguments: the recovered queue matches.
    ch.queue_declare(limited, durable=True, arguments=dict(args))
    # The recovered x-max-length is in effect.
    for i in range(15):
        ch.basic_publish("", limited, str(i).encode())
    assert message_count(conn, limited) == 10

    other = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        other.queue_declare(limited, durable=True,
                            arguments={"x-max-length": 20, "x-message-ttl": 600000})
    assert info.value.reply_code == 406, repr(info.value)
    assert "PRECONDITION_FAILED" in info.value.reply_text
    assert message_count(conn, limited) == 10


def test_confirmed_delayed_messages_survive_sigkill_and_come_due_in_order(warren, connect):
    # A durable x-delayed-message exchange keeps its held persistent messages on disk: confirmed
    # means stored; after a crash they are held again until their due time and then routed, in
    # due order. A transient message (or one held by a transient exchange) is not kept.
    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    args = {"x-delayed-type": "direct"}
    ch.exchange_declare("dur.delayed", "x-delayed-message", durable=True, arguments=args)
    ch.exchange_declare("dur.delayed.transient", "x-delayed-message", arguments=args)
    ch.queue_declare("dur.delayed.q", durable=True)
    ch.queue_bind("dur.delayed.q", "dur.delayed", "k")
    ch.queue_bind("dur.delayed.q", "dur.delayed.transient", "k")
    ch.confirm_delivery()

    def held(body, delay_ms, mode=PERSISTENT):
        return body, pika.BasicProperties(delivery_mode=mode, headers={"x-delay": delay_ms})

    publish_confirmed(ch, "dur.delayed", "k", [held(b"late", 2500), held(b"early", 1500),
                                               held(b"transient", 1500, TRANSIENT)])
    publish_confirmed(ch, "dur.delayed.transient", "k", [held(b"transient-exchange", 1500)])
    assert message_count(conn, "dur.delayed.q") == 0

    broker.crash()
    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    # Held again, not routed at once: the queue stays empty until the first is due.
    assert message_count(conn, "dur.delayed.q") == 0
    got = []

    def both_arrived():
        got.extend(body for _, body in drain(ch, "dur.delayed.q"))
        return len(got) >= 2

    eventually(both_arrived, timeout=10)
    assert got == [b"early", b"late"]
