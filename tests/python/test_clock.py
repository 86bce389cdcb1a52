"""The virtual clock, a Warren test control behind ``--test-controls`` (no RabbitMQ equivalent):
``GET /api/warren/vhosts/{vhost}/clock`` reads a vhost's clock (``now``, ``offset_ms``,
``frozen``); ``POST`` with ``{"advance_ms": N}`` moves it forward and ``{"freeze": true|false}``
stops it or lets it run on. Delayed messages, message TTLs, queue expiry (``x-expires``),
consumer timeouts and ``x-death`` times of the vhost follow it, so a test of a 24-hour delay
takes milliseconds. A vhost's reset puts its clock back on real time; without the flag the
routes answer 404.

Warren-only; the module starts its own Warren with ``--test-controls``.
"""

import time
import urllib.parse

import pika
import pytest

from conftest import amqp_mode_is_external, close_all, eventually
from http_fixtures import api, capi, controlled, cvhost  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="Warren's own test controls (AMQP_URL is set)")

HOUR = 3_600_000
DAY = 24 * HOUR


def q(name):
    return urllib.parse.quote(name, safe="")


@pytest.fixture
def conn(controlled, cvhost):
    c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=controlled.port, virtual_host=cvhost))
    yield c
    close_all([c])


def move(capi, vhost, **body):
    r = capi.post(f"/api/warren/vhosts/{q(vhost)}/clock", body)
    assert r.status == 200, r
    return r.json


def count(conn, queue):
    ch = conn.channel()
    n = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return n


def stays(fn, seconds=0.3):
    """``fn()`` holds for ``seconds`` (what must not happen before the clock moves)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert fn()
        time.sleep(0.02)


def test_without_the_flag_the_clock_routes_are_404(api):
    assert api.get("/api/warren/vhosts/%2F/clock").status == 404
    assert api.post("/api/warren/vhosts/%2F/clock", {"advance_ms": DAY}).status == 404


def test_a_24_hour_delayed_message_arrives_when_the_clock_is_advanced(capi, cvhost, conn):
    ch = conn.channel()
    ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_declare("reminders")
    ch.queue_bind("reminders", "later", "r")
    ch.basic_publish("later", "r", b"tomorrow", pika.BasicProperties(headers={"x-delay": DAY}))
    before = capi.ok(f"/api/warren/vhosts/{q(cvhost)}/clock")
    assert before["frozen"] is False and abs(before["offset_ms"]) < 1000
    move(capi, cvhost, advance_ms=DAY - 60_000)
    stays(lambda: count(conn, "reminders") == 0)
    after = move(capi, cvhost, advance_ms=60_000)
    assert after["offset_ms"] >= DAY
    eventually(lambda: count(conn, "reminders") == 1, timeout=5)
    # Another vhost's clock did not move.
    assert abs(capi.ok("/api/warren/vhosts/%2F/clock")["offset_ms"]) < 1000


def test_message_ttl_and_x_death_time_follow_the_clock(capi, cvhost, conn):
    ch = conn.channel()
    ch.exchange_declare("dead", "fanout")
    ch.queue_declare("expired")
    ch.queue_bind("expired", "dead", "")
    ch.queue_declare("waiting", arguments={"x-message-ttl": HOUR, "x-dead-letter-exchange": "dead"})
    ch.basic_publish("", "waiting", b"stale")
    stays(lambda: count(conn, "waiting") == 1)
    moved = move(capi, cvhost, advance_ms=HOUR)
    eventually(lambda: count(conn, "expired") == 1, timeout=5)
    _, props, body = ch.basic_get("expired", auto_ack=True)
    assert body == b"stale"
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired"
    # The x-death time is the vhost's time (an hour ahead), not the real one.
    assert death["time"].timestamp() * 1000 >= moved["now"] - 5_000


def test_queue_expiry_follows_the_clock(capi, cvhost, conn):
    ch = conn.channel()
    ch.queue_declare("idle", arguments={"x-expires": HOUR})
    move(capi, cvhost, advance_ms=HOUR + 1000)

    def gone():
        return capi.get(f"/api/queues/{q(cvhost)}/idle").status == 404
    eventually(gone, timeout=5)


def test_a_frozen_clock_stops_ttls_until_advanced(capi, cvhost, conn):
    ch = conn.channel()
    ch.queue_declare("short")
    assert move(capi, cvhost, freeze=True)["frozen"] is True
    ch.basic_publish("", "short", b"x", pika.BasicProperties(expiration="100"))
    stays(lambda: count(conn, "short") == 1, seconds=0.5)     # 500 ms real, 0 ms for the vhost
    move(capi, cvhost, advance_ms=100)
    eventually(lambda: count(conn, "short") == 0, timeout=5)
    running = move(capi, cvhost, freeze=False)
    assert running["frozen"] is False


def test_consumer_timeout_follows_the_clock(capi, cvhost, conn):
    ch = conn.channel()
    ch.queue_declare("slow", arguments={"x-consumer-timeout": 30 * 60_000})
    ch.basic_publish("", "slow", b"job")
    consumer = conn.channel()
    cancelled = []
    consumer.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    got = []
    tag = consumer.basic_consume("slow", lambda c, m, p, b: got.append(b))
    eventually(lambda: got == [b"job"], connection=conn)
    move(capi, cvhost, advance_ms=31 * 60_000)
    eventually(lambda: cancelled == [tag], timeout=5, connection=conn)


def test_reset_puts_the_clock_back_on_real_time(capi, cvhost):
    move(capi, cvhost, advance_ms=DAY, freeze=True)
    assert capi.post(f"/api/warren/vhosts/{q(cvhost)}/reset").status == 204
    c = capi.ok(f"/api/warren/vhosts/{q(cvhost)}/clock")
    assert c["frozen"] is False and abs(c["offset_ms"]) < 1000, c


def test_bad_clock_requests(capi, cvhost):
    for body in ({}, {"advance_ms": -5}, {"advance_ms": "1h"}, {"freeze": "yes"}):
        assert capi.post(f"/api/warren/vhosts/{q(cvhost)}/clock", body).status == 400, body
    assert capi.get("/api/warren/vhosts/no-such-vhost/clock").status == 404
