"""The message trace (a Warren test control, no RabbitMQ equivalent): what happened to each
message that carries a ``message_id``, ``correlation_id`` or W3C ``traceparent`` header, kept in
a bounded ring per vhost (``--message-trace-size``, 10,000 events by default; 0 = off) and read
with ``GET /api/warren/vhosts/{vhost}/trace?message_id=..`` (or ``correlation_id``, or
``traceparent``: the whole header or its trace id) as ``{"events": [...]}``, oldest first. Each
event has ``event`` (``published``, ``unroutable``, ``delayed``, ``released``, ``refused``,
``delivered``, ``got``, ``ack``, ``nack``, ``reject``, ``dead-lettered``, ``dropped``), ``at``,
the message's identities and the event's own fields (queues routed to, connection, channel,
user, consumer tag, reason, dead-letter exchange).

Warren-only (the trace is Warren's).
"""

import urllib.parse

import pika
import pytest

from conftest import amqp_mode_is_external, close_all, eventually
from http_fixtures import api, vhost  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(), reason="Warren's own message trace (AMQP_URL is set)")


def q(name):
    return urllib.parse.quote(name, safe="")


@pytest.fixture
def conn(broker, vhost):
    c = pika.BlockingConnection(broker.params(virtual_host=vhost, client_properties={"connection_name": "tracer-app"}))
    yield c
    close_all([c])


def trace(api, vhost, **query):
    r = api.get(f"/api/warren/vhosts/{q(vhost)}/trace?" + urllib.parse.urlencode(query))
    assert r.status == 200, r
    return r.json["events"]


def kinds(events):
    return [e["event"] for e in events]


def test_a_rejected_message_is_followed_through_its_dead_letter_hop(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx", "")
    ch.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "work", b"bad order", pika.BasicProperties(message_id="order-1"))
    ch.basic_publish("", "work", b"no identity")      # not traced
    method, _, _ = ch.basic_get("work")
    ch.basic_reject(method.delivery_tag, requeue=False)
    ch.basic_get("work", auto_ack=True)
    events = eventually(lambda: (lambda ev: ev if len(ev) == 5 else None)(trace(api, vhost, message_id="order-1")))
    assert kinds(events) == ["published", "got", "reject", "dead-lettered", "published"]
    pub, got, rej, dl, hop = events
    assert (pub["exchange"], pub["routing_key"], pub["queues"], pub["user"], pub["by_broker"]) == \
        ("", "work", ["work"], "guest", False)
    assert pub["connection"] and pub["channel"] == ch.channel_number
    assert (got["queue"], got["redelivered"]) == ("work", False)
    assert (rej["queue"], rej["requeue"]) == ("work", False)
    assert (dl["queue"], dl["reason"], dl["dead_letter_exchange"]) == ("work", "rejected", "dlx")
    assert (hop["exchange"], hop["queues"], hop["by_broker"]) == ("dlx", ["dead"], True)
    assert all(e["message_id"] == "order-1" for e in events)
    assert events[0]["at_ms"] <= events[-1]["at_ms"]


def test_deliveries_acks_and_redeliveries_of_a_consumer(api, vhost, conn):
    ch = conn.channel()
    ch.queue_declare("jobs")
    ch.basic_publish("", "jobs", b"job", pika.BasicProperties(correlation_id="req-7"))
    seen = []

    def on_message(c, m, p, b):
        seen.append(m.redelivered)
        if len(seen) == 1:
            c.basic_nack(m.delivery_tag, requeue=True)
        else:
            c.basic_ack(m.delivery_tag)
    tag = ch.basic_consume("jobs", on_message)
    eventually(lambda: len(seen) == 2, connection=conn)
    events = eventually(lambda: (lambda ev: ev if len(ev) == 5 else None)(trace(api, vhost, correlation_id="req-7")),
                        connection=conn)
    assert kinds(events) == ["published", "delivered", "nack", "delivered", "ack"]
    assert [e.get("redelivered") for e in events if e["event"] == "delivered"] == [False, True]
    assert events[1]["consumer_tag"] == tag
    assert events[2]["requeue"] is True


def test_unroutable_refused_expired_and_delayed_messages(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare("nowhere", "direct")
    ch.queue_declare("tiny", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare("short", arguments={"x-message-ttl": 1})
    ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_bind("tiny", "later", "t")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ch.basic_publish("nowhere", "x", b"lost", pika.BasicProperties(headers={"traceparent": tp}))
    ch.basic_publish("", "tiny", b"first")
    ch.basic_publish("", "tiny", b"second", pika.BasicProperties(message_id="over"))
    ch.basic_publish("", "short", b"stale", pika.BasicProperties(message_id="stale"))
    ch.basic_publish("later", "t", b"soon", pika.BasicProperties(message_id="soon", headers={"x-delay": 50}))
    # By the trace id alone, or the whole header.
    for key in ("4bf92f3577b34da6a3ce929d0e0e4736", tp):
        events = eventually(lambda: trace(api, vhost, traceparent=key))
        assert kinds(events) == ["unroutable"] and events[0]["exchange"] == "nowhere"
    assert kinds(eventually(lambda: (lambda e: e if len(e) == 2 else None)(trace(api, vhost, message_id="over")))) == \
        ["published", "refused"]
    stale = eventually(lambda: (lambda e: e if len(e) == 2 else None)(trace(api, vhost, message_id="stale")), timeout=5)
    assert kinds(stale) == ["published", "dropped"] and stale[1]["reason"] == "expired"
    soon = eventually(lambda: (lambda e: e if len(e) == 3 else None)(trace(api, vhost, message_id="soon")), timeout=5)
    assert kinds(soon) == ["delayed", "released", "refused"]      # tiny is full
    assert soon[0]["delay_ms"] == 50 and soon[1]["queues"] == ["tiny"]


def test_the_trace_needs_a_criterion_and_a_reset_clears_it(api, vhost, conn):
    assert api.get(f"/api/warren/vhosts/{q(vhost)}/trace").status == 400
    ch = conn.channel()
    ch.queue_declare("q1")
    ch.basic_publish("", "q1", b"x", pika.BasicProperties(message_id="gone-after-reset"))
    eventually(lambda: trace(api, vhost, message_id="gone-after-reset"))
    assert api.post(f"/api/warren/vhosts/{q(vhost)}/reset").status == 204
    assert trace(api, vhost, message_id="gone-after-reset") == []


def test_exchange_hops_and_the_alternate_exchange_are_shown(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare("ae", "fanout")
    ch.queue_declare("unrouted")
    ch.queue_bind("unrouted", "ae", "")
    ch.exchange_declare("front", "direct", arguments={"alternate-exchange": "ae"})
    ch.exchange_declare("inner", "topic")
    ch.exchange_bind("inner", "front", "orders")
    ch.queue_declare("orders")
    ch.queue_bind("orders", "inner", "#")
    ch.basic_publish("front", "orders", b"x", pika.BasicProperties(message_id="hop"))
    ch.basic_publish("front", "unknown", b"y", pika.BasicProperties(message_id="alt"))
    hop, = eventually(lambda: trace(api, vhost, message_id="hop"))
    assert (hop["queues"], hop["via"], hop["alternate_exchanges"]) == (["orders"], ["inner"], [])
    alt, = eventually(lambda: trace(api, vhost, message_id="alt"))
    assert (alt["queues"], alt["via"], alt["alternate_exchanges"]) == (["unrouted"], ["ae"], ["ae"])
