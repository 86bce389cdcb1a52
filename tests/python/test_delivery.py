"""Delivery guarantees and consumer semantics through pika: publisher confirms,
transactions, consumer cancel notifications, exclusive consumers, consumer
priorities, single active consumer, direct reply-to, channel.flow, the memory
alarm (connection.blocked) and the consumer acknowledgement timeout.

The memory-alarm and consumer-timeout tests need a broker the test can
configure, so they run against Warren only (skipped when AMQP_URL is set).
"""

import time

import pika
import pika.exceptions
import pytest

from conftest import (Collector, quiet_period, WarrenProcess, amqp_mode_is_external,
                      channel_error, drain, eventually, fresh_queue,
                      get_message, ready_count, warren_binary)

REPLY_TO = "amq.rabbitmq.reply-to"

warren_only = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="needs a Warren started by the test (AMQP_URL is set: RabbitMQ "
           "cannot be reconfigured from a test)")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

class CancelWatcher:
    """add_on_cancel_callback target: records broker-initiated basic.cancel."""

    def __init__(self, channel):
        self.tags = []
        channel.add_on_cancel_callback(self)

    def __call__(self, method_frame):
        self.tags.append(method_frame.method.consumer_tag)


def declare_shared(channel, unique_name, arguments=None):
    """A non-exclusive queue (usable from several connections), deleted after
    the test by the ``unique_name`` fixture."""
    name = unique_name()
    channel.queue_declare(name, arguments=arguments)
    return name


def fill(channel, queue, count, prefix="m"):
    for i in range(1, count + 1):
        channel.basic_publish("", queue, f"{prefix}{i}".encode())


@pytest.fixture
def configured_warren():
    """Factory: ``configured_warren("--flag", "value")`` -> params of a running
    Warren started with those arguments; stopped after the test."""
    started = []

    def start(*extra_args):
        binary = warren_binary()
        if not binary.is_file():
            pytest.fail(f"Warren binary not found at {binary}", pytrace=False)
        proc = WarrenProcess(binary, extra_args=extra_args)
        started.append(proc)
        proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.terminate()


def params_for(proc, **overrides):
    settings = dict(host=proc.host, port=proc.port,
                    credentials=pika.PlainCredentials("guest", "guest"),
                    connection_attempts=1, socket_timeout=5, stack_timeout=10)
    settings.update(overrides)
    return pika.ConnectionParameters(**settings)


# --------------------------------------------------------------------------
# Publisher confirms
# --------------------------------------------------------------------------

def test_confirmed_publishes_all_return_without_error(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.confirm_delivery()
    n = 1000
    for i in range(n):
        # In confirm mode BlockingChannel.basic_publish waits for the ack and
        # raises NackError / UnroutableError otherwise.
        assert channel.basic_publish("", queue, f"c{i}".encode()) is None
    assert ready_count(connection, queue) == n


def test_mandatory_unroutable_publish_in_confirm_mode_is_returned_before_ack(channel, unique_name):
    channel.confirm_delivery()
    nowhere = unique_name("nowhere")
    # pika raises UnroutableError only if basic.return arrived before the
    # basic.ack that completes the publish.
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish("amq.direct", nowhere, b"bounce", mandatory=True)
    (returned,) = info.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.exchange == "amq.direct"
    assert returned.method.routing_key == nowhere
    assert returned.body == b"bounce"

    # The channel is still usable and still in confirm mode.
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"routable", mandatory=True)
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"routable"


# --------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------

def test_tx_publishes_invisible_until_commit(connection, unique_name):
    tx = connection.channel()
    queue = fresh_queue(tx, unique_name)
    tx.tx_select()
    fill(tx, queue, 3, "t")
    # Round trip on the tx channel: the publishes have been handled.
    tx.queue_declare(queue, passive=True)
    assert ready_count(connection, queue) == 0

    tx.tx_commit()
    assert ready_count(connection, queue) == 3
    observer = connection.channel()
    assert [body for _, body in drain(observer, queue)] == [b"t1", b"t2", b"t3"]


def test_tx_rollback_discards_publishes(connection, unique_name):
    tx = connection.channel()
    queue = fresh_queue(tx, unique_name)
    tx.tx_select()
    fill(tx, queue, 2, "discard")
    tx.tx_rollback()
    assert ready_count(connection, queue) == 0

    tx.basic_publish("", queue, b"kept")
    tx.queue_declare(queue, passive=True)
    assert ready_count(connection, queue) == 0, "still transactional after rollback"
    tx.tx_commit()
    assert ready_count(connection, queue) == 1


def _tx_with_unacked_m1(connection, unique_name):
    setup = connection.channel()
    queue = fresh_queue(setup, unique_name)
    fill(setup, queue, 3)
    eventually(lambda: ready_count(connection, queue) == 3)
    tx = connection.channel()
    tx.tx_select()
    method, _, body = get_message(tx, queue)
    assert body == b"m1"
    return tx, queue, method.delivery_tag


def test_tx_ack_applied_at_commit(connection, unique_name):
    tx, queue, tag = _tx_with_unacked_m1(connection, unique_name)
    tx.basic_ack(tag)
    tx.tx_commit()
    tx.close()
    eventually(lambda: ready_count(connection, queue) == 2)
    observer = connection.channel()
    assert observer.basic_get(queue, auto_ack=True)[2] == b"m2"


def test_tx_rollback_undoes_ack_and_message_is_redelivered_after_close(connection, unique_name):
    tx, queue, tag = _tx_with_unacked_m1(connection, unique_name)
    tx.basic_ack(tag)
    tx.tx_rollback()
    # Still unacked (held by the channel), not requeued.
    assert ready_count(connection, queue) == 2
    tx.close()
    eventually(lambda: ready_count(connection, queue) == 3)
    observer = connection.channel()
    method, _, body = observer.basic_get(queue, auto_ack=True)
    assert body == b"m1"
    assert method.redelivered is True


def test_tx_commit_on_non_transactional_channel_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_commit()
    assert info.value.reply_code == 406
    assert "channel is not transactional" in info.value.reply_text


def test_tx_rollback_on_non_transactional_channel_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_rollback()
    assert info.value.reply_code == 406


def test_confirm_select_after_tx_select_is_406(channel):
    channel.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.confirm_delivery()
    assert info.value.reply_code == 406
    assert "cannot switch from tx to confirm mode" in info.value.reply_text


def test_tx_select_after_confirm_select_is_406(channel):
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_select()
    assert info.value.reply_code == 406
    assert "cannot switch from confirm to tx mode" in info.value.reply_text


# --------------------------------------------------------------------------
# Consumer cancel notification, exclusive consumers
# --------------------------------------------------------------------------

def test_deleting_queue_from_another_connection_cancels_consumer(connect, unique_name):
    consumer_conn = connect()
    ch = consumer_conn.channel()
    queue = declare_shared(ch, unique_name)
    cancels = CancelWatcher(ch)
    tag = ch.basic_consume(queue, Collector(), auto_ack=True)

    other = connect().channel()
    other.queue_delete(queue)
    eventually(lambda: cancels.tags == [tag], connection=consumer_conn)
    assert ch.is_open
    assert tag not in ch.consumer_tags


def test_exclusive_consumer_refuses_consumers_from_other_connections(connect, unique_name):
    first = connect().channel()
    queue = declare_shared(first, unique_name)
    first.basic_consume(queue, Collector(), exclusive=True)

    second = connect().channel()
    err = channel_error(second, lambda: second.basic_consume(queue, Collector()))
    assert err.reply_code == 403
    assert err.reply_text.startswith("ACCESS_REFUSED")


# --------------------------------------------------------------------------
# Consumer priorities
# --------------------------------------------------------------------------

def test_higher_priority_consumer_is_preferred_while_it_has_credit(connection, unique_name):
    admin = connection.channel()
    queue = fresh_queue(admin, unique_name)
    hi_ch, lo_ch = connection.channel(), connection.channel()
    hi_ch.basic_qos(prefetch_count=2)
    hi, lo = Collector(), Collector()
    lo_ch.basic_consume(queue, lo, arguments={"x-priority": 1})
    hi_ch.basic_consume(queue, hi, arguments={"x-priority": 10})
    fill(admin, queue, 10, "p")

    eventually(lambda: len(hi.deliveries) == 2 and len(lo.deliveries) == 8,
               connection=connection)
    assert hi.bodies == [b"p1", b"p2"]
    assert lo.bodies == [f"p{i}".encode() for i in range(3, 11)]

    hi_ch.basic_ack(0, multiple=True)
    hi_ch.queue_declare(queue, passive=True)   # the acks have been handled
    fill(admin, queue, 2, "q")
    eventually(lambda: len(hi.deliveries) == 4, connection=connection)
    assert hi.bodies[2:] == [b"q1", b"q2"]
    assert len(lo.deliveries) == 8


def test_equal_priority_consumers_round_robin(connection, unique_name):
    admin = connection.channel()
    queue = fresh_queue(admin, unique_name)
    a, b, low = Collector(), Collector(), Collector()
    connection.channel().basic_consume(queue, low, auto_ack=True, arguments={"x-priority": 1})
    connection.channel().basic_consume(queue, a, auto_ack=True, arguments={"x-priority": 5})
    connection.channel().basic_consume(queue, b, auto_ack=True, arguments={"x-priority": 5})
    fill(admin, queue, 10, "r")
    eventually(lambda: len(a.deliveries) + len(b.deliveries) == 10, connection=connection)
    assert (len(a.deliveries), len(b.deliveries), len(low.deliveries)) == (5, 5, 0)


# --------------------------------------------------------------------------
# Single active consumer
# --------------------------------------------------------------------------

def test_single_active_consumer_takes_over_with_requeued_messages(connection, unique_name):
    admin = connection.channel()
    queue = unique_name()
    admin.queue_declare(queue, exclusive=True,
                        arguments={"x-single-active-consumer": True})
    fill(admin, queue, 4)
    eventually(lambda: ready_count(connection, queue) == 4)

    ch_a, ch_b, ch_c = (connection.channel() for _ in range(3))
    ch_a.basic_qos(prefetch_count=2)
    a, b, c = Collector(), Collector(), Collector()
    ch_a.basic_consume(queue, a)
    ch_b.basic_consume(queue, b)
    ch_c.basic_consume(queue, c)
    eventually(lambda: len(a.deliveries) == 2, connection=connection)

    def two_ready_three_consumers():
        ok = admin.queue_declare(queue, passive=True).method
        assert (ok.message_count, ok.consumer_count) == (2, 3)
        return True

    eventually(two_ready_three_consumers, connection=connection)
    assert a.bodies == [b"m1", b"m2"]
    assert b.deliveries == [] and c.deliveries == []

    ch_a.close()
    eventually(lambda: len(b.deliveries) == 4, connection=connection)
    assert b.bodies == [b"m1", b"m2", b"m3", b"m4"]
    assert [m.redelivered for m, _, _ in b.deliveries] == [True, True, False, False]
    assert c.deliveries == []


def test_single_active_consumer_cancel_hands_over(connection, unique_name):
    admin = connection.channel()
    queue = unique_name()
    admin.queue_declare(queue, exclusive=True,
                        arguments={"x-single-active-consumer": True})
    ch_a, ch_b, ch_c = (connection.channel() for _ in range(3))
    a, b, c = Collector(), Collector(), Collector()
    tag_a = ch_a.basic_consume(queue, a)
    ch_b.basic_consume(queue, b)
    ch_c.basic_consume(queue, c)

    admin.basic_publish("", queue, b"m1")
    eventually(lambda: len(a.deliveries) == 1, connection=connection)
    ch_a.basic_ack(a.tags[0])
    ch_a.basic_cancel(tag_a)

    fill(admin, queue, 3, "n")
    eventually(lambda: len(b.deliveries) == 3, connection=connection)
    assert b.bodies == [b"n1", b"n2", b"n3"]
    assert len(a.deliveries) == 1 and c.deliveries == []


@pytest.mark.skipif(amqp_mode_is_external(),
                    reason="RabbitMQ 3.10 does not hand over to the next single active consumer "
                           "while the cancelled one's channel is open (not after its acks, nor "
                           "at the next publish): Warren does once the acks come")
def test_single_active_consumer_cancel_hands_over_a_backlog_once_acked(connection, unique_name):
    """The next consumer in line takes the messages queued while the active one held its one
    credit once the cancelled consumer's delivery is acked, without any further publish."""
    admin = connection.channel()
    queue = unique_name()
    admin.queue_declare(queue, exclusive=True,
                        arguments={"x-single-active-consumer": True})
    ch_a, ch_b = connection.channel(), connection.channel()
    ch_a.basic_qos(prefetch_count=1)
    a, b = Collector(), Collector()
    tag_a = ch_a.basic_consume(queue, a)
    ch_b.basic_consume(queue, b)
    fill(admin, queue, 4, "m")
    eventually(lambda: len(a.deliveries) == 1, connection=connection)
    ch_a.basic_cancel(tag_a)
    quiet_period(connection)
    assert b.deliveries == []
    ch_a.basic_ack(a.tags[0])
    eventually(lambda: len(b.deliveries) == 3, connection=connection)
    assert b.bodies == [b"m2", b"m3", b"m4"]
    assert a.bodies == [b"m1"]


# --------------------------------------------------------------------------
# Direct reply-to
# --------------------------------------------------------------------------

def test_direct_reply_to_rpc(connect, unique_name):
    server_conn = connect()
    server = server_conn.channel()
    requests = fresh_queue(server, unique_name)

    client_conn = connect()
    client = client_conn.channel()
    replies = Collector()
    ctag = client.basic_consume(REPLY_TO, replies, auto_ack=True)
    client.basic_publish("", requests, b"ping", pika.BasicProperties(
        reply_to=REPLY_TO, correlation_id="corr-42"))

    _, props, body = get_message(server, requests, auto_ack=True)
    assert body == b"ping"
    assert props.reply_to.startswith(REPLY_TO + "."), props.reply_to
    assert props.correlation_id == "corr-42"
    server.basic_publish("", props.reply_to, b"pong", pika.BasicProperties(
        correlation_id=props.correlation_id))

    eventually(lambda: replies.deliveries, connection=client_conn)
    method, reply_props, reply_body = replies.deliveries[0]
    assert reply_body == b"pong"
    assert reply_props.correlation_id == "corr-42"
    assert method.consumer_tag == ctag
    assert method.routing_key == props.reply_to


def test_direct_reply_to_publish_before_consume_is_406(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    err = channel_error(channel, lambda: channel.basic_publish(
        "", queue, b"orphan", pika.BasicProperties(reply_to=REPLY_TO)))
    assert err.reply_code == 406
    assert "fast reply consumer does not exist" in err.reply_text


def test_direct_reply_to_consume_with_acks_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.basic_consume(REPLY_TO, Collector(), auto_ack=False)
    assert info.value.reply_code == 406
    assert "reply consumer cannot acknowledge" in info.value.reply_text


# --------------------------------------------------------------------------
# channel.flow
# --------------------------------------------------------------------------

def test_channel_flow_active_true_is_acknowledged(channel):
    assert channel.flow(True) is True


def test_channel_flow_active_false_is_not_implemented(connection, channel):
    # RabbitMQ refuses client-side flow control with a connection error.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        channel.flow(False)
    assert info.value.reply_code == 540
    assert "active=false" in info.value.reply_text
    assert connection.is_closed


# --------------------------------------------------------------------------
# Memory alarm (Warren only)
# --------------------------------------------------------------------------

def blocking_events(conn):
    """The connection.blocked / connection.unblocked notifications ``conn`` receives, as a list
    of ("blocked", reason) and ("unblocked", None), filled in as they arrive."""
    events = []
    conn.add_on_connection_blocked_callback(
        lambda c, frame: events.append(("blocked", frame.method.reason)))
    conn.add_on_connection_unblocked_callback(
        lambda c, frame: events.append(("unblocked", None)))
    return events


def memory_alarm_round_trip(warren, setup, publish_one, queue):
    """Publish 50 x 4 KiB (over a 64 KiB watermark) on a fresh connection: it is blocked; a
    consumer on another connection drains ``queue``: it is unblocked. ``setup(channel)``
    declares what is needed; returns the deliveries."""
    pub_conn = pika.BlockingConnection(params_for(warren))
    con_conn = None
    try:
        events = blocking_events(pub_conn)
        pub = pub_conn.channel()
        setup(pub)
        n = 50
        body = b"x" * 4096                     # 50 x 4 KiB = 200 KiB > 64 KiB
        for i in range(n):
            publish_one(pub, i, body)
        eventually(lambda: ("blocked", "low on memory") in events, connection=pub_conn)
        assert ("unblocked", None) not in events

        # Drain from a connection that never published (it is not blocked).
        con_conn = pika.BlockingConnection(params_for(warren))
        got = Collector()
        con_conn.channel().basic_consume(queue, got, auto_ack=True)

        def drained_and_unblocked():
            con_conn.process_data_events(time_limit=0)
            pub_conn.process_data_events(time_limit=0)
            return len(got.deliveries) == n and ("unblocked", None) in events

        eventually(drained_and_unblocked, timeout=10)
        assert [e for e, _ in events] == ["blocked", "unblocked"]
        return got.deliveries
    finally:
        for conn in (pub_conn, con_conn):
            if conn is not None and conn.is_open:
                conn.close()


@warren_only
def test_memory_alarm_blocks_publisher_until_drained(configured_warren):
    warren = configured_warren("--memory-high-watermark", "65536")
    queue = "warren-pytest.alarm." + str(time.monotonic_ns())
    got = memory_alarm_round_trip(
        warren,
        lambda ch: ch.queue_declare(queue),
        lambda ch, i, body: ch.basic_publish("", queue, body, pika.BasicProperties(message_id=str(i))),
        queue)
    assert [p.message_id for _, p, _ in got] == [str(i) for i in range(50)]


@warren_only
def test_small_messages_count_with_their_overhead_against_the_memory_watermark(configured_warren):
    """The memory alarm counts what a queued message costs besides its body: 30,000 16-byte
    messages are 480 KB of bodies, far under half a 4 MiB watermark, but about 6 MB with their
    routing keys and bookkeeping, so the queue pages them out beyond its in-memory window (counting bodies only,
    all of them stayed in memory) and nothing is lost."""
    import base64
    import json
    import urllib.request
    warren = configured_warren("--memory-high-watermark", str(4 * 1024 * 1024))
    queue = "warren-pytest.small." + str(time.monotonic_ns())
    n = 30_000
    conn = pika.BlockingConnection(params_for(warren))
    try:
        ch = conn.channel()
        ch.queue_declare(queue)
        for i in range(n):
            ch.basic_publish("", queue, b"%016d" % i)
        auth = "Basic " + base64.b64encode(b"guest:guest").decode()
        url = f"http://127.0.0.1:{warren.http_port}/api/queues/%2F/{queue}"

        def paged():
            req = urllib.request.Request(url, headers={"Authorization": auth})
            with urllib.request.urlopen(req, timeout=5) as r:
                q = json.load(r)
            return q["messages"] == n and q["messages_ready_ram"] < n // 2

        eventually(paged, timeout=30, connection=conn)
        got = Collector()
        ch.basic_consume(queue, got, auto_ack=True)
        eventually(lambda: len(got.deliveries) == n, timeout=30, connection=conn)
        assert got.bodies == [b"%016d" % i for i in range(n)]
    finally:
        conn.close()


@warren_only
def test_small_unacked_messages_count_with_their_overhead_against_the_memory_watermark(configured_warren):
    """Delivered but unacknowledged messages cost what ready ones do besides their bodies:
    14,000 16-byte messages held unacked by a consumer without a prefetch limit are 224 KB of
    bodies, far under a 2 MiB watermark, but about 2.6 MB with their routing keys and
    bookkeeping. The publisher
    is blocked until the consumer acks, then everything arrives."""
    warren = configured_warren("--memory-high-watermark", str(2 * 1024 * 1024))
    queue = "warren-pytest.unacked." + str(time.monotonic_ns())
    n = 14_000
    con_conn = pika.BlockingConnection(params_for(warren))
    pub_conn = None
    try:
        con = con_conn.channel()
        con.queue_declare(queue)
        got = Collector()
        con.basic_consume(queue, got, auto_ack=False)
        pub_conn = pika.BlockingConnection(params_for(warren))
        events = blocking_events(pub_conn)
        pub = pub_conn.channel()
        for i in range(n):
            pub.basic_publish("", queue, b"%016d" % i)

        def blocked():
            con_conn.process_data_events(time_limit=0)
            return ("blocked", "low on memory") in events
        eventually(blocked, timeout=15, connection=pub_conn)

        acked = [0]

        def all_acked_and_unblocked():
            con_conn.process_data_events(time_limit=0)
            pub_conn.process_data_events(time_limit=0)
            if got.deliveries and got.tags[-1] > acked[0]:
                acked[0] = got.tags[-1]
                con.basic_ack(acked[0], multiple=True)
            return len(got.deliveries) == n and ("unblocked", None) in events
        eventually(all_acked_and_unblocked, timeout=30)
        assert got.bodies == [b"%016d" % i for i in range(n)]
    finally:
        for conn in (pub_conn, con_conn):
            if conn is not None and conn.is_open:
                conn.close()


@warren_only
def test_messages_held_by_a_delayed_exchange_count_against_the_memory_watermark(configured_warren):
    # Held (not yet in any queue), their bodies are memory all the same: publishers are blocked
    # until they come due and are consumed.
    warren = configured_warren("--memory-high-watermark", "65536")
    suffix = str(time.monotonic_ns())
    exchange, queue = "warren-pytest.delayed." + suffix, "warren-pytest.due." + suffix

    def setup(ch):
        ch.exchange_declare(exchange, "x-delayed-message", arguments={"x-delayed-type": "fanout"})
        ch.queue_declare(queue)
        ch.queue_bind(queue, exchange)
    memory_alarm_round_trip(
        warren, setup,
        lambda ch, i, body: ch.basic_publish(exchange, "", body, pika.BasicProperties(headers={"x-delay": 300})),
        queue)

# --------------------------------------------------------------------------
# Consumer acknowledgement timeout (Warren only)
# --------------------------------------------------------------------------

@pytest.mark.skipif(amqp_mode_is_external(),
                    reason="RabbitMQ 3.10 has no x-consumer-timeout queue argument")
def test_consumer_timeout_cancels_consumer_and_requeues(connection, unique_name):
    admin = connection.channel()
    queue = unique_name()
    admin.queue_declare(queue, exclusive=True, arguments={"x-consumer-timeout": 300})
    admin.basic_publish("", queue, b"slow")

    ch = connection.channel()
    cancels = CancelWatcher(ch)
    got = Collector()
    # Timed from before basic.consume: the broker delivers (and starts its 300 ms clock) after
    # this, so a client slow to see the delivery cannot make the bound fail.
    started = time.monotonic()
    tag = ch.basic_consume(queue, got)
    eventually(lambda: got.deliveries, connection=connection)
    eventually(lambda: cancels.tags == [tag], timeout=10, connection=connection)
    assert time.monotonic() - started >= 0.25, "cancelled before the timeout"

    method, _, body = get_message(admin, queue, auto_ack=True)
    assert body == b"slow"
    assert method.redelivered is True
    assert ch.is_open
