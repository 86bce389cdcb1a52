"""basic.* methods: publish, get, consume, acknowledgements, qos, returns."""

import pika
import pika.exceptions
import pika.spec
import pytest

from conftest import (Collector, channel_error, drain, eventually, fresh_queue,
                      get_message, publish_all, quiet_period, ready_count)


# --------------------------------------------------------------------------
# publish / get
# --------------------------------------------------------------------------

def test_publish_and_get_preserves_body_and_properties(broker, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"x-trace": "abc", "n": 42, "nested": {"ok": True}},
        delivery_mode=2,
        priority=3,
        correlation_id="corr-1",
        reply_to="reply-queue",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="greeting",
        user_id=broker.username,   # must match the login, or RabbitMQ refuses
        app_id="pytest",
    )
    channel.basic_publish("", queue, b'{"hello": "world"}', props)
    channel.basic_publish("", queue, b"second")

    method, got, body = get_message(channel, queue)
    assert body == b'{"hello": "world"}'
    assert isinstance(method, pika.spec.Basic.GetOk)
    assert method.redelivered is False
    assert method.exchange == ""
    assert method.routing_key == queue
    # message_count in get-ok counts the messages left after this one.
    assert method.message_count == 1
    for field in ("content_type", "content_encoding", "headers", "delivery_mode",
                  "priority", "correlation_id", "reply_to", "expiration",
                  "message_id", "timestamp", "type", "user_id", "app_id"):
        assert getattr(got, field) == getattr(props, field), field
    channel.basic_ack(method.delivery_tag)

    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"second"
    assert method.message_count == 0


def test_get_from_empty_queue(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    assert channel.basic_get(queue) == (None, None, None)


def test_empty_body_message(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"")
    _, _, body = get_message(channel, queue, auto_ack=True)
    assert body == b""


def test_get_without_ack_is_requeued_when_channel_closes(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    ch.basic_publish("", queue, b"unacked")
    method, _, _ = get_message(ch, queue)
    assert method.redelivered is False
    ch.close()

    ch2 = connection.channel()
    method, _, body = get_message(ch2, queue, auto_ack=True)
    assert body == b"unacked"
    assert method.redelivered is True


def test_get_from_missing_queue_is_not_found(channel, unique_name):
    err = channel_error(channel, lambda: channel.basic_get(unique_name(), auto_ack=True))
    assert err.reply_code == 404, err


# --------------------------------------------------------------------------
# consume
# --------------------------------------------------------------------------

def test_consume_with_manual_acks(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    publish_all(channel, queue, [b"a", b"b", b"c"])

    got = Collector()
    tag = channel.basic_consume(queue, got, auto_ack=False)
    eventually(lambda: len(got.deliveries) == 3, connection=connection)
    assert got.bodies == [b"a", b"b", b"c"]
    assert got.tags == [1, 2, 3]
    for method, _, _ in got.deliveries:
        assert method.consumer_tag == tag
        assert method.redelivered is False
        assert method.routing_key == queue
        channel.basic_ack(method.delivery_tag)

    # All three are acknowledged: closing the channel requeues nothing.
    channel.close()
    assert ready_count(connection, queue) == 0


def test_auto_ack_consumer_removes_messages(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    got = Collector()
    channel.basic_consume(queue, got, auto_ack=True)
    publish_all(channel, queue, [b"1", b"2"])
    eventually(lambda: len(got.deliveries) == 2, connection=connection)
    channel.close()
    assert ready_count(connection, queue) == 0


def test_consume_from_missing_queue_is_not_found(channel, unique_name):
    err = channel_error(
        channel, lambda: channel.basic_consume(unique_name(), Collector(), auto_ack=True))
    assert err.reply_code == 404, err


def test_prefetch_count_limits_unacked_deliveries(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    publish_all(channel, queue, [f"m{i}".encode() for i in range(10)])

    channel.basic_qos(prefetch_count=3)
    got = Collector()
    channel.basic_consume(queue, got)
    eventually(lambda: len(got.deliveries) >= 3, connection=connection)
    quiet_period(connection)      # nothing beyond the window may arrive
    assert got.bodies == [b"m0", b"m1", b"m2"]

    # Acking one opens exactly one slot.
    channel.basic_ack(got.tags[0])
    eventually(lambda: len(got.deliveries) >= 4, connection=connection)
    quiet_period(connection)
    assert got.bodies == [b"m0", b"m1", b"m2", b"m3"]

    # Acking everything so far (multiple) opens three more.
    channel.basic_ack(got.tags[-1], multiple=True)
    eventually(lambda: len(got.deliveries) >= 7, connection=connection)
    quiet_period(connection)
    assert len(got.deliveries) == 7


def test_ack_multiple(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    publish_all(ch, queue, [f"m{i}".encode() for i in range(5)])
    got = Collector()
    ch.basic_consume(queue, got)
    eventually(lambda: len(got.deliveries) == 5, connection=connection)

    # Ack tags 1..3 in one go; 4 and 5 stay unacked and are requeued on close.
    ch.basic_ack(got.tags[2], multiple=True)
    ch.close()

    ch2 = connection.channel()
    remaining = drain(ch2, queue)
    assert [body for _, body in remaining] == [b"m3", b"m4"]
    assert all(method.redelivered for method, _ in remaining)


def test_nack_with_requeue_redelivers(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"again")
    method, _, _ = get_message(channel, queue)
    assert method.redelivered is False
    channel.basic_nack(method.delivery_tag, requeue=True)

    method, _, body = get_message(channel, queue)
    assert body == b"again"
    assert method.redelivered is True
    channel.basic_ack(method.delivery_tag)


def test_nack_without_requeue_drops(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    publish_all(channel, queue, [b"x", b"y"])
    first, _, _ = get_message(channel, queue)
    second, _, _ = get_message(channel, queue)
    # multiple=True covers both deliveries.
    channel.basic_nack(second.delivery_tag, multiple=True, requeue=False)
    assert channel.basic_get(queue) == (None, None, None)
    channel.close()
    assert ready_count(connection, queue) == 0


def test_reject_with_and_without_requeue(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"r")
    method, _, _ = get_message(channel, queue)
    channel.basic_reject(method.delivery_tag, requeue=True)

    method, _, body = get_message(channel, queue)
    assert (body, method.redelivered) == (b"r", True)
    channel.basic_reject(method.delivery_tag, requeue=False)

    assert channel.basic_get(queue) == (None, None, None)
    channel.close()
    assert ready_count(connection, queue) == 0


def test_recover_with_requeue_redelivers_unacked(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    publish_all(channel, queue, [b"p", b"q"])
    get_message(channel, queue)
    get_message(channel, queue)
    assert channel.basic_get(queue) == (None, None, None)

    channel.basic_recover(requeue=True)

    again = [get_message(channel, queue, auto_ack=True) for _ in range(2)]
    assert sorted(body for _, _, body in again) == [b"p", b"q"]
    assert all(method.redelivered for method, _, _ in again)


def test_unacked_messages_requeued_in_original_order(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    bodies = [f"m{i}".encode() for i in range(6)]
    publish_all(ch, queue, bodies)
    got = Collector()
    ch.basic_consume(queue, got)
    eventually(lambda: len(got.deliveries) == 6, connection=connection)
    ch.close()

    ch2 = connection.channel()
    remaining = drain(ch2, queue)
    assert [body for _, body in remaining] == bodies
    assert all(method.redelivered for method, _ in remaining)


def test_server_generated_consumer_tag(connection, channel, unique_name):
    """pika always invents its own consumer tags, so basic.consume with an
    empty tag is sent through pika's lower-level channel API."""
    queue = fresh_queue(channel, unique_name)
    impl = channel._impl
    result = {}
    got = Collector()

    def on_consume_ok(frame):
        tag = frame.method.consumer_tag
        result["tag"] = tag
        impl._consumers[tag] = got      # let pika dispatch deliveries for it

    impl._rpc(pika.spec.Basic.Consume(queue=queue, consumer_tag="", no_ack=True),
              on_consume_ok, [pika.spec.Basic.ConsumeOk])
    eventually(lambda: "tag" in result, connection=connection)
    assert result["tag"].startswith("amq.ctag-"), result["tag"]

    channel.basic_publish("", queue, b"tagged")
    eventually(lambda: got.deliveries, connection=connection)
    assert got.deliveries[0][0].consumer_tag == result["tag"]


def test_client_chosen_consumer_tag_is_echoed(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    got = Collector()
    tag = channel.basic_consume(queue, got, auto_ack=True, consumer_tag="my-tag-1")
    assert tag == "my-tag-1"
    channel.basic_publish("", queue, b"x")
    eventually(lambda: got.deliveries, connection=connection)
    assert got.deliveries[0][0].consumer_tag == "my-tag-1"


def test_cancel_stops_deliveries(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    got = Collector()
    tag = channel.basic_consume(queue, got, auto_ack=True)
    channel.basic_publish("", queue, b"before")
    eventually(lambda: len(got.deliveries) == 1, connection=connection)

    channel.basic_cancel(tag)
    channel.basic_publish("", queue, b"after")
    # The message waits in the queue instead of going to the cancelled consumer.
    _, _, body = get_message(channel, queue, auto_ack=True)
    assert body == b"after"
    quiet_period(connection, 0.2)
    assert got.bodies == [b"before"]


def test_queue_deletion_cancels_consumer(connection, channel, unique_name):
    # consumer_cancel_notify: the broker tells consumers their queue is gone.
    queue = fresh_queue(channel, unique_name)
    cancelled = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag = channel.basic_consume(queue, Collector(), auto_ack=True)

    connection.channel().queue_delete(queue)
    eventually(lambda: cancelled, connection=connection)
    assert cancelled[0].consumer_tag == tag
    assert channel.is_open


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

def test_ack_of_unknown_delivery_tag_is_precondition_failed(channel):
    err = channel_error(channel, lambda: channel.basic_ack(999))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err


def test_double_ack_is_precondition_failed(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"once")
    method, _, _ = get_message(channel, queue)
    channel.basic_ack(method.delivery_tag)
    err = channel_error(channel, lambda: channel.basic_ack(method.delivery_tag))
    assert err.reply_code == 406, err


def test_publish_to_missing_exchange_is_not_found(channel, unique_name):
    exchange = unique_name("x")
    err = channel_error(channel, lambda: channel.basic_publish(exchange, "rk", b"lost"))
    assert err.reply_code == 404, err
    assert err.reply_text.startswith("NOT_FOUND"), err
    assert exchange in err.reply_text


def test_mandatory_unroutable_message_is_returned(connection, channel, unique_name):
    returned = []
    channel.add_on_return_callback(
        lambda ch, method, props, body: returned.append((method, props, body)))
    key = unique_name("rk")
    channel.basic_publish("amq.direct", key, b"nobody-home",
                          pika.BasicProperties(message_id="ret-1"), mandatory=True)
    eventually(lambda: returned, connection=connection)

    method, props, body = returned[0]
    assert method.reply_code == 312
    assert method.reply_text == "NO_ROUTE"
    assert method.exchange == "amq.direct"
    assert method.routing_key == key
    assert body == b"nobody-home"
    assert props.message_id == "ret-1"
    assert channel.is_open


def test_mandatory_unroutable_with_confirms_raises_unroutable(channel, unique_name):
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish("amq.direct", unique_name("rk"), b"bounce", mandatory=True)
    returned = info.value.messages
    assert len(returned) == 1
    assert returned[0].method.reply_code == 312
    assert returned[0].body == b"bounce"
    assert channel.is_open


def test_publisher_confirms_ack_routed_messages(channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.confirm_delivery()
    for i in range(5):
        # Raises NackError/UnroutableError if the broker does not ack.
        channel.basic_publish("", queue, f"c{i}".encode(), mandatory=True)
    assert channel.queue_declare(queue, passive=True).method.message_count == 5


def test_other_channels_survive_a_channel_error(connection, unique_name):
    bystander = connection.channel()
    queue = fresh_queue(bystander, unique_name)

    victim = connection.channel()
    err = channel_error(victim, lambda: victim.basic_ack(12345))
    assert err.reply_code == 406
    assert connection.is_open

    # The channel that was already open keeps working...
    bystander.basic_publish("", queue, b"alive")
    _, _, body = get_message(bystander, queue, auto_ack=True)
    assert body == b"alive"
    # ...and new channels can be opened.
    fresh = connection.channel()
    fresh.basic_publish("", queue, b"fresh")
    _, _, body = get_message(fresh, queue, auto_ack=True)
    assert body == b"fresh"


def test_many_messages_arrive_complete_and_in_order(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    count = 2000
    bodies = [f"msg-{i:05d}".encode() for i in range(count)]
    publish_all(channel, queue, bodies)

    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=100)
    got = Collector()

    def on_message(ch, method, props, body):
        got(ch, method, props, body)
        ch.basic_ack(method.delivery_tag)

    consumer.basic_consume(queue, on_message)
    eventually(lambda: len(got.deliveries) >= count, timeout=20, connection=connection)
    assert got.bodies == bodies
    consumer.close()
    assert ready_count(connection, queue) == 0


# --------------------------------------------------------------------------
# user_id validation
# --------------------------------------------------------------------------

def test_user_id_must_name_the_authenticated_user(connection, broker, unique_name):
    """RabbitMQ: a publish whose user_id is not the connection's user closes
    the channel with 406 (unless the user is tagged impersonator); the
    matching user_id is delivered unchanged."""
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    ch.basic_publish("", queue, b"mine", pika.BasicProperties(user_id=broker.username))
    _, props, body = get_message(ch, queue, auto_ack=True)
    assert (body, props.user_id) == (b"mine", broker.username)

    err = channel_error(ch, lambda: ch.basic_publish(
        "", queue, b"forged", pika.BasicProperties(user_id="someone-else")))
    assert err.reply_code == 406
    assert err.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'someone-else' but "
        f"authenticated user was '{broker.username}'")
    ch2 = connection.channel()
    assert ch2.queue_declare(queue, passive=True).method.message_count == 0
