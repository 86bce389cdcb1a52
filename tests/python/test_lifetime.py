"""Message lifetime: dead-lettering and the headers it adds, TTL-driven
dead-lettering, length-limit overflow with and without confirms, and quorum
queue delivery limits.

Every expectation was checked against RabbitMQ 3.10, whose dead-lettered
messages carry:

* ``x-death``: an array of tables, most recent death first, one entry per
  (queue, reason) pair.  Each entry has exactly ``count`` (a signed 64-bit
  ``l`` value), ``reason`` (``rejected`` / ``expired`` / ``maxlen`` /
  ``delivery_limit``), ``queue``, ``time`` (an AMQP timestamp), ``exchange``
  and ``routing-keys`` (an array of the original routing key plus any ``CC``
  keys), and ``original-expiration`` when the message had an ``expiration``
  property.  Dying again for the same (queue, reason) increments ``count`` of
  that entry (moved to the front) instead of adding one.
* ``x-first-death-queue``, ``x-first-death-reason``,
  ``x-first-death-exchange``, set once and never changed.  RabbitMQ 3.10 does
  NOT send any ``x-last-death-*`` headers (those arrived in 3.13).

The dead-lettered copy loses its ``expiration`` property and its ``CC`` /
``BCC`` headers; everything else (body, other properties and headers) is
kept.  The Node suite (tests/node/test/lifetime.test.js) covers TTL, queue
expiry, length limits, priorities and argument validation without DLX.
"""

from datetime import datetime, timedelta, timezone

import pika
import pika.compat
import pika.exceptions
import pytest

from conftest import (
    Collector,
    channel_error,
    drain,
    eventually,
    get_message,
    quiet_period,
    ready_count,
)

X_DEATH_KEYS = {"count", "reason", "queue", "time", "exchange", "routing-keys"}
FIRST_DEATH_HEADERS = ("x-first-death-queue", "x-first-death-reason",
                       "x-first-death-exchange")
LAST_DEATH_HEADERS = ("x-last-death-queue", "x-last-death-reason",
                      "x-last-death-exchange")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def dead_letter_queue(channel, unique_name):
    """A plain queue to collect dead letters in (reached through the default
    exchange with x-dead-letter-exchange "" and the queue name as routing key)."""
    dlq = unique_name("dlq")
    channel.queue_declare(dlq)
    return dlq


def dl_args(dlq, **extra):
    """Arguments dead-lettering into ``dlq`` through the default exchange."""
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    args.update(extra)
    return args


def assert_x_death_entry(entry, *, count, reason, queue, exchange, routing_keys,
                         original_expiration=None):
    """Check one x-death table exactly as RabbitMQ 3.10 builds it."""
    expected_keys = set(X_DEATH_KEYS)
    if original_expiration is not None:
        expected_keys.add("original-expiration")
    assert set(entry) == expected_keys, entry
    # count is encoded as a signed 64-bit 'l' field, which pika decodes to its
    # long type (a 32-bit 'I' would decode to a plain int).
    assert type(entry["count"]) is pika.compat.long, (type(entry["count"]), entry)
    assert entry["count"] == count, entry
    assert entry["reason"] == reason, entry
    assert entry["queue"] == queue, entry
    assert entry["exchange"] == exchange, entry
    assert entry["routing-keys"] == routing_keys, entry
    # time is an AMQP timestamp (pika decodes 'T' to an aware datetime).
    assert isinstance(entry["time"], datetime), entry
    now = datetime.now(timezone.utc)
    assert now - timedelta(seconds=30) <= entry["time"] <= now + timedelta(seconds=5), entry
    if original_expiration is not None:
        assert entry["original-expiration"] == original_expiration, entry


def assert_first_death(headers, *, queue, reason, exchange):
    assert headers["x-first-death-queue"] == queue, headers
    assert headers["x-first-death-reason"] == reason, headers
    assert headers["x-first-death-exchange"] == exchange, headers
    for name in LAST_DEATH_HEADERS:
        assert name not in headers, f"RabbitMQ 3.10 sends no {name}: {headers}"


def assert_single_death(props, *, reason, queue, exchange, routing_keys,
                        original_expiration=None, other_headers=None):
    """A message that died exactly once: x-death has one entry, the
    x-first-death-* headers describe it, and nothing else was added."""
    headers = props.headers
    assert headers is not None, "a dead-lettered message has headers"
    deaths = headers["x-death"]
    assert isinstance(deaths, list) and len(deaths) == 1, deaths
    assert_x_death_entry(deaths[0], count=1, reason=reason, queue=queue,
                         exchange=exchange, routing_keys=routing_keys,
                         original_expiration=original_expiration)
    assert_first_death(headers, queue=queue, reason=reason, exchange=exchange)
    expected = {"x-death", *FIRST_DEATH_HEADERS, *(other_headers or {})}
    assert set(headers) == expected, headers
    for key, value in (other_headers or {}).items():
        assert headers[key] == value, headers


def reject_one(channel, queue, how="reject"):
    """basic.get one message from ``queue`` and refuse it without requeue."""
    method, props, body = get_message(channel, queue)
    if how == "reject":
        channel.basic_reject(method.delivery_tag, requeue=False)
    else:
        channel.basic_nack(method.delivery_tag, multiple=False, requeue=False)
    return method, props, body


def confirming_channel(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


# --------------------------------------------------------------------------
# Dead-lettering of rejected messages
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["reject", "nack"])
def test_rejected_message_is_dead_lettered_with_x_death(channel, unique_name, how):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        delivery_mode=2, priority=3, correlation_id="corr-1", reply_to="replies",
        message_id="msg-1", timestamp=1700000000, type="order", user_id="guest",
        app_id="lifetime-test", headers={"custom": "kept", "n": 7})
    channel.basic_publish("", src, b'{"x": 1}', props)

    reject_one(channel, src, how)
    method, got, body = get_message(channel, dlq)

    assert body == b'{"x": 1}'
    # Re-published through the dead-letter exchange with the DL routing key.
    assert method.exchange == ""
    assert method.routing_key == dlq
    assert method.redelivered is False
    assert_single_death(got, reason="rejected", queue=src, exchange="",
                        routing_keys=[src], other_headers={"custom": "kept", "n": 7})
    for attr in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "message_id", "timestamp", "type",
                 "user_id", "app_id"):
        assert getattr(got, attr) == getattr(props, attr), attr
    assert got.expiration is None
    assert ready_count(channel.connection, src) == 0


def test_nack_multiple_dead_letters_all_in_order(channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", src, body)
    eventually(lambda: ready_count(channel.connection, src) == 3)
    tags = [get_message(channel, src)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[-1], multiple=True, requeue=False)

    eventually(lambda: ready_count(channel.connection, dlq) == 3)
    got = drain(channel, dlq)
    assert [body for _, body in got] == [b"1", b"2", b"3"]


@pytest.mark.parametrize("how", ["reject", "nack"])
def test_requeued_message_is_not_dead_lettered(channel, unique_name, how):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    channel.basic_publish("", src, b"again")
    method, _, _ = get_message(channel, src)
    if how == "reject":
        channel.basic_reject(method.delivery_tag, requeue=True)
    else:
        channel.basic_nack(method.delivery_tag, requeue=True)
    method, props, body = get_message(channel, src, auto_ack=True)
    assert body == b"again"
    assert method.redelivered is True
    assert props.headers is None
    assert ready_count(channel.connection, dlq) == 0


def test_dead_letter_exchange_without_routing_key_keeps_original_routing_key(
        channel, unique_name):
    src_ex = unique_name("srcx")
    dlx = unique_name("dlx")
    src = unique_name("src")
    dlq = unique_name("dlq")
    channel.exchange_declare(src_ex, "direct")
    channel.exchange_declare(dlx, "direct")
    channel.queue_declare(src, arguments={"x-dead-letter-exchange": dlx})
    channel.queue_bind(src, src_ex, "orders.new")
    channel.queue_declare(dlq)
    channel.queue_bind(dlq, dlx, "orders.new")

    channel.basic_publish(src_ex, "orders.new", b"order")
    reject_one(channel, src)
    method, props, body = get_message(channel, dlq)
    assert body == b"order"
    assert method.exchange == dlx
    assert method.routing_key == "orders.new"
    assert_single_death(props, reason="rejected", queue=src, exchange=src_ex,
                        routing_keys=["orders.new"])


def test_x_death_routing_keys_include_cc_and_cc_header_is_removed(channel, unique_name):
    src_ex = unique_name("srcx")
    src = unique_name("src")
    dlq = dead_letter_queue(channel, unique_name)
    channel.exchange_declare(src_ex, "direct")
    channel.queue_declare(src, arguments=dl_args(dlq))
    channel.queue_bind(src, src_ex, "main")
    channel.queue_bind(src, src_ex, "copy")

    channel.basic_publish(src_ex, "main", b"cc", pika.BasicProperties(
        headers={"CC": ["copy", "elsewhere"], "BCC": ["hidden"], "keep": 1}))
    _, delivered, _ = reject_one(channel, src)
    # CC is visible to the consumer, BCC is not.
    assert delivered.headers == {"CC": ["copy", "elsewhere"], "keep": 1}

    _, props, body = get_message(channel, dlq)
    assert body == b"cc"
    assert_single_death(props, reason="rejected", queue=src, exchange=src_ex,
                        routing_keys=["main", "copy", "elsewhere"],
                        other_headers={"keep": 1})


def test_dead_letter_exchange_that_does_not_exist_drops_the_message(
        connection, channel, unique_name):
    src = unique_name("src")
    channel.queue_declare(src, arguments={"x-dead-letter-exchange": unique_name("nosuchx")})
    channel.basic_publish("", src, b"lost")
    reject_one(channel, src)
    assert ready_count(connection, src) == 0
    # The channel is unaffected.
    channel.basic_publish("", src, b"next")
    assert get_message(channel, src, auto_ack=True)[2] == b"next"


def test_purge_and_delete_do_not_dead_letter(connection, channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    channel.basic_publish("", src, b"purged")
    eventually(lambda: ready_count(connection, src) == 1)
    assert channel.queue_purge(src).method.message_count == 1
    channel.basic_publish("", src, b"deleted")
    eventually(lambda: ready_count(connection, src) == 1)
    assert channel.queue_delete(src).method.message_count == 1
    quiet_period(connection, 0.2)
    assert ready_count(connection, dlq) == 0


# --------------------------------------------------------------------------
# Dead-lettering of expired messages
# --------------------------------------------------------------------------

def test_queue_ttl_expiry_dead_letters_without_consumer(connection, channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq, **{"x-message-ttl": 100}))
    channel.basic_publish("", src, b"old", pika.BasicProperties(message_id="m"))

    # Nobody touches the source queue: the broker expires the message itself.
    eventually(lambda: ready_count(connection, dlq) == 1)
    assert ready_count(connection, src) == 0
    method, props, body = get_message(channel, dlq)
    assert body == b"old"
    assert method.routing_key == dlq
    assert props.message_id == "m"
    # Queue TTL: no original-expiration, and no expiration property appears.
    assert_single_death(props, reason="expired", queue=src, exchange="",
                        routing_keys=[src])
    assert props.expiration is None


def test_per_message_ttl_expiry_records_original_expiration(connection, channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    channel.basic_publish("", src, b"short-lived", pika.BasicProperties(
        expiration="50", content_type="text/plain", headers={"a": "b"}))

    eventually(lambda: ready_count(connection, dlq) == 1)
    _, props, body = get_message(channel, dlq)
    assert body == b"short-lived"
    assert props.content_type == "text/plain"
    # The expiration property is removed from the dead-lettered copy (so it
    # does not expire again) and kept as a string in x-death.
    assert props.expiration is None
    assert_single_death(props, reason="expired", queue=src, exchange="",
                        routing_keys=[src], original_expiration="50",
                        other_headers={"a": "b"})


def test_rejected_message_with_expiration_records_original_expiration(channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq))
    channel.basic_publish("", src, b"r", pika.BasicProperties(expiration="60000"))
    _, delivered, _ = reject_one(channel, src)
    assert delivered.expiration == "60000"

    _, props, _ = get_message(channel, dlq)
    assert props.expiration is None
    assert_single_death(props, reason="rejected", queue=src, exchange="",
                        routing_keys=[src], original_expiration="60000")


def test_lower_of_queue_and_message_ttl_dead_letters_first(connection, channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq, **{"x-message-ttl": 60000}))
    channel.basic_publish("", src, b"m", pika.BasicProperties(expiration="100"))
    eventually(lambda: ready_count(connection, dlq) == 1)
    _, props, _ = get_message(channel, dlq)
    assert_single_death(props, reason="expired", queue=src, exchange="",
                        routing_keys=[src], original_expiration="100")


def test_ttl_zero_without_consumer_dead_letters_immediately(connection, channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    src = unique_name("src")
    channel.queue_declare(src, arguments=dl_args(dlq, **{"x-message-ttl": 0}))
    channel.basic_publish("", src, b"zero")
    eventually(lambda: ready_count(connection, dlq) == 1)
    assert ready_count(connection, src) == 0
    _, props, body = get_message(channel, dlq)
    assert body == b"zero"
    assert_single_death(props, reason="expired", queue=src, exchange="",
                        routing_keys=[src])


def test_ttl_zero_with_ready_consumer_is_delivered_not_dead_lettered(
        connect, unique_name):
    conn = connect()
    ch = conn.channel()
    dlq = dead_letter_queue(ch, unique_name)
    src = unique_name("src")
    ch.queue_declare(src, arguments=dl_args(dlq, **{"x-message-ttl": 0}))
    collector = Collector()
    ch.basic_consume(src, collector, auto_ack=True)

    publisher = connect().channel()
    publisher.basic_publish("", src, b"caught")
    eventually(lambda: collector.bodies == [b"caught"], connection=conn)
    assert collector.deliveries[0][1].headers is None
    quiet_period(conn, 0.2)
    assert ready_count(conn, dlq) == 0


# --------------------------------------------------------------------------
# Dead-lettering on overflow
# --------------------------------------------------------------------------

def test_max_length_drop_head_dead_letters_the_oldest(connection, unique_name):
    ch = confirming_channel(connection)
    dlq = dead_letter_queue(ch, unique_name)
    src = unique_name("src")
    ch.queue_declare(src, arguments=dl_args(dlq, **{"x-max-length": 2}))
    for body in (b"m1", b"m2", b"m3", b"m4"):
        ch.basic_publish("", src, body)       # all acked: drop-head never nacks

    eventually(lambda: ready_count(connection, dlq) == 2)
    assert [b for _, b in drain(ch, src)] == [b"m3", b"m4"]
    got = []
    for _ in range(2):
        _, props, body = get_message(ch, dlq, auto_ack=True)
        assert_single_death(props, reason="maxlen", queue=src, exchange="",
                            routing_keys=[src])
        got.append(body)
    assert got == [b"m1", b"m2"]


def test_max_length_bytes_dead_letters_with_reason_maxlen(connection, unique_name):
    ch = confirming_channel(connection)
    dlq = dead_letter_queue(ch, unique_name)
    src = unique_name("src")
    ch.queue_declare(src, arguments=dl_args(dlq, **{"x-max-length-bytes": 8}))
    for body in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", src, body)
    _, props, body = get_message(ch, dlq, auto_ack=True)
    assert body == b"aaaa"
    assert_single_death(props, reason="maxlen", queue=src, exchange="",
                        routing_keys=[src])
    assert [b for _, b in drain(ch, src)] == [b"bbbb", b"cccc"]


def test_reject_publish_nacks_and_does_not_dead_letter(connection, unique_name):
    ch = confirming_channel(connection)
    dlq = dead_letter_queue(ch, unique_name)
    src = unique_name("src")
    ch.queue_declare(src, arguments=dl_args(
        dlq, **{"x-max-length": 1, "x-overflow": "reject-publish"}))
    ch.basic_publish("", src, b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", src, b"refused")
    assert ch.is_open
    quiet_period(connection, 0.2)
    assert ready_count(connection, dlq) == 0
    assert [b for _, b in drain(ch, src)] == [b"kept"]


def test_reject_publish_without_confirms_drops_silently(connection, channel, unique_name):
    src = unique_name("src")
    channel.queue_declare(src, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    for body in (b"m1", b"m2", b"m3"):
        channel.basic_publish("", src, body)
    # Routing is asynchronous: wait for the accepted two, give the refused
    # one time to arrive, and check that it did not and the channel survived.
    eventually(lambda: ready_count(connection, src) == 2)
    quiet_period(connection, 0.2)
    assert channel.queue_declare(src, passive=True).method.message_count == 2
    assert channel.is_open
    assert [b for _, b in drain(channel, src)] == [b"m1", b"m2"]


def test_reject_publish_dlx_nacks_and_dead_letters(connection, unique_name):
    ch = confirming_channel(connection)
    dlq = dead_letter_queue(ch, unique_name)
    src = unique_name("src")
    ch.queue_declare(src, arguments=dl_args(
        dlq, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"}))
    ch.basic_publish("", src, b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", src, b"refused", pika.BasicProperties(message_id="r"))

    _, props, body = get_message(ch, dlq, auto_ack=True)
    assert body == b"refused"
    assert props.message_id == "r"
    assert_single_death(props, reason="maxlen", queue=src, exchange="",
                        routing_keys=[src])
    assert [b for _, b in drain(ch, src)] == [b"kept"]


# --------------------------------------------------------------------------
# Repeated deaths, retry loops and cycles
# --------------------------------------------------------------------------

def test_dying_twice_in_the_same_queue_increments_count(channel, unique_name):
    # src dead-letters (fanout) straight back into itself: each rejection is a
    # new death in the same queue for the same reason.
    dlx = unique_name("dlx")
    src = unique_name("src")
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(src, arguments={"x-dead-letter-exchange": dlx})
    channel.queue_bind(src, dlx)
    channel.basic_publish("", src, b"boomerang")

    for round_no in (1, 2, 3):
        reject_one(channel, src)
        method, props, body = get_message(channel, src)
        assert body == b"boomerang"
        assert method.exchange == dlx
        assert method.routing_key == src
        deaths = props.headers["x-death"]
        assert len(deaths) == 1, deaths
        # Same entry, count incremented; the entry keeps the exchange and
        # routing keys of the first death (it was published to "" then).
        assert_x_death_entry(deaths[0], count=round_no, reason="rejected", queue=src,
                             exchange="", routing_keys=[src])
        assert_first_death(props.headers, queue=src, reason="rejected", exchange="")
        channel.basic_nack(method.delivery_tag, requeue=True)


def test_deaths_in_different_queues_are_listed_most_recent_first(channel, unique_name):
    final = dead_letter_queue(channel, unique_name)
    second = unique_name("second")
    first = unique_name("first")
    channel.queue_declare(second, arguments=dl_args(final))
    channel.queue_declare(first, arguments=dl_args(second, **{"x-message-ttl": 50}))
    channel.basic_publish("", first, b"hop", pika.BasicProperties(expiration="40000"))

    # Expires in `first` (queue TTL 50 beats the 40 s expiration), is then
    # rejected in `second`.
    method, props, _ = get_message(channel, second)
    assert props.expiration is None
    channel.basic_reject(method.delivery_tag, requeue=False)

    _, props, body = get_message(channel, final)
    assert body == b"hop"
    deaths = props.headers["x-death"]
    assert len(deaths) == 2, deaths
    assert_x_death_entry(deaths[0], count=1, reason="rejected", queue=second,
                         exchange="", routing_keys=[second])
    assert_x_death_entry(deaths[1], count=1, reason="expired", queue=first,
                         exchange="", routing_keys=[first], original_expiration="40000")
    # x-first-death-* still describe the first death.
    assert_first_death(props.headers, queue=first, reason="expired", exchange="")
    assert props.expiration is None


def test_older_deaths_are_in_rabbitmqs_order(channel, unique_name):
    """Three deaths in three queues (rejected in `a`, expired in `b`, expired in `c`): RabbitMQ
    3.10 lists them as [c, a, b] (it reverses the older entries at every death), not [c, b, a]."""
    final = dead_letter_queue(channel, unique_name)
    c, b, a = unique_name("c"), unique_name("b"), unique_name("a")
    channel.queue_declare(c, arguments=dl_args(final, **{"x-message-ttl": 0}))
    channel.queue_declare(b, arguments=dl_args(c, **{"x-message-ttl": 0}))
    channel.queue_declare(a, arguments=dl_args(b))
    channel.basic_publish("", a, b"hop")
    method, _, _ = get_message(channel, a)
    channel.basic_reject(method.delivery_tag, requeue=False)
    _, props, body = get_message(channel, final)
    assert body == b"hop"
    order = [(d["queue"], d["reason"]) for d in props.headers["x-death"]]
    assert order == [(c, "expired"), (a, "rejected"), (b, "expired")]


def test_retry_loop_through_a_delay_queue(connection, channel, unique_name):
    """work --reject--> retry exchange --> delay (TTL) --expire--> work, a
    few rounds; the x-death counts grow on both entries."""
    work = unique_name("work")
    delay = unique_name("delay")
    retry_ex = unique_name("retryx")
    channel.exchange_declare(retry_ex, "fanout")
    channel.queue_declare(work, arguments={"x-dead-letter-exchange": retry_ex})
    channel.queue_declare(delay, arguments={
        "x-message-ttl": 100,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work,
    })
    channel.queue_bind(delay, retry_ex)
    channel.basic_publish("", work, b"job", pika.BasicProperties(headers={"attempt": "x"}))

    method, props, _ = get_message(channel, work)
    assert props.headers == {"attempt": "x"}
    for round_no in (1, 2, 3):
        channel.basic_reject(method.delivery_tag, requeue=False)
        # Back in `work` once the delay queue's TTL has run out.
        method, props, body = get_message(channel, work)
        assert body == b"job"
        assert method.exchange == ""
        assert method.routing_key == work
        headers = props.headers
        assert headers["attempt"] == "x"
        deaths = headers["x-death"]
        assert len(deaths) == 2, deaths
        # Most recent death first: it just expired from the delay queue,
        # into which it had been dead-lettered through retry_ex.
        assert_x_death_entry(deaths[0], count=round_no, reason="expired", queue=delay,
                             exchange=retry_ex, routing_keys=[work])
        assert_x_death_entry(deaths[1], count=round_no, reason="rejected", queue=work,
                             exchange="", routing_keys=[work])
        assert_first_death(headers, queue=work, reason="rejected", exchange="")
    channel.basic_ack(method.delivery_tag)
    assert ready_count(connection, work) == 0
    assert ready_count(connection, delay) == 0


def test_pure_expiry_cycle_drops_the_message(connection, channel, unique_name):
    """A queue whose expired messages are dead-lettered back into itself,
    with no rejection anywhere in the cycle: RabbitMQ detects the cycle and
    drops the message instead of routing it back (other targets of the
    dead-letter exchange still get their copy)."""
    dlx = unique_name("dlx")
    loop = unique_name("loop")
    audit = unique_name("audit")
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(loop, arguments={"x-message-ttl": 100,
                                           "x-dead-letter-exchange": dlx})
    channel.queue_declare(audit)
    channel.queue_bind(loop, dlx)
    channel.queue_bind(audit, dlx)
    channel.basic_publish("", loop, b"cycle")

    _, props, body = get_message(channel, audit)
    assert body == b"cycle"
    assert_single_death(props, reason="expired", queue=loop, exchange="",
                        routing_keys=[loop])
    eventually(lambda: ready_count(connection, loop) == 0)
    # Several TTL periods later it has not come back.
    quiet_period(connection, 0.5)
    assert ready_count(connection, loop) == 0
    assert ready_count(connection, audit) == 0


def test_pure_expiry_cycle_without_other_targets_drops_the_message(
        connection, channel, unique_name):
    dlx = unique_name("dlx")
    loop = unique_name("loop")
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(loop, arguments={"x-message-ttl": 100,
                                           "x-dead-letter-exchange": dlx})
    channel.queue_bind(loop, dlx)
    channel.basic_publish("", loop, b"cycle")
    eventually(lambda: ready_count(connection, loop) == 0)
    quiet_period(connection, 0.5)
    assert ready_count(connection, loop) == 0
    assert channel.basic_get(loop, auto_ack=True)[0] is None


# --------------------------------------------------------------------------
# Quorum queues: x-delivery-limit and x-delivery-count
# --------------------------------------------------------------------------

def test_quorum_queue_requires_durable(channel, unique_name):
    name = unique_name("qq")
    err = channel_error(channel, lambda: channel.queue_declare(
        name, durable=False, arguments={"x-queue-type": "quorum"}))
    assert err.reply_code == 406, err
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{name}' in vhost '/'"
    ), err


def test_quorum_delivery_limit_dead_letters_after_limit_redeliveries(connect, unique_name):
    conn = connect()
    ch = conn.channel()
    dlq = dead_letter_queue(ch, unique_name)
    qq = unique_name("qq")
    ch.queue_declare(qq, durable=True, arguments=dl_args(
        dlq, **{"x-queue-type": "quorum", "x-delivery-limit": 2}))
    ch.basic_publish("", qq, b"poison", pika.BasicProperties(headers={"h": 1}))

    seen = []

    def on_message(channel_, method, props, body):
        seen.append((method.redelivered, props.headers))
        channel_.basic_nack(method.delivery_tag, requeue=True)

    ch.basic_consume(qq, on_message)
    # The first delivery carries no x-delivery-count; each redelivery carries
    # the number of earlier (returned) deliveries. After the third return the
    # limit of 2 is exceeded and the message is dead-lettered.
    eventually(lambda: ready_count(conn, dlq) == 1, connection=conn)
    assert seen == [
        (False, {"h": 1}),
        (True, {"h": 1, "x-delivery-count": 1}),
        (True, {"h": 1, "x-delivery-count": 2}),
    ]
    for _, headers in seen[1:]:
        assert type(headers["x-delivery-count"]) is pika.compat.long, headers

    dl_ch = conn.channel()
    method, props, body = get_message(dl_ch, dlq, auto_ack=True)
    assert body == b"poison"
    assert method.routing_key == dlq
    # x-delivery-count is not carried over to the dead-lettered copy.
    assert_single_death(props, reason="delivery_limit", queue=qq, exchange="",
                        routing_keys=[qq], other_headers={"h": 1})
    quiet_period(conn, 0.2)
    assert len(seen) == 3
    assert ready_count(conn, qq) == 0


def test_quorum_delivery_limit_without_dlx_drops(connect, unique_name):
    conn = connect()
    ch = conn.channel()
    qq = unique_name("qq")
    ch.queue_declare(qq, durable=True, arguments={"x-queue-type": "quorum",
                                                  "x-delivery-limit": 1})
    ch.basic_publish("", qq, b"poison")
    seen = []

    def on_message(channel_, method, props, body):
        seen.append((method.redelivered, props.headers))
        channel_.basic_reject(method.delivery_tag, requeue=True)

    ch.basic_consume(qq, on_message)
    eventually(lambda: len(seen) == 2, connection=conn)
    quiet_period(conn, 0.3)
    assert seen == [(False, None), (True, {"x-delivery-count": 1})]
    assert ready_count(conn, qq) == 0


def test_quorum_reject_without_requeue_dead_letters_as_rejected(channel, unique_name):
    dlq = dead_letter_queue(channel, unique_name)
    qq = unique_name("qq")
    channel.queue_declare(qq, durable=True, arguments=dl_args(
        dlq, **{"x-queue-type": "quorum", "x-delivery-limit": 5}))
    channel.basic_publish("", qq, b"no")
    reject_one(channel, qq)
    _, props, body = get_message(channel, dlq, auto_ack=True)
    assert body == b"no"
    assert_single_death(props, reason="rejected", queue=qq, exchange="",
                        routing_keys=[qq])
