"""The firehose tracer: the ``amq.rabbitmq.trace`` exchange and per-vhost tracing.

Every vhost has ``amq.rabbitmq.trace`` (topic, durable, internal: clients may bind to
it but not publish to it).  Tracing is switched per vhost over the HTTP API
(``PUT /api/vhosts/{vhost}`` with ``{"tracing": true|false}``, shown by
``GET /api/vhosts/{vhost}``).  While it is on, every publish is copied to the trace
exchange with routing key ``publish.<exchange>`` and every delivery (basic.deliver
and basic.get-ok) with ``deliver.<queue>``; the copy carries the original body and
headers describing the message (exchange_name, routing_keys, properties, node,
vhost, connection, channel, user, and routed_queues or redelivered).  Messages that
came from the trace exchange are not traced again.

Each test uses a fresh vhost (so it runs against RabbitMQ too, with ``AMQP_URL`` and
``MGMT_URL``).  Passes against RabbitMQ 3.10.8 (with the rabbitmq_event_exchange
plugin enabled) and against Warren.
"""


import pika
import pytest

from conftest import Collector, channel_error, eventually, get_message, quiet_period
from http_fixtures import api, vhost  # noqa: F401 (fixtures)

TRACE = "amq.rabbitmq.trace"




@pytest.fixture
def conn(broker, vhost):
    connection = pika.BlockingConnection(broker.params(virtual_host=vhost))
    yield connection
    if connection.is_open:
        connection.close()


def set_tracing(api, vhost, on):
    assert api.put(f"/api/vhosts/{vhost}", {"tracing": on}).status == 204
    assert api.ok(f"/api/vhosts/{vhost}")["tracing"] is on


def trace_queue(channel):
    """A queue bound to the trace exchange with ``#``: it receives every copy."""
    channel.queue_declare("trace")
    channel.queue_bind("trace", TRACE, "#")
    return "trace"


def take(channel, queue, count):
    """basic.get (auto-ack) ``count`` messages from ``queue``, waiting for each;
    returns ``[(routing_key, headers, body, method, properties), ...]``."""
    out = []
    for _ in range(count):
        method, props, body = get_message(channel, queue, auto_ack=True)
        out.append((method.routing_key, props.headers, body, method, props))
    return out


def assert_no_more(connection, channel, queue):
    """Nothing else arrives in ``queue`` (a short quiet period proves the absence)."""
    quiet_period(connection)
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert method is None, (method, body)


def assert_common(headers, vhost, channel_number):
    assert headers["vhost"] == vhost
    assert headers["user"] == "guest"
    assert type(headers["channel"]) is int and headers["channel"] == channel_number
    assert isinstance(headers["connection"], str) and headers["connection"]
    assert isinstance(headers["node"], str) and headers["node"]


def test_trace_exchange_exists_in_every_new_vhost(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare(TRACE, passive=True)
    x = api.ok(f"/api/exchanges/{vhost}/{TRACE}")
    assert (x["name"], x["vhost"], x["type"]) == (TRACE, vhost, "topic")
    assert (x["durable"], x["internal"], x["auto_delete"]) == (True, True, False)
    # Tracing is off in a new vhost.
    assert api.ok(f"/api/vhosts/{vhost}")["tracing"] is False
    # Clients may not publish to it.
    err = channel_error(ch, lambda: ch.basic_publish(TRACE, "publish.x", b"forged"))
    assert (err.reply_code, err.reply_text) == (
        403, f"ACCESS_REFUSED - cannot publish to internal exchange '{TRACE}' in vhost '{vhost}'")


def test_publish_get_and_redelivery_are_traced(api, vhost, conn):
    ch = conn.channel()
    tq = trace_queue(ch)
    for q in ("work", "copy", "blind"):
        ch.queue_declare(q)
    set_tracing(api, vhost, True)
    props = pika.BasicProperties(content_type="text/plain", delivery_mode=2,
                                 headers={"CC": ["copy"], "BCC": ["blind"], "x-app": "v"})
    ch.basic_publish("", "work", b"payload", props)
    method, got_props, body = get_message(ch, "work")
    assert (body, method.redelivered) == (b"payload", False)
    assert got_props.headers == {"CC": ["copy"], "x-app": "v"}     # BCC is removed
    ch.basic_recover(requeue=True)
    method, _, body = get_message(ch, "work")
    assert (body, method.redelivered) == (b"payload", True)
    ch.basic_ack(method.delivery_tag)

    copies = take(ch, tq, 3)
    assert [c[0] for c in copies] == ["publish.", "deliver.work", "deliver.work"]
    for key, headers, body, method, trace_props in copies:
        assert body == b"payload"
        assert method.exchange == TRACE
        # The copy itself has no properties but its headers.
        assert (trace_props.content_type, trace_props.delivery_mode) == (None, None)
        assert headers["exchange_name"] == ""
        # Routing key, then the CC and BCC entries. rabbitmq-compat: Warren's deliver copies
        # list no BCC entries (the message it keeps has none); RabbitMQ's do.
        if key.startswith("publish."):
            assert headers["routing_keys"] == ["work", "copy", "blind"]
        else:
            assert headers["routing_keys"][:2] == ["work", "copy"]
        assert headers["properties"] == {"content_type": "text/plain", "delivery_mode": 2,
                                         "headers": {"CC": ["copy"], "x-app": "v"}}
        assert_common(headers, vhost, ch.channel_number)
    publish, first, second = (c[1] for c in copies)
    assert sorted(publish["routed_queues"]) == ["blind", "copy", "work"]
    assert "redelivered" not in publish
    assert "routed_queues" not in first and "routed_queues" not in second
    assert type(first["redelivered"]) is int and first["redelivered"] == 0
    assert type(second["redelivered"]) is int and second["redelivered"] == 1
    assert_no_more(conn, ch, tq)


def test_publish_routed_nowhere_has_no_deliver_copy(api, vhost, conn):
    ch = conn.channel()
    tq = trace_queue(ch)
    ch.exchange_declare("orders", "direct")
    set_tracing(api, vhost, True)
    ch.basic_publish("orders", "no.binding", b"lost")
    [(key, headers, body, _, _)] = take(ch, tq, 1)
    assert (key, body) == ("publish.orders", b"lost")
    assert headers["exchange_name"] == "orders"
    assert headers["routing_keys"] == ["no.binding"]
    assert headers["properties"] == {}
    assert headers["routed_queues"] == []
    assert_common(headers, vhost, ch.channel_number)
    assert_no_more(conn, ch, tq)


def test_consumer_deliveries_are_traced(api, vhost, conn):
    ch = conn.channel()
    tq = trace_queue(ch)
    ch.queue_declare("jobs")
    set_tracing(api, vhost, True)
    consumer_ch = conn.channel()
    received = Collector()
    consumer_ch.basic_consume("jobs", received, auto_ack=True)
    ch.basic_publish("", "jobs", b"one")
    ch.basic_publish("", "jobs", b"two")
    eventually(lambda: len(received.deliveries) == 2, connection=conn)

    copies = take(ch, tq, 4)
    publishes = [c for c in copies if c[0] == "publish."]
    delivers = [c for c in copies if c[0] == "deliver.jobs"]
    assert [c[2] for c in publishes] == [b"one", b"two"]
    assert [c[2] for c in delivers] == [b"one", b"two"]
    for _, headers, _, _, _ in publishes:
        assert headers["routed_queues"] == ["jobs"]
        assert_common(headers, vhost, ch.channel_number)
    for _, headers, _, _, _ in delivers:
        assert (headers["exchange_name"], headers["routing_keys"]) == ("", ["jobs"])
        assert headers["redelivered"] == 0
        # The delivering channel, not the publishing one.
        assert_common(headers, vhost, consumer_ch.channel_number)
    assert_no_more(conn, ch, tq)


def test_tracing_off_stops_the_copies(api, vhost, conn):
    ch = conn.channel()
    tq = trace_queue(ch)
    ch.queue_declare("q")
    set_tracing(api, vhost, True)
    ch.basic_publish("", "q", b"traced")
    assert [c[0] for c in take(ch, tq, 1)] == ["publish."]
    # Off again: takes effect for channels that are already open.
    set_tracing(api, vhost, False)
    ch.basic_publish("", "q", b"untraced")
    _, _, body = get_message(ch, "q", auto_ack=True)
    assert body == b"traced"
    _, _, body = get_message(ch, "q", auto_ack=True)
    assert body == b"untraced"
    assert_no_more(conn, ch, tq)


def test_vhost_reports_tracing(api, vhost):
    assert api.ok(f"/api/vhosts/{vhost}")["tracing"] is False
    set_tracing(api, vhost, True)
    listed = {v["name"]: v for v in api.ok("/api/vhosts")}
    assert listed[vhost]["tracing"] is True
    # A PUT without "tracing" leaves it as it is.
    assert api.put(f"/api/vhosts/{vhost}", {}).status == 204
    assert api.ok(f"/api/vhosts/{vhost}")["tracing"] is True
    set_tracing(api, vhost, False)
    listed = {v["name"]: v for v in api.ok("/api/vhosts")}
    assert listed[vhost]["tracing"] is False


def test_consuming_trace_copies_is_not_traced(api, vhost, conn):
    ch = conn.channel()
    tq = trace_queue(ch)
    ch.queue_declare("q")
    set_tracing(api, vhost, True)
    consumer_ch = conn.channel()
    received = Collector()
    consumer_ch.basic_consume(tq, received, auto_ack=True)

    ch.basic_publish("", "q", b"first")
    eventually(lambda: received.deliveries, connection=conn)
    quiet_period(conn)
    # Only the publish copy: delivering it to the consumer made no deliver.trace copy.
    assert [(m.routing_key, b) for m, _, b in received.deliveries] == [("publish.", b"first")]

    # What decides is where the message came from, not the queue: a message
    # published straight into the trace queue is traced when delivered from it.
    del received.deliveries[:]
    ch.basic_publish("", tq, b"direct")
    eventually(lambda: len(received.deliveries) >= 3, connection=conn)
    quiet_period(conn)
    got = sorted((m.exchange, m.routing_key, b) for m, _, b in received.deliveries)
    assert got == [("", tq, b"direct"),
                   (TRACE, f"deliver.{tq}", b"direct"),
                   (TRACE, "publish.", b"direct")]
    deliver = next(p.headers for m, p, _ in received.deliveries
                   if m.routing_key == f"deliver.{tq}")
    assert deliver["routing_keys"] == [tq]
    assert_common(deliver, vhost, consumer_ch.channel_number)
    assert ch.queue_declare(tq, passive=True).method.message_count == 0
