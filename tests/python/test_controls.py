"""Warren's test controls (no RabbitMQ equivalent), for suites that share one broker:

* ``POST /api/warren/vhosts/{vhost}/reset`` returns a vhost to its state after creation: its
  connections are closed with ``320 CONNECTION_FORCED``, every queue, exchange (but the standard
  ``amq.*`` ones), policy, operator policy, limit and delayed message is gone and tracing is off;
  users and permissions stay, and nothing of another vhost is touched;
* ``GET /api/warren/vhosts/{vhost}/wait-idle?quiet_ms=Q&timeout_ms=T`` answers 200 once the vhost
  has had nothing ready, unacknowledged or delayed for Q ms, and 408 naming what is still busy
  after T ms.

Warren-only (the controls are Warren's).
"""

import json
import subprocess
import threading
import urllib.parse

import pika
import pika.exceptions
import pytest

from conftest import amqp_mode_is_external, eventually, warren_binary
from http_fixtures import api, vhost  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="Warren's own test controls (AMQP_URL is set)")


def q(name):
    return urllib.parse.quote(name, safe="")


def connect(broker, vhost):
    return pika.BlockingConnection(broker.params(virtual_host=vhost))


def test_reset_empties_the_vhost_closes_its_connections_and_keeps_the_others(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.exchange_declare("orders", "topic", durable=True)
    ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_declare("work", durable=True)
    ch.queue_bind("work", "orders", "#")
    for i in range(3):
        ch.basic_publish("orders", "a", str(i).encode())
    ch.basic_publish("later", "k", b"held", pika.BasicProperties(headers={"x-delay": 600000}))
    assert api.put(f"/api/policies/{q(vhost)}/ttl", {"pattern": "^w", "definition": {"message-ttl": 60000}}).status == 201
    assert api.put(f"/api/vhost-limits/{q(vhost)}/max-queues", {"value": 10}).status == 204
    assert api.put(f"/api/vhosts/{q(vhost)}", {"tracing": True}).status == 204
    # Another vhost's queue, which a reset of this one must not touch.
    other = connect(broker, "/")
    other.channel().queue_declare("controls-untouched", auto_delete=False)
    other.channel().basic_publish("", "controls-untouched", b"stays")

    assert api.post(f"/api/warren/vhosts/{q(vhost)}/reset").status == 204

    def closed_by_broker():
        try:
            conn.process_data_events(time_limit=0.05)
        except pika.exceptions.ConnectionClosedByBroker as e:
            return e
        return None
    closed = eventually(closed_by_broker)
    assert closed.reply_code == 320, closed
    assert api.ok(f"/api/queues/{q(vhost)}") == []
    names = sorted(x["name"] for x in api.ok(f"/api/exchanges/{q(vhost)}"))
    assert names == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.rabbitmq.trace", "amq.topic"]
    assert api.ok(f"/api/policies/{q(vhost)}") == []
    assert api.ok(f"/api/vhost-limits/{q(vhost)}") == []
    assert api.ok(f"/api/vhosts/{q(vhost)}")["tracing"] is False
    # Permissions stay: the same user works in the vhost again at once.
    again = connect(broker, vhost)
    again.channel().queue_declare("work")
    again.close()
    # The other vhost is untouched.
    ch = other.channel()
    assert ch.queue_declare("controls-untouched", passive=True).method.message_count == 1
    ch.queue_delete("controls-untouched")
    other.close()


def test_only_administrators_reset(api, broker, vhost):
    name = "controls-mgmt-user"
    assert api.put(f"/api/users/{name}", {"password": "pw", "tags": "management"}).status in (201, 204)
    try:
        reply = api.as_user(name, "pw").post(f"/api/warren/vhosts/{q(vhost)}/reset")
        assert (reply.status, reply.json) == (401, {"error": "not_authorised", "reason": "Not administrator user"})
        assert api.post("/api/warren/vhosts/no-such-vhost/reset").status == 404
    finally:
        api.delete(f"/api/users/{name}")


def test_wait_idle_answers_once_consumers_have_acked_everything(api, broker, vhost):
    idle = api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?quiet_ms=20")
    assert idle.status == 200 and idle.json["idle"] is True, idle
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("jobs")
    ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_bind("jobs", "later", "k")
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", "jobs", str(i).encode())
    ch.basic_publish("later", "k", b"held", pika.BasicProperties(headers={"x-delay": 300}))
    # Busy: the timeout answer names what is left.
    busy = api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?timeout_ms=50")
    assert busy.status == 408, busy
    assert busy.json["idle"] is False
    assert busy.json["busy"]["queues"] == [{"name": "jobs", "messages_ready": 50, "messages_unacknowledged": 0}]
    assert busy.json["busy"]["messages_delayed"] == 1

    # A consumer that acks each message, on its own connection and thread.
    done = threading.Event()
    seen = []

    def consume():
        c = connect(broker, vhost)
        cch = c.channel()
        cch.basic_qos(prefetch_count=5)

        def on_message(chan, method, props, body):
            seen.append(body)
            chan.basic_ack(method.delivery_tag)
            if len(seen) == 51:
                chan.stop_consuming()
        cch.basic_consume("jobs", on_message)
        cch.start_consuming()
        c.close()
        done.set()
    t = threading.Thread(target=consume, daemon=True)
    t.start()
    idle = api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?quiet_ms=50&timeout_ms=10000")
    assert (idle.status, idle.json["idle"]) == (200, True), idle
    # Idle means every message was delivered and acked, the delayed one included.
    assert len(seen) == 51 and b"held" in seen
    assert done.wait(5)
    conn.close()


def test_ctl_reset_vhost_and_wait_idle(api, broker, vhost):
    ctl = [str(warren_binary()), "ctl", "--port", str(broker.process.http_port), "-p", vhost]
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("leftover")
    ch.confirm_delivery()
    ch.basic_publish("", "leftover", b"x")
    r = subprocess.run(ctl + ["wait_idle", "--timeout-ms", "50"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "leftover" in r.stderr, (r.stdout, r.stderr)
    r = subprocess.run(ctl + ["reset_vhost"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f'Resetting vhost "{vhost}" ...' in r.stdout
    r = subprocess.run(ctl + ["wait_idle", "--quiet-ms", "10"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["idle"] is True
    assert api.ok(f"/api/queues/{q(vhost)}") == []


def test_peek_reads_ready_messages_without_taking_them(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("orders")
    ch.confirm_delivery()   # each publish returns once it is enqueued
    bodies = [b"zero", b'{"order": 1, "items": [2, 3]}', b"\xff\xfebinary", b"three", b"four"]
    for i, body in enumerate(bodies):
        ch.basic_publish("", "orders", body, pika.BasicProperties(message_id=f"m{i}", headers={"n": i}))
    page = api.ok(f"/api/warren/queues/{q(vhost)}/orders/messages?offset=1&count=2")
    assert (page["total"], page["offset"]) == (5, 1)
    first, second = page["messages"]
    assert (first["position"], first["payload"], first["payload_json"]) == (1, bodies[1].decode(), {"order": 1, "items": [2, 3]})
    assert first["properties"]["message_id"] == "m1" and first["properties"]["headers"] == {"n": 1}
    assert (second["position"], second["payload_encoding"]) == (2, "base64")
    assert first["redelivered"] is False
    # Nothing was taken, reordered or marked redelivered.
    assert ch.queue_declare("orders", passive=True).method.message_count == 5
    method, props, body = ch.basic_get("orders", auto_ack=True)
    assert (body, method.redelivered, props.message_id) == (b"zero", False, "m0")
    assert api.ok(f"/api/warren/queues/{q(vhost)}/orders/messages")["total"] == 4
    assert api.get(f"/api/warren/queues/{q(vhost)}/missing/messages").status == 404
    conn.close()


def test_peek_into_a_stream_reads_from_its_first_kept_message(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("events", durable=True, arguments={"x-queue-type": "stream"})
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", "events", b"e-%d" % i, pika.BasicProperties(message_id=f"e{i}"))
    page = api.ok(f"/api/warren/queues/{q(vhost)}/events/messages?offset=1&count=2")
    assert page["total"] == 4
    assert [m["payload"] for m in page["messages"]] == ["e-1", "e-2"]
    assert [m["properties"]["headers"]["x-stream-offset"] for m in page["messages"]] == [1, 2]
    # A stream keeps its messages: peeking again sees the same.
    assert api.ok(f"/api/warren/queues/{q(vhost)}/events/messages")["total"] == 4
    conn.close()


def test_search_finds_messages_across_the_queues_of_a_vhost(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    for name in ("a.work", "b.dead-letters"):
        ch.queue_declare(name)
    ch.confirm_delivery()
    ch.basic_publish("", "a.work", b"first", pika.BasicProperties(message_id="id-1"))
    ch.basic_publish("", "a.work", b"customer 42 ordered", pika.BasicProperties(correlation_id="c-7"))
    ch.basic_publish("", "b.dead-letters", b"failed", pika.BasicProperties(message_id="id-1", headers={"tenant": "acme"}))
    base = f"/api/warren/vhosts/{q(vhost)}/messages"

    def where(query):
        return [(m["queue"], m["position"]) for m in api.ok(f"{base}?{query}")["messages"]]
    assert where("message_id=id-1") == [("a.work", 0), ("b.dead-letters", 0)]
    assert where("correlation_id=c-7") == [("a.work", 1)]
    assert where("header=tenant:acme") == [("b.dead-letters", 0)]
    assert where("body=customer%2042") == [("a.work", 1)]
    assert where("message_id=id-1&header=tenant:acme") == [("b.dead-letters", 0)]
    assert where("message_id=nothing") == []
    assert api.get(base).status == 400
    conn.close()


def test_peek_into_a_delayed_message_exchange(api, broker, vhost):
    conn = connect(broker, vhost)
    try:
        ch = conn.channel()
        ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
        ch.queue_declare("due")
        ch.queue_bind("due", "later", "k")
        for body, delay in ((b"second", 600_000), (b"first", 300_000), (b"third", 900_000)):
            ch.basic_publish("later", "k", body, pika.BasicProperties(message_id=body.decode(), headers={"x-delay": delay}))
        page = eventually(lambda: (lambda r: r.json if r.json["total"] == 3 else None)(
            api.get(f"/api/warren/exchanges/{q(vhost)}/later/delayed?count=2")))
        assert [m["payload"] for m in page["messages"]] == ["first", "second"]
        assert [m["position"] for m in page["messages"]] == [0, 1]
        assert 200_000 < page["messages"][0]["due_in_ms"] <= 300_000
        assert page["messages"][0]["properties"]["message_id"] == "first"
        rest = api.get(f"/api/warren/exchanges/{q(vhost)}/later/delayed?offset=2").json
        assert [m["payload"] for m in rest["messages"]] == ["third"]
        # Nothing was taken: still held, nothing delivered.
        assert api.get(f"/api/warren/exchanges/{q(vhost)}/later/delayed").json["total"] == 3
        assert ch.queue_declare("due", passive=True).method.message_count == 0
        assert api.get(f"/api/warren/exchanges/{q(vhost)}/nope/delayed").status == 404
    finally:
        conn.close()


def test_wait_idle_for_a_list_of_queues(api, broker, vhost):
    conn = connect(broker, vhost)
    try:
        ch = conn.channel()
        ch.queue_declare("watched")
        ch.queue_declare("elsewhere")
        ch.basic_publish("", "elsewhere", b"not watched")
        r = api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?queues=watched&quiet_ms=20&timeout_ms=2000")
        assert (r.status, r.json["idle"]) == (200, True), r
        ch.basic_publish("", "watched", b"pending")
        r = api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?queues=watched,elsewhere&quiet_ms=20&timeout_ms=200")
        assert r.status == 408
        assert sorted(x["name"] for x in r.json["busy"]["queues"]) == ["elsewhere", "watched"]
        assert api.get(f"/api/warren/vhosts/{q(vhost)}/wait-idle?queues=nope").status == 404
    finally:
        conn.close()
