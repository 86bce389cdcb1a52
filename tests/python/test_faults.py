"""Fault injection, Warren's test controls behind ``--test-controls`` (no RabbitMQ equivalent):
``POST /api/warren/faults`` with ``{"fault": KIND, <target>, ...}`` makes the broker do, on
demand, what a client's failure handling must cope with, through a real socket:

* ``block`` / ``unblock``: ``connection.blocked`` (with ``reason``) / ``connection.unblocked``;
* ``close-connection`` / ``close-channel``: connection.close / channel.close with the given
  reply code, and the text after the code's name as RabbitMQ words it (``541`` + ``"injected"``
  is ``INTERNAL_ERROR - injected``); other channels and connections go on;
* ``cancel-consumers``: basic.cancel to every consumer of a queue, as when it is deleted (the
  queue and its messages stay);
* ``nack-publishes``: the next N publishes on confirm channels of a vhost are nacked (and go
  nowhere).

``GET /api/warren/faults`` lists what was applied; a vhost's reset (and ``DELETE``) clears its
faults. Without ``--test-controls`` every fault route answers 404 and changes nothing. Also here:
``POST /api/warren/reset`` (the whole broker) and wait-until-idle counting unconfirmed publishes.

Warren-only (the controls are Warren's); the module starts its own Warren with the flag.
"""

import time
import urllib.parse
import uuid

import pika
import pika.exceptions
import pytest

from conftest import amqp_mode_is_external, close_all, eventually
from http_fixtures import api, capi, controlled, cvhost  # noqa: F401 (fixtures)
from test_management import Api

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="Warren's own test controls (AMQP_URL is set)")


def q(name):
    return urllib.parse.quote(name, safe="")


def connect(p, vhost, name):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=p.port, virtual_host=vhost,
        client_properties={"connection_name": name}))


def fault(capi, body, applied=None):
    r = capi.post("/api/warren/faults", body)
    assert r.status == 200, r
    if applied is not None:
        assert r.json == {"applied": applied}, r.json
    return r.json


def test_without_the_flag_fault_routes_are_404_and_change_nothing(api, broker):
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for body in ({"fault": "nack-publishes", "vhost": "/", "count": 5},
                     {"fault": "close-connection", "vhost": "/", "code": 320, "text": "x"}):
            assert api.post("/api/warren/faults", body).status == 404
        assert api.get("/api/warren/faults").status == 404
        assert api.delete("/api/warren/faults").status == 404
        qn = f"faults-untouched-{uuid.uuid4().hex[:6]}"
        ch.queue_declare(qn, auto_delete=True)
        ch.basic_publish("", qn, b"acked")   # raises if nacked
        assert conn.is_open
    finally:
        close_all([conn])


def test_block_and_unblock_reach_the_client(controlled, capi, cvhost):
    conn = connect(controlled, cvhost, "blocked-one")
    seen = []
    conn.add_on_connection_blocked_callback(lambda c, m: seen.append(("blocked", m.method.reason)))
    conn.add_on_connection_unblocked_callback(lambda c, m: seen.append(("unblocked", None)))
    try:
        fault(capi, {"fault": "block", "connection": "blocked-one", "reason": "disk full (test)"}, applied=1)
        eventually(lambda: seen == [("blocked", "disk full (test)")], connection=conn)
        fault(capi, {"fault": "unblock", "connection": "blocked-one"}, applied=1)
        eventually(lambda: seen[-1:] == [("unblocked", None)], connection=conn)
        log = capi.ok("/api/warren/faults")
        assert [(f["fault"], f["target"], f["vhost"]) for f in log if f["vhost"] == cvhost] == [
            ("block", "connection 'blocked-one'", cvhost), ("unblock", "connection 'blocked-one'", cvhost)]
    finally:
        close_all([conn])


def test_close_connection_and_channel_with_a_reply_code(controlled, capi, cvhost):
    victim = connect(controlled, cvhost, "victim")
    bystander = connect(controlled, cvhost, "bystander")
    try:
        ch1, ch2 = bystander.channel(), bystander.channel()
        fault(capi, {"fault": "close-channel", "connection": "bystander", "channel": ch1.channel_number,
                     "code": 406, "text": "injected"}, applied=1)

        def channel_closed():
            bystander.process_data_events(time_limit=0.05)
            return ch1.is_closed
        eventually(channel_closed)
        ch2.queue_declare("", exclusive=True)      # the connection's other channel goes on
        fault(capi, {"fault": "close-connection", "connection": "victim", "code": 541,
                     "text": "injected"}, applied=1)
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            for _ in range(100):
                victim.process_data_events(time_limit=0.05)
        assert (e.value.reply_code, e.value.reply_text) == (541, "INTERNAL_ERROR - injected")
        assert bystander.is_open
        bystander.channel().queue_declare("", exclusive=True)
    finally:
        close_all([victim, bystander])


def test_cancel_consumers_as_when_the_queue_is_deleted(controlled, capi, cvhost):
    conn = connect(controlled, cvhost, "consumer")
    try:
        ch = conn.channel()
        ch.queue_declare("jobs")
        cancelled = []
        ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
        tag = ch.basic_consume("jobs", lambda *a: None)
        fault(capi, {"fault": "cancel-consumers", "vhost": cvhost, "queue": "jobs"}, applied=1)
        eventually(lambda: cancelled == [tag], connection=conn)
        ok = ch.queue_declare("jobs", passive=True).method
        assert ok.consumer_count == 0       # the queue stays, without consumers
        r = capi.post("/api/warren/faults", {"fault": "cancel-consumers", "vhost": cvhost, "queue": "nope"})
        assert r.status == 404
    finally:
        close_all([conn])


def test_nack_the_next_publishes_then_reset_clears_the_fault(controlled, capi, cvhost):
    conn = connect(controlled, cvhost, "publisher")
    try:
        ch = conn.channel()
        ch.queue_declare("orders")
        ch.confirm_delivery()
        fault(capi, {"fault": "nack-publishes", "vhost": cvhost, "count": 2}, applied=2)
        for _ in range(2):
            with pytest.raises(pika.exceptions.NackError):
                ch.basic_publish("", "orders", b"nacked")
        ch.basic_publish("", "orders", b"acked")
        assert ch.queue_declare("orders", passive=True).method.message_count == 1
        fault(capi, {"fault": "nack-publishes", "vhost": cvhost, "count": 10})
    finally:
        close_all([conn])
    assert capi.post(f"/api/warren/vhosts/{q(cvhost)}/reset").status == 204
    assert [f for f in capi.ok("/api/warren/faults") if f["vhost"] == cvhost] == []
    conn = connect(controlled, cvhost, "publisher-2")
    try:
        ch = conn.channel()
        ch.queue_declare("orders")
        ch.confirm_delivery()
        ch.basic_publish("", "orders", b"acked after reset")
    finally:
        close_all([conn])


def test_bad_fault_requests(capi, cvhost):
    for body, status in (({"fault": "explode", "vhost": cvhost}, 400),
                         ({"fault": "block"}, 400),
                         ({"fault": "close-connection", "vhost": cvhost, "code": 99, "text": "x"}, 400),
                         ({"fault": "nack-publishes", "vhost": "no-such-vhost", "count": 1}, 404)):
        assert capi.post("/api/warren/faults", body).status == status, body
    other = Api(capi.port, "nobody", "nope")
    assert other.post("/api/warren/faults", {"fault": "block", "vhost": cvhost}).status == 401


def test_confirmed_publishes_leave_nothing_unconfirmed_and_the_vhost_idle(controlled, capi, cvhost):
    """wait-idle counts publishes not yet confirmed (``messages_unconfirmed`` of the channel
    view, ``busy.messages_unconfirmed``); once every confirm is sent both are 0."""
    conn = connect(controlled, cvhost, "unconfirmed")
    try:
        ch = conn.channel()
        ch.queue_declare("sink", durable=True)
        ch.confirm_delivery()
        for i in range(50):
            ch.basic_publish("", "sink", str(i).encode(), pika.BasicProperties(delivery_mode=2))
        ch.queue_purge("sink")
        r = capi.get(f"/api/warren/vhosts/{q(cvhost)}/wait-idle?quiet_ms=50&timeout_ms=3000")
        assert r.status == 200, r
        chans = [c for c in capi.ok("/api/channels") if c["vhost"] == cvhost]
        assert chans and all(c["messages_unconfirmed"] == 0 for c in chans), chans
    finally:
        close_all([conn])


def test_reset_of_the_whole_broker(controlled, capi, cvhost):
    conn = connect(controlled, cvhost, "whole")
    other = connect(controlled, "/", "whole-default")
    try:
        conn.channel().queue_declare("leftover", durable=True)
        other.channel().queue_declare("leftover-default", durable=True)
        r = capi.post("/api/warren/reset")
        assert r.status == 200 and r.json == {"problems": []}, r
        assert capi.get(f"/api/queues/{q(cvhost)}/leftover").status == 404
        assert capi.get("/api/queues/%2F/leftover-default").status == 404
        assert capi.get(f"/api/vhosts/{q(cvhost)}").status == 200      # vhosts and users stay
        assert capi.post("/api/warren/reset?keep_definitions=maybe").status == 400
    finally:
        close_all([conn, other])


@pytest.fixture
def open_named(controlled, cvhost):
    """Open connections to the test's vhost by client-given name; closed after the test."""
    opened = []

    def open_(name):
        opened.append(connect(controlled, cvhost, name))
        return opened[-1]
    yield open_
    close_all(opened)


def test_hold_confirms_then_release_and_wait_idle_sees_them(open_named, capi, cvhost):
    conn = open_named("held-confirms")
    ch = conn.channel()
    ch.queue_declare("sink")
    confirmed = []
    # Publishes and confirms without blocking on them (pika's channel underneath).
    ch._impl.confirm_delivery(ack_nack_callback=lambda frame: confirmed.append(frame.method.delivery_tag),
                              callback=lambda _frame: None)
    conn.process_data_events(time_limit=0.1)
    fault(capi, {"fault": "hold-confirms", "connection": "held-confirms"}, applied=1)
    ch._impl.basic_publish("", "sink", b"held")
    conn.process_data_events(time_limit=0.3)
    assert confirmed == []
    busy = capi.get(f"/api/warren/vhosts/{q(cvhost)}/wait-idle?quiet_ms=50&timeout_ms=300")
    assert busy.status == 408 and busy.json["busy"]["messages_unconfirmed"] == 1, busy.json
    fault(capi, {"fault": "release-confirms", "connection": "held-confirms"}, applied=1)
    eventually(lambda: confirmed == [1], connection=conn)
    busy = capi.get(f"/api/warren/vhosts/{q(cvhost)}/wait-idle?quiet_ms=50&timeout_ms=300")
    assert busy.json["busy"]["messages_unconfirmed"] == 0 and busy.json["busy"]["queues"][0]["name"] == "sink"


def test_drop_the_connection_after_n_frames(open_named, capi):
    conn = open_named("dropped")
    ch = conn.channel()
    ch.queue_declare("drops")
    fault(capi, {"fault": "drop-after-frames", "connection": "dropped", "frames": 3}, applied=1)
    # basic.publish is 3 frames (method, header, body): the socket goes after the third.
    with pytest.raises((pika.exceptions.StreamLostError, pika.exceptions.ConnectionClosed)):
        for _ in range(20):
            ch.basic_publish("", "drops", b"x")
            conn.process_data_events(time_limit=0.05)
    eventually(lambda: not [c for c in capi.ok("/api/connections") if c.get("user_provided_name") == "dropped"])


def test_delay_what_a_connection_is_sent(open_named, capi):
    conn = open_named("slowed")
    ch = conn.channel()
    ch.queue_declare("slow-replies")
    fault(capi, {"fault": "delay-deliveries", "connection": "slowed", "delay_ms": 400}, applied=1)
    started = time.monotonic()
    ch.queue_declare("slow-replies", passive=True)      # its declare-ok is held back
    assert time.monotonic() - started >= 0.35
    fault(capi, {"fault": "delay-deliveries", "connection": "slowed", "delay_ms": 0}, applied=1)
    ch.queue_declare("slow-replies", passive=True)
