"""Delayed redelivery through an ``x-delayed-message`` exchange, as MassTransit does it.

The contract is the rabbitmq_delayed_message_exchange plugin's: an exchange of type
``x-delayed-message`` declared with ``x-delayed-type`` (``direct``, ``topic``, ...) holds a
message whose ``x-delay`` header (ms) is above 0 until it is due, then routes it as the delayed
type would at that moment; without the header, or with 0 or a negative value, it routes at once.
The plugin sets the header of a message it held to the negated delay when it routes it (so it is
not delayed again further on), counts the held messages in the exchange's ``messages_delayed``
(management API), and cannot honour ``mandatory``: its ``route`` answers "no queue" for a message
it holds, so the channel returns every mandatory delayed publish at once with 312 NO_ROUTE (the
message is still routed when due: plugin issues #7, #136 and #174), and a message that no binding
matches when due is dropped.

The flow: a consumer of ``orders`` fails on every message; it republishes the message to the
delayed exchange ``orders.retry`` (bound to ``orders``) with ``x-delay`` 200 and an incremented
``x-retry-count``, and acks it; after 3 retries it rejects it (requeue=False), and ``orders``
dead-letters it into ``orders_error``.

The local RabbitMQ has no delayed-message plugin, so the module runs against Warren only. Each
test uses a fresh vhost (deleted afterwards).
"""

import time
import urllib.parse

import pika
import pytest

from conftest import amqp_mode_is_external, eventually, get_message, quiet_period
from http_fixtures import api, vhost  # noqa: F401 (fixtures)
from test_management import scrape

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="the RabbitMQ reached through AMQP_URL has no rabbitmq_delayed_message_exchange plugin")

RETRY_DELAY_MS = 200
MAX_RETRIES = 3


@pytest.fixture
def conn(broker, vhost):
    c = pika.BlockingConnection(broker.params(virtual_host=vhost))
    yield c
    if c.is_open:
        c.close()


def declare_delayed(ch, name, kind):
    ch.exchange_declare(name, "x-delayed-message", durable=True, arguments={"x-delayed-type": kind})


def messages_delayed(api, vhost, exchange):
    return api.ok(f"/api/exchanges/{vhost}/{urllib.parse.quote(exchange, safe='')}")["messages_delayed"]


def queue_depth(conn, queue):
    ch = conn.channel()
    count = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return count


def delay(ms, **headers):
    return pika.BasicProperties(headers={"x-delay": ms, **headers})


def test_failing_consumer_retries_through_the_delayed_exchange_then_dead_letters(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare("orders_error", "fanout", durable=True)
    ch.queue_declare("orders_error", durable=True)
    ch.queue_bind("orders_error", "orders_error")
    ch.queue_declare("orders", durable=True, arguments={"x-dead-letter-exchange": "orders_error"})
    declare_delayed(ch, "orders.retry", "direct")
    ch.queue_bind("orders", "orders.retry", "orders")

    arrivals = []       # (monotonic time, x-retry-count) per delivery from ``orders``
    failed_at = []      # monotonic time each retry was republished
    rejected = []

    def on_order(c, method, props, body):
        headers = dict(props.headers or {})
        retries = headers.get("x-retry-count", 0)
        arrivals.append((time.monotonic(), retries))
        assert body == b'{"order": 42}'
        # Processing always fails.
        if retries < MAX_RETRIES:
            headers.update({"x-delay": RETRY_DELAY_MS, "x-retry-count": retries + 1})
            c.basic_publish("orders.retry", "orders", body,
                            pika.BasicProperties(message_id=props.message_id, delivery_mode=2,
                                                 content_type=props.content_type, headers=headers))
            failed_at.append(time.monotonic())
            c.basic_ack(method.delivery_tag)
        else:
            c.basic_reject(method.delivery_tag, requeue=False)
            rejected.append(method.delivery_tag)

    ch.basic_qos(prefetch_count=1)
    tag = ch.basic_consume("orders", on_order)
    ch.basic_publish("", "orders", b'{"order": 42}',
                     pika.BasicProperties(message_id="order-42", delivery_mode=2,
                                          content_type="application/json"))
    eventually(lambda: rejected, timeout=5, connection=conn)
    # Nothing more arrives at ``orders``.
    quiet_period(conn, 0.3)
    ch.basic_cancel(tag)

    assert [retries for _, retries in arrivals] == [0, 1, 2, 3]
    for failure, (arrival, _) in zip(failed_at, arrivals[1:]):
        assert arrival - failure >= 0.150, f"a retry arrived {arrival - failure:.3f}s after its failure"
    assert queue_depth(conn, "orders") == 0
    assert messages_delayed(api, vhost, "orders.retry") == 0

    # Dead-lettered once, with its history.
    check = conn.channel()
    _, props, body = get_message(check, "orders_error", auto_ack=True)
    assert body == b'{"order": 42}'
    assert props.message_id == "order-42"
    assert props.headers["x-retry-count"] == MAX_RETRIES
    death = props.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", "orders", 1)
    # The message that was rejected was last published to the delayed exchange.
    assert (death["exchange"], death["routing-keys"]) == ("orders.retry", ["orders"])
    assert (props.headers["x-first-death-reason"], props.headers["x-first-death-queue"]) == (
        "rejected", "orders")
    assert check.basic_get("orders_error", auto_ack=True)[0] is None


def held_in_prometheus(broker):
    """The `warren_messages_delayed` gauge of the broker's /metrics."""
    _, _, samples, _ = scrape(broker.process)
    return samples["warren_messages_delayed"][()]


def test_delayed_messages_come_out_in_due_order_and_are_counted_while_held(api, broker, vhost, conn):
    ch = conn.channel()
    ch.confirm_delivery()
    declare_delayed(ch, "orders.retry", "direct")
    ch.queue_declare("orders")
    ch.queue_bind("orders", "orders.retry", "orders")
    # Delays 800 and 250 ms (not 600 / 100: the count of held messages is read over HTTP in
    # between, and must be read before the first is due even on a loaded machine).
    published = time.monotonic()
    ch.basic_publish("orders.retry", "orders", b"late", delay(800))
    ch.basic_publish("orders.retry", "orders", b"soon", delay(250))
    ch.basic_publish("orders.retry", "orders", b"negative", delay(-50))   # not held
    ch.basic_publish("orders.retry", "orders", b"zero", delay(0))         # not held
    assert eventually(lambda: messages_delayed(api, vhost, "orders.retry") == 2)
    # Prometheus counts what every delayed-message exchange holds.
    assert held_in_prometheus(broker) >= 2
    assert [ch.basic_get("orders", auto_ack=True)[2] for _ in range(2)] == [b"negative", b"zero"]
    assert ch.basic_get("orders", auto_ack=True)[0] is None

    arrived = []
    for _ in range(2):
        _, props, body = get_message(ch, "orders", auto_ack=True)
        arrived.append((body, time.monotonic() - published))
    assert [body for body, _ in arrived] == [b"soon", b"late"]
    assert arrived[0][1] >= 0.200 and arrived[1][1] >= 0.750, arrived
    assert eventually(lambda: messages_delayed(api, vhost, "orders.retry") == 0)
    assert ch.basic_get("orders", auto_ack=True)[0] is None


def test_delayed_topic_exchange_routes_by_pattern_when_due_and_drops_unmatched(api, vhost, conn):
    ch = conn.channel()
    ch.confirm_delivery()
    declare_delayed(ch, "events", "topic")
    ch.queue_declare("all_orders")
    ch.queue_declare("created")
    ch.queue_bind("all_orders", "events", "orders.#")
    ch.queue_bind("created", "events", "orders.*.created")
    # Same delay: they come due in publish order, so the unmatched one is handled first.
    ch.basic_publish("events", "invoices.eu.created", b"unmatched", delay(300))
    ch.basic_publish("events", "orders.eu.created", b"created", delay(300))
    ch.basic_publish("events", "orders.eu.shipped", b"shipped", delay(300))
    assert eventually(lambda: messages_delayed(api, vhost, "events") == 3)

    def bodies(queue, n):
        out = []
        def more():
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is not None:
                out.append(body)
            return len(out) == n
        eventually(more)
        return out

    assert bodies("all_orders", 2) == [b"created", b"shipped"]
    assert bodies("created", 1) == [b"created"]
    # The unmatched one left the exchange and went nowhere.
    assert eventually(lambda: messages_delayed(api, vhost, "events") == 0)
    for queue in ("all_orders", "created"):
        ch.basic_publish("", queue, b"marker")
        assert ch.basic_get(queue, auto_ack=True)[2] == b"marker"


def test_delivered_message_carries_the_negated_delay(vhost, conn):
    # The plugin rewrites x-delay to -delay when it routes a held message, so a consumer that
    # forwards the message with its headers does not delay it again.
    ch = conn.channel()
    declare_delayed(ch, "orders.retry", "direct")
    ch.queue_declare("orders")
    ch.queue_bind("orders", "orders.retry", "orders")
    ch.basic_publish("orders.retry", "orders", b"m", delay(RETRY_DELAY_MS, **{"x-retry-count": 1}))
    _, props, _ = get_message(ch, "orders", auto_ack=True)
    assert props.headers == {"x-delay": -RETRY_DELAY_MS, "x-retry-count": 1}


def test_mandatory_delayed_publish_is_not_returned_and_is_routed_when_due(api, vhost, conn):
    # rabbitmq-compat: the plugin answers "no queue" for a message it holds, so with mandatory
    # the channel returns it (312 NO_ROUTE) at once although it is routed when due (the plugin's
    # issues #7, #136, #174). Warren holds it without a return: the return would be false.
    ch = conn.channel()
    declare_delayed(ch, "orders.retry", "direct")
    ch.queue_declare("orders")
    ch.queue_bind("orders", "orders.retry", "orders")
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method, body)))
    ch.basic_publish("orders.retry", "orders", b"held", delay(1000), mandatory=True)
    # Held (the publish is asynchronous: wait until the exchange has it).
    assert eventually(lambda: messages_delayed(api, vhost, "orders.retry") == 1)
    _, _, body = get_message(ch, "orders", auto_ack=True)
    assert body == b"held"
    quiet_period(conn, 0.2)
    assert returned == []
