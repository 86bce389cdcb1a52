"""Stream queues (``x-queue-type: stream``) over AMQP 0-9-1, differential against RabbitMQ 3.10.8.

Every expectation here was observed on a RabbitMQ 3.10.8 node with the ``rabbitmq_stream``
plugin (run with ``AMQP_URL`` / ``MGMT_URL``); Warren must behave the same.  Covered:

* declare: a stream must be durable, non-exclusive and non-auto-delete (406 naming the
  property); classic/quorum-only arguments are refused (406 ``invalid arg ... of queue type
  rabbit_stream_queue``), including ``x-single-active-consumer`` (AMQP 0-9-1 SAC on streams
  does not exist in 3.10); ``x-max-length-bytes``, ``x-max-age``,
  ``x-stream-max-segment-size-bytes`` and ``x-initial-cluster-size`` are accepted and invalid
  values refused; redeclare equivalence; declare-ok ``message_count`` is the stream's length
  (RabbitMQ refreshes it with its statistics, so it is polled) and ``consumer_count`` is
  always 0; delete-ok ``message_count`` is 0.
* what a stream refuses: consuming without a per-consumer prefetch (406), global qos (540),
  no-ack consumers (540), basic.get (540), queue.purge (540), basic.nack / basic.reject with
  or without requeue (540, the connection is closed: nothing is redelivered), consumer
  priorities (406), an unknown delivery tag (406).
* non-destructive reads: every consumer reads the whole log in order, each delivery carries an
  ``x-stream-offset`` header (0, 1, 2, ...), prefetch bounds the unacknowledged deliveries and
  acks give credit back, a new consumer from ``first`` reads everything again.
* ``x-stream-offset``: absent (= ``next``), ``first``, ``last`` (the start of the last chunk:
  messages published one by one with confirms are one chunk each, so ``last`` is the last
  message), ``next``, a numeric offset (also one beyond the end, which waits for it), an AMQP
  timestamp, an interval string (``1s``), invalid specs (406).
* messages published before and while consuming; message properties and headers survive.
* the management API's view of a stream (type, arguments, messages, consumers, state).
* stream filtering (``x-stream-filter-value`` / ``x-stream-filter`` /
  ``x-stream-match-unfiltered``) exists from RabbitMQ 3.13 only: those tests follow the 3.13
  documentation and run against Warren only.

Publishes that must be separate chunks (``last``, prefetch counts, time-based offsets) are made
one at a time on a confirm channel: RabbitMQ writes a chunk per batch of pending messages and
delivers whole chunks, so with batched publishing ``last`` and the prefetch window would cover
several messages.  pika's ``basic_cancel`` / channel close rejects deliveries it has not yet
dispatched, which a stream answers with a 540; tests therefore only cancel once a consumer has
received everything.
"""

import datetime
import math
import os
import time
import urllib.parse

import pika
import pika.exceptions
import pytest

from conftest import Collector, amqp_mode_is_external, channel_error, eventually, quiet_period
from http_fixtures import api  # noqa: F401 (fixture)

STREAM = {"x-queue-type": "stream"}

warren_only_filtering = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="stream filtering (x-stream-filter-value / x-stream-filter) arrived in RabbitMQ 3.13; "
           "RabbitMQ 3.10 lacks stream filtering (it ignores the arguments), so this runs "
           "against Warren only")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def declare_stream(channel, name, **arguments):
    return channel.queue_declare(name, durable=True, arguments={**STREAM, **arguments}).method


def new_stream(connection, unique_name, **arguments):
    ch = connection.channel()
    name = unique_name()
    declare_stream(ch, name, **arguments)
    ch.close()
    return name


def publisher(connection):
    """A confirm channel: each basic_publish returns once the broker confirmed it, so each
    message is written as its own chunk."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


def publish_each(channel, queue, bodies, properties=None):
    for body in bodies:
        channel.basic_publish("", queue, body, properties)


class StreamCollector(Collector):
    """Records deliveries; acks each one when ``ack`` is set."""

    def __init__(self, ack=True):
        super().__init__()
        self.ack = ack

    def __call__(self, ch, method, properties, body):
        super().__call__(ch, method, properties, body)
        if self.ack:
            ch.basic_ack(method.delivery_tag)

    @property
    def offsets(self):
        return [props.headers["x-stream-offset"] for _, props, _ in self.deliveries]


def consume(connection, queue, offset=None, prefetch=100, ack=True, arguments=None, **kw):
    """Start a stream consumer on a new channel; returns (channel, tag, collector)."""
    ch = connection.channel()
    ch.basic_qos(prefetch_count=prefetch)
    args = dict(arguments or {})
    if offset is not None:
        args["x-stream-offset"] = offset
    collector = StreamCollector(ack=ack)
    tag = ch.basic_consume(queue, collector, arguments=args, **kw)
    return ch, tag, collector


def receive(connection, collector, count, timeout=5.0):
    """Wait until ``collector`` holds at least ``count`` deliveries."""
    eventually(lambda: len(collector.deliveries) >= count, timeout=timeout, connection=connection)
    return collector.bodies


def receive_exactly(connection, collector, expected):
    """Wait for ``expected`` bodies, then prove nothing else arrives."""
    receive(connection, collector, len(expected))
    quiet_period(connection)
    assert collector.bodies == expected


def connection_error(channel, action):
    """Run ``action`` and return the ``ConnectionClosedByBroker`` it provokes.

    A qos round trip on the same channel follows, so an asynchronous method (basic.nack) is
    handled before it and the connection.close arrives while pika waits for qos-ok.
    """
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        action()
        channel.basic_qos(prefetch_count=0)
    return info.value


def bodies(prefix, n):
    return [f"{prefix}{i}".encode() for i in range(n)]


def rs(broker, name):
    """RabbitMQ's rendering of a queue resource in error texts."""
    return f"queue '{name}' in vhost '{broker.vhost}'"


# --------------------------------------------------------------------------
# Declaring
# --------------------------------------------------------------------------

def test_declare_stream_and_redeclare_identically(connection, channel, unique_name):
    name = unique_name()
    ok = declare_stream(channel, name)
    assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 0, 0)
    assert declare_stream(channel, name).queue == name
    assert channel.queue_declare(name, passive=True).method.queue == name


@pytest.mark.parametrize("flags, prop", [
    (dict(durable=False), "non-durable"),
    (dict(durable=True, exclusive=True), "exclusive-owner"),
    (dict(durable=True, auto_delete=True), "auto-delete"),
    (dict(durable=False, exclusive=True), "exclusive-owner"),
], ids=["non-durable", "exclusive", "auto-delete", "exclusive-and-non-durable"])
def test_stream_must_be_durable_and_not_exclusive_or_auto_delete(
        broker, connection, channel, unique_name, flags, prop):
    name = unique_name()
    err = channel_error(channel, lambda: channel.queue_declare(name, arguments=STREAM, **flags))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid property '{prop}' for {rs(broker, name)}"), err
    # Nothing was created.
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_declare(name, passive=True))
    assert err.reply_code == 404, err


@pytest.mark.parametrize("arg, value", [
    ("x-max-priority", 10),
    ("x-dead-letter-exchange", "amq.direct"),
    ("x-dead-letter-routing-key", "dead"),
    ("x-message-ttl", 1000),
    ("x-expires", 10000),
    ("x-overflow", "reject-publish"),
    ("x-overflow", "drop-head"),
    ("x-max-length", 10),
    ("x-queue-mode", "lazy"),
    ("x-queue-master-locator", "min-masters"),
    ("x-delivery-limit", 3),
    ("x-max-in-memory-length", 3),
    ("x-quorum-initial-group-size", 1),
])
def test_queue_arguments_streams_do_not_support_are_refused(
        broker, channel, unique_name, arg, value):
    name = unique_name()
    err = channel_error(channel, lambda: declare_stream(channel, name, **{arg: value}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{arg}' for {rs(broker, name)} "
        "of queue type rabbit_stream_queue"), err


def test_single_active_consumer_is_refused_on_a_stream(broker, channel, unique_name):
    # RabbitMQ 3.11 added single active consumer for streams, through the stream protocol
    # only; 3.10 refuses the queue argument on a stream like any other unsupported one.
    name = unique_name()
    err = channel_error(
        channel, lambda: declare_stream(channel, name, **{"x-single-active-consumer": True}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for {rs(broker, name)} "
        "of queue type rabbit_stream_queue"), err


@pytest.mark.parametrize("arguments", [
    {"x-max-length-bytes": 1_000_000},
    {"x-max-age": "7D"},
    {"x-max-age": "1h"},
    {"x-max-age": "30m"},
    {"x-max-age": "1s"},
    {"x-max-age": "1M"},
    {"x-max-age": "1Y"},
    {"x-stream-max-segment-size-bytes": 500_000},
    {"x-initial-cluster-size": 1},
    {"x-max-length-bytes": 20_000_000, "x-max-age": "7D",
     "x-stream-max-segment-size-bytes": 1_000_000},
], ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_stream_arguments_are_accepted(channel, unique_name, arguments):
    name = unique_name()
    assert declare_stream(channel, name, **arguments).queue == name
    # The same arguments again: an equivalent redeclare.
    assert declare_stream(channel, name, **arguments).queue == name


@pytest.mark.parametrize("arg, value, detail", [
    ("x-max-age", "10", "invalid_max_age"),         # no unit
    ("x-max-age", "0D", "invalid_max_age"),         # not positive
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", "abc", '"expected integer, got longstr"'),
    ("x-stream-max-segment-size-bytes", -1, "{value_negative,-1}"),
])
def test_invalid_stream_argument_values_are_refused(
        broker, channel, unique_name, arg, value, detail):
    name = unique_name()
    err = channel_error(channel, lambda: declare_stream(channel, name, **{arg: value}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{arg}' for {rs(broker, name)}: {detail}"), err


def test_max_age_must_be_a_string(broker, channel, unique_name):
    name = unique_name()
    err = channel_error(channel, lambda: declare_stream(channel, name, **{"x-max-age": 10}))
    assert err.reply_code == 406, err
    # The rest names the AMQP field type the client used (pika: signedint).
    assert err.reply_text.startswith(
        f"PRECONDITION_FAILED - invalid arg 'x-max-age' for {rs(broker, name)}: "
        "{unacceptable_type,"), err


@pytest.mark.parametrize("flags, arguments, expected", [
    (dict(durable=True), {},
     "inequivalent arg 'x-queue-type' for {q}: "
     "received none but current is the value 'stream' of type 'longstr'"),
    (dict(durable=True), {"x-queue-type": "classic"},
     "inequivalent arg 'x-queue-type' for {q}: received 'classic' but current is 'stream'"),
    (dict(durable=True), {**STREAM, "x-max-age": "1h"},
     "inequivalent arg 'x-max-age' for {q}: "
     "received the value '1h' of type 'longstr' but current is none"),
    (dict(durable=False), STREAM,
     "inequivalent arg 'durable' for {q}: received 'false' but current is 'true'"),
], ids=["no-queue-type", "classic", "added-max-age", "non-durable"])
def test_inequivalent_redeclare_is_precondition_failed(
        broker, channel, unique_name, flags, arguments, expected):
    name = unique_name()
    declare_stream(channel, name)
    err = channel_error(channel, lambda: channel.queue_declare(name, arguments=arguments, **flags))
    assert err.reply_code == 406, err
    assert err.reply_text == "PRECONDITION_FAILED - " + expected.format(q=rs(broker, name)), err


def test_declare_ok_counts_the_log_and_no_consumers(connect, unique_name):
    conn = connect()
    name = new_stream(conn, unique_name)
    publish_each(publisher(conn), name, bodies("m", 5))
    # Reading is non-destructive: a consumer that read and acked everything leaves all 5.
    _, _, reader = consume(conn, name, offset="first")
    assert receive(conn, reader, 5) == bodies("m", 5)

    def counts():
        ch = conn.channel()
        ok = ch.queue_declare(name, passive=True).method
        ch.close()
        return ok.message_count, ok.consumer_count

    # RabbitMQ refreshes a stream's message count with its statistics (every few seconds);
    # its declare-ok consumer_count is always 0, even with a consumer attached.
    eventually(lambda: counts() == (5, 0), timeout=10, connection=conn)
    assert declare_stream(conn.channel(), name).message_count == 5


def test_delete_ok_of_a_stream_reports_zero_messages(connection, channel, unique_name):
    name = unique_name()
    declare_stream(channel, name)
    publish_each(publisher(connection), name, bodies("m", 3))
    assert channel.queue_delete(name).method.message_count == 0
    err = channel_error(channel, lambda: channel.queue_declare(name, passive=True))
    assert err.reply_code == 404, err


# --------------------------------------------------------------------------
# What a stream refuses
# --------------------------------------------------------------------------

def test_consume_without_prefetch_is_refused(broker, connection, channel, unique_name):
    name = new_stream(connection, unique_name)
    expected = f"PRECONDITION_FAILED - consumer prefetch count is not set for '{rs(broker, name)}'"
    err = channel_error(channel, lambda: channel.basic_consume(name, lambda *a: None))
    assert (err.reply_code, err.reply_text) == (406, expected), err

    # A global prefetch alone is no per-consumer prefetch either.
    ch = connection.channel()
    ch.basic_qos(prefetch_count=10, global_qos=True)
    err = channel_error(ch, lambda: ch.basic_consume(name, lambda *a: None))
    assert (err.reply_code, err.reply_text) == (406, expected), err


def test_consume_with_global_qos_is_not_implemented(broker, connect, unique_name):
    conn = connect()
    name = new_stream(conn, unique_name)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    ch.basic_qos(prefetch_count=10, global_qos=True)
    err = connection_error(ch, lambda: ch.basic_consume(name, lambda *a: None))
    assert err.reply_code == 540, err
    assert err.reply_text == f"NOT_IMPLEMENTED - {rs(broker, name)} does not support global qos"


def test_no_ack_consumer_is_not_implemented(broker, connect, unique_name):
    conn = connect()
    name = new_stream(conn, unique_name)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    err = connection_error(ch, lambda: ch.basic_consume(name, lambda *a: None, auto_ack=True))
    assert err.reply_code == 540, err
    assert err.reply_text == (
        "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues "
        + rs(broker, name)), err


@pytest.mark.parametrize("auto_ack", [False, True])
def test_basic_get_is_not_implemented(broker, connect, unique_name, auto_ack):
    conn = connect()
    name = new_stream(conn, unique_name)
    publish_each(publisher(conn), name, [b"m"])
    ch = conn.channel()
    err = connection_error(ch, lambda: ch.basic_get(name, auto_ack=auto_ack))
    assert err.reply_code == 540, err
    assert err.reply_text == (
        "NOT_IMPLEMENTED - basic.get not supported by stream queues " + rs(broker, name)), err


def test_purge_is_not_implemented(broker, connect, unique_name):
    conn = connect()
    name = new_stream(conn, unique_name)
    ch = conn.channel()
    err = connection_error(ch, lambda: ch.queue_purge(name))
    assert err.reply_code == 540, err
    assert err.reply_text == (
        "NOT_IMPLEMENTED - queue.purge not supported by stream queues " + rs(broker, name)), err


@pytest.mark.parametrize("method, requeue", [
    ("basic_nack", True), ("basic_nack", False), ("basic_reject", True), ("basic_reject", False),
])
def test_nack_and_reject_close_the_connection(broker, connect, unique_name, method, requeue):
    conn = connect()
    name = new_stream(conn, unique_name)
    publish_each(publisher(conn), name, bodies("m", 3))
    ch, _, collector = consume(conn, name, offset="first", ack=False)
    receive(conn, collector, 3)
    tag = collector.tags[0]
    err = connection_error(ch, lambda: getattr(ch, method)(tag, requeue=requeue))
    assert err.reply_code == 540, err
    assert err.reply_text == (
        "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues "
        + rs(broker, name)), err
    # Nothing was removed: a new reader still finds all three.
    other = connect()
    _, _, reader = consume(other, name, offset="first")
    receive_exactly(other, reader, bodies("m", 3))


def test_consumer_priority_is_refused(broker, connection, channel, unique_name):
    name = new_stream(connection, unique_name)
    channel.basic_qos(prefetch_count=10)
    err = channel_error(channel, lambda: channel.basic_consume(
        name, lambda *a: None, arguments={"x-priority": 5}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for {rs(broker, name)} "
        "of queue type rabbit_stream_queue"), err


def test_ack_of_unknown_delivery_tag_is_precondition_failed(connection, unique_name):
    name = new_stream(connection, unique_name)
    publish_each(publisher(connection), name, [b"m"])
    ch, _, collector = consume(connection, name, offset="first", ack=False)
    receive(connection, collector, 1)
    err = channel_error(ch, lambda: ch.basic_ack(999))
    assert err.reply_code == 406, err
    assert err.reply_text == "PRECONDITION_FAILED - unknown delivery tag 999", err


# --------------------------------------------------------------------------
# Non-destructive reading
# --------------------------------------------------------------------------

def test_two_consumers_each_read_everything_in_order(connect, unique_name):
    conn = connect()
    name = new_stream(conn, unique_name)
    expected = bodies("m", 20)
    publish_each(conn.channel(), name, expected)    # batched: chunking does not matter here

    readers = []
    for prefetch in (5, 50):
        c = connect()
        _, _, collector = consume(c, name, offset="first", prefetch=prefetch)
        readers.append((c, collector))
    for c, collector in readers:
        receive_exactly(c, collector, expected)
        assert collector.offsets == list(range(20))
        assert collector.tags == list(range(1, 21))
        assert all(not method.redelivered for method, _, _ in collector.deliveries)


def test_every_delivery_carries_its_offset_header(connection, unique_name):
    name = new_stream(connection, unique_name)
    publish_each(publisher(connection), name, [b"a", b"b"],
                 pika.BasicProperties(headers={"app": "x"}))
    _, _, collector = consume(connection, name, offset="first")
    receive(connection, collector, 2)
    for i, (_, props, _) in enumerate(collector.deliveries):
        assert props.headers == {"app": "x", "x-stream-offset": i}
        # A 64-bit integer field ('l'; pika marks those as compat.long): Java clients cast the
        # header to Long.
        assert isinstance(props.headers["x-stream-offset"], pika.compat.long)


def test_prefetch_bounds_unacked_deliveries_and_acks_return_credit(connection, unique_name):
    name = new_stream(connection, unique_name)
    expected = bodies("m", 100)
    publish_each(publisher(connection), name, expected)   # one chunk per message

    ch, _, collector = consume(connection, name, offset="first", prefetch=10, ack=False)
    receive(connection, collector, 10)
    quiet_period(connection)
    assert collector.bodies == expected[:10]

    # Acking returns credit: the consumer now acks as it goes and gets all 100.
    ch.basic_ack(collector.tags[-1], multiple=True)
    collector.ack = True
    receive(connection, collector, 100)
    assert collector.bodies == expected
    assert collector.offsets == list(range(100))


def test_a_new_consumer_from_first_reads_everything_again(connection, unique_name):
    name = new_stream(connection, unique_name)
    expected = bodies("m", 10)
    publish_each(publisher(connection), name, expected)

    ch, tag, first = consume(connection, name, offset="first")
    receive_exactly(connection, first, expected)
    ch.basic_cancel(tag)    # everything was delivered and acked: nothing is in flight

    _, _, again = consume(connection, name, offset="first")
    receive_exactly(connection, again, expected)
    assert again.offsets == list(range(10))


def test_exclusive_consumer_flag_does_not_lock_the_stream(connect, unique_name):
    # RabbitMQ 3.10 accepts basic.consume exclusive=true on a stream but does not enforce it:
    # another consumer is not refused (on a classic queue it would get 403).
    conn = connect()
    name = new_stream(conn, unique_name)
    publish_each(publisher(conn), name, [b"m0", b"m1"])
    _, _, exclusive = consume(conn, name, offset="first", exclusive=True)
    receive_exactly(conn, exclusive, [b"m0", b"m1"])
    other = connect()
    _, _, second = consume(other, name, offset="first")
    receive_exactly(other, second, [b"m0", b"m1"])


# --------------------------------------------------------------------------
# x-stream-offset
# --------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [None, "next"], ids=["absent", "next"])
def test_next_and_no_offset_read_only_new_messages(connection, unique_name, offset):
    name = new_stream(connection, unique_name)
    pub = publisher(connection)
    publish_each(pub, name, bodies("old", 3))
    _, _, collector = consume(connection, name, offset=offset)
    publish_each(pub, name, bodies("new", 2))
    receive_exactly(connection, collector, bodies("new", 2))
    assert collector.offsets == [3, 4]


def test_first_reads_from_the_start_then_live(connection, unique_name):
    name = new_stream(connection, unique_name)
    pub = publisher(connection)
    publish_each(pub, name, bodies("before", 3))
    _, _, collector = consume(connection, name, offset="first")
    receive(connection, collector, 3)
    publish_each(pub, name, bodies("live", 2))
    receive_exactly(connection, collector, bodies("before", 3) + bodies("live", 2))
    assert collector.offsets == [0, 1, 2, 3, 4]


def test_last_starts_at_the_last_chunk(connection, unique_name):
    name = new_stream(connection, unique_name)
    pub = publisher(connection)
    publish_each(pub, name, bodies("m", 5))     # confirmed one by one: one chunk each
    _, _, collector = consume(connection, name, offset="last")
    receive_exactly(connection, collector, [b"m4"])
    assert collector.offsets == [4]
    publish_each(pub, name, [b"live"])
    receive_exactly(connection, collector, [b"m4", b"live"])


def test_last_on_an_empty_stream_reads_new_messages(connection, unique_name):
    name = new_stream(connection, unique_name)
    _, _, collector = consume(connection, name, offset="last")
    publish_each(publisher(connection), name, [b"first-ever"])
    receive_exactly(connection, collector, [b"first-ever"])
    assert collector.offsets == [0]


def test_numeric_offset_starts_there(connection, unique_name):
    name = new_stream(connection, unique_name)
    publish_each(publisher(connection), name, bodies("m", 10))
    _, _, collector = consume(connection, name, offset=5)
    receive_exactly(connection, collector, bodies("m", 10)[5:])
    assert collector.offsets == [5, 6, 7, 8, 9]

    _, _, zero = consume(connection, name, offset=0)
    receive_exactly(connection, zero, bodies("m", 10))


def test_numeric_offset_beyond_the_end_waits_for_that_offset(connection, unique_name):
    name = new_stream(connection, unique_name)
    pub = publisher(connection)
    publish_each(pub, name, bodies("m", 10))    # offsets 0..9
    _, _, collector = consume(connection, name, offset=12)
    publish_each(pub, name, [b"o10", b"o11", b"o12", b"o13"])
    receive_exactly(connection, collector, [b"o12", b"o13"])
    assert collector.offsets == [12, 13]


def test_timestamp_and_interval_offsets_select_by_publish_time(connection, unique_name):
    """A chunk is stamped with the broker's clock when written.  Batch A is published, then
    the test waits (at most ~1.4 s, by the wall clock, which is what the offsets are about)
    until a whole second boundary Ts lies between A and the coming batch B with 0.2 s of margin,
    and until A is more than 1 s old.  Then B is published and read at once: the timestamp Ts
    and the interval ``1s`` both select exactly B, an older timestamp selects everything and a
    future one nothing until a new message arrives."""
    name = new_stream(connection, unique_name)
    pub = publisher(connection)
    publish_each(pub, name, bodies("a", 3))
    t_a = time.time()                       # every A chunk is stamped before this
    ts = math.floor(t_a + 0.2) + 1          # an integral second > t_a + 0.2
    resume = max(ts + 0.2, t_a + 1.3)
    quiet_period(connection, resume - time.time())
    publish_each(pub, name, bodies("b", 3))

    def at(seconds):
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)

    # The interval is measured from the subscription, so that consumer starts first.
    _, _, by_interval = consume(connection, name, offset="1s")
    _, _, by_timestamp = consume(connection, name, offset=at(ts))
    _, _, older = consume(connection, name, offset=at(ts - 60))
    _, _, by_hour = consume(connection, name, offset="1h")
    _, _, future = consume(connection, name, offset=at(ts + 3600))
    for collector, count in ((by_interval, 3), (by_timestamp, 3), (older, 6), (by_hour, 6)):
        receive(connection, collector, count)
    quiet_period(connection)
    assert by_interval.bodies == bodies("b", 3)
    assert by_interval.offsets == [3, 4, 5]
    assert by_timestamp.bodies == bodies("b", 3)
    assert older.bodies == bodies("a", 3) + bodies("b", 3)
    assert by_hour.bodies == bodies("a", 3) + bodies("b", 3)
    assert future.bodies == []
    publish_each(pub, name, [b"later"])
    receive_exactly(connection, future, [b"later"])


@pytest.mark.parametrize("offset", ["30", "0s", "30x"])
def test_invalid_offset_spec_is_refused(broker, connection, channel, unique_name, offset):
    name = new_stream(connection, unique_name)
    channel.basic_qos(prefetch_count=10)
    err = channel_error(channel, lambda: channel.basic_consume(
        name, lambda *a: None, arguments={"x-stream-offset": offset}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {rs(broker, name)}: "
        f'{{invalid_stream_offset_arg,{{longstr,<<"{offset}">>}}}}'), err


# --------------------------------------------------------------------------
# Publishing into a stream
# --------------------------------------------------------------------------

def test_messages_published_before_and_while_consuming_all_arrive(connect, unique_name):
    pub_conn = connect()
    name = new_stream(pub_conn, unique_name)
    pub = pub_conn.channel()
    publish_each(pub, name, bodies("before", 50))

    conn = connect()
    _, _, collector = consume(conn, name, offset="first", prefetch=7)
    receive(conn, collector, 10)
    publish_each(pub, name, bodies("during", 50))
    receive_exactly(conn, collector, bodies("before", 50) + bodies("during", 50))
    assert collector.offsets == list(range(100))


def test_properties_and_headers_survive(connection, unique_name):
    name = new_stream(connection, unique_name)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"h1": "v", "n": 42}, delivery_mode=2, priority=3,
        correlation_id="corr-1", reply_to="replies", expiration="60000",
        message_id="mid-1", timestamp=1700000000, type="kind", user_id="guest", app_id="app")
    pub = publisher(connection)
    pub.basic_publish("", name, b'{"k": 1}', props)
    pub.basic_publish("", name, b"plain")
    _, _, collector = consume(connection, name, offset="first")
    receive_exactly(connection, collector, [b'{"k": 1}', b"plain"])

    (_, got, _), (_, plain, _) = collector.deliveries
    assert got.content_type == "application/json"
    assert got.content_encoding == "utf-8"
    assert got.headers == {"h1": "v", "n": 42, "x-stream-offset": 0}
    assert got.delivery_mode == 2
    assert got.priority == 3
    assert got.correlation_id == "corr-1"
    assert got.reply_to == "replies"
    assert got.expiration == "60000"
    assert got.message_id == "mid-1"
    assert got.timestamp == 1700000000
    assert got.type == "kind"
    assert got.user_id == "guest"
    assert got.app_id == "app"
    # A message published without properties gets just the offset header.
    assert plain.headers == {"x-stream-offset": 1}
    assert plain.content_type is None and plain.message_id is None


def test_messages_routed_through_an_exchange_land_in_the_stream(connection, channel, unique_name):
    name = new_stream(connection, unique_name)
    key = unique_name("rk")
    channel.queue_bind(name, "amq.direct", routing_key=key)
    pub = publisher(connection)
    publish_each(pub, name, [b"direct"])
    pub.basic_publish("amq.direct", key, b"routed")
    _, _, collector = consume(connection, name, offset="first")
    receive_exactly(connection, collector, [b"direct", b"routed"])


# --------------------------------------------------------------------------
# Stream filtering (RabbitMQ 3.13 semantics; Warren only)
# --------------------------------------------------------------------------

def publish_filtered(connection, name):
    """a0(a) b0(b) n0(-) a1(a) b1(b) n1(-), one chunk each."""
    pub = publisher(connection)
    for i in range(2):
        for value in ("a", "b", None):
            headers = {"x-stream-filter-value": value} if value else None
            body = f"{value or 'n'}{i}".encode()
            pub.basic_publish("", name, body, pika.BasicProperties(headers=headers))
    return pub


def filter_values(collector):
    return [props.headers.get("x-stream-filter-value") for _, props, _ in collector.deliveries]


@warren_only_filtering
@pytest.mark.parametrize("spec", [["a"], "a"], ids=["array", "string"])
def test_stream_filter_delivers_matching_messages(connection, unique_name, spec):
    name = new_stream(connection, unique_name)
    pub = publish_filtered(connection, name)
    _, _, collector = consume(connection, name, offset="first",
                              arguments={"x-stream-filter": spec})
    receive(connection, collector, 2)
    quiet_period(connection)
    # RabbitMQ's Bloom filters may let non-matching messages through (a superset, in log order);
    # Warren filters exactly.
    assert [b for b, v in zip(collector.bodies, filter_values(collector)) if v == "a"] == [
        b"a0", b"a1"]
    if not amqp_mode_is_external():
        assert collector.bodies == [b"a0", b"a1"]
    offsets = collector.offsets
    assert offsets == sorted(offsets)
    # The header stays on the delivered message; live messages are filtered too.
    assert filter_values(collector)[0] == "a"
    pub.basic_publish("", name, b"b-live", pika.BasicProperties(
        headers={"x-stream-filter-value": "b"}))
    pub.basic_publish("", name, b"a-live", pika.BasicProperties(
        headers={"x-stream-filter-value": "a"}))
    receive(connection, collector, 3)
    quiet_period(connection)
    assert collector.bodies[-1] == b"a-live"
    if not amqp_mode_is_external():
        assert collector.bodies == [b"a0", b"a1", b"a-live"]


@warren_only_filtering
def test_stream_filter_with_several_values(connection, unique_name):
    name = new_stream(connection, unique_name)
    publish_filtered(connection, name)
    _, _, collector = consume(connection, name, offset="first",
                              arguments={"x-stream-filter": ["a", "b"]})
    receive(connection, collector, 4)
    quiet_period(connection)
    assert [b for b in collector.bodies if not b.startswith(b"n")] == [b"a0", b"b0", b"a1", b"b1"]
    if not amqp_mode_is_external():
        assert collector.bodies == [b"a0", b"b0", b"a1", b"b1"]


@warren_only_filtering
def test_stream_filter_match_unfiltered(connection, unique_name):
    name = new_stream(connection, unique_name)
    publish_filtered(connection, name)
    _, _, collector = consume(connection, name, offset="first", arguments={
        "x-stream-filter": ["a"], "x-stream-match-unfiltered": True})
    receive(connection, collector, 4)
    quiet_period(connection)
    assert [b for b in collector.bodies if not b.startswith(b"b")] == [b"a0", b"n0", b"a1", b"n1"]
    if not amqp_mode_is_external():
        assert collector.bodies == [b"a0", b"n0", b"a1", b"n1"]

    # Without a filter, a consumer reads everything, filter value or not.
    _, _, everything = consume(connection, name, offset="first")
    receive_exactly(connection, everything, [b"a0", b"b0", b"n0", b"a1", b"b1", b"n1"])


# --------------------------------------------------------------------------
# Management API
# --------------------------------------------------------------------------

@pytest.mark.skipif(amqp_mode_is_external() and not os.environ.get("MGMT_URL"),
                    reason="AMQP_URL is set without MGMT_URL: no management API to ask")
def test_management_api_shows_the_stream(api, broker, connection, unique_name):  # noqa: F811
    name = new_stream(connection, unique_name, **{"x-max-age": "7D",
                                                  "x-max-length-bytes": 1_000_000})
    publish_each(publisher(connection), name, bodies("m", 4))
    _, _, collector = consume(connection, name, offset="first", prefetch=7)
    receive(connection, collector, 4)

    path = "/api/queues/" + "/".join(
        urllib.parse.quote(part, safe="") for part in (broker.vhost, name))
    reply = api.get(path)
    assert reply.status == 200, reply
    info = reply.json
    assert info["name"] == name
    assert info["type"] == "stream"
    assert info["durable"] is True
    assert info["auto_delete"] is False
    assert info["exclusive"] is False
    assert info["arguments"] == {"x-queue-type": "stream", "x-max-age": "7D",
                                 "x-max-length-bytes": 1_000_000}

    # Counts come with RabbitMQ's statistics (every few seconds): poll.
    def counted():
        q = api.get(path).json
        assert (q.get("messages"), q.get("consumers"), q.get("state")) == (4, 1, "running"), q
        return True

    eventually(counted, timeout=10, connection=connection)
    consumers = api.get(path).json["consumer_details"]
    assert [c["arguments"] for c in consumers] == [{"x-stream-offset": "first"}]
    assert [c["prefetch_count"] for c in consumers] == [7]
    assert [c["ack_required"] for c in consumers] == [True]
