"""Consumer semantics beyond the basics: prefetch scopes, distribution between
consumers, exclusivity, priorities and acknowledgement edge cases."""

import pika.spec

from conftest import (Collector, channel_error, eventually, fresh_queue,
                      get_message, quiet_period, ready_count)


def test_prefetch_is_per_consumer(connection, channel, unique_name):
    # per_consumer_qos: basic.qos(global=False) limits each consumer separately.
    q1, q2 = fresh_queue(channel, unique_name), fresh_queue(channel, unique_name)
    for q in (q1, q2):
        for i in range(5):
            channel.basic_publish("", q, f"{i}".encode())
    channel.basic_qos(prefetch_count=2)
    a, b = Collector(), Collector()
    channel.basic_consume(q1, a)
    channel.basic_consume(q2, b)
    eventually(lambda: len(a.deliveries) == 2 and len(b.deliveries) == 2,
               connection=connection)
    quiet_period(connection)
    assert (len(a.deliveries), len(b.deliveries)) == (2, 2)


def test_global_prefetch_is_shared_by_the_channel(connection, channel, unique_name):
    q1, q2 = fresh_queue(channel, unique_name), fresh_queue(channel, unique_name)
    for q in (q1, q2):
        for i in range(5):
            channel.basic_publish("", q, f"{i}".encode())
    channel.basic_qos(prefetch_count=3, global_qos=True)
    a, b = Collector(), Collector()
    channel.basic_consume(q1, a)
    channel.basic_consume(q2, b)
    eventually(lambda: len(a.deliveries) + len(b.deliveries) >= 3, connection=connection)
    quiet_period(connection)
    assert len(a.deliveries) + len(b.deliveries) == 3


def test_global_prefetch_credit_freed_on_one_queue_reaches_the_other(connection, channel, unique_name):
    """Acks of one queue's deliveries give the shared channel credit to a consumer of another
    queue that has a backlog and no further publishes: every message is delivered."""
    q1, q2 = fresh_queue(channel, unique_name), fresh_queue(channel, unique_name)
    for q in (q1, q2):
        for i in range(3):
            channel.basic_publish("", q, f"{q}-{i}".encode())
    channel.basic_qos(prefetch_count=1, global_qos=True)
    got = []

    def on_message(ch, method, _props, body):
        got.append(body)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(q1, on_message)
    channel.basic_consume(q2, on_message)
    eventually(lambda: len(got) == 6, connection=connection)
    assert sorted(got) == sorted(f"{q}-{i}".encode() for q in (q1, q2) for i in range(3))


def test_prefetch_does_not_limit_auto_ack_consumers(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_qos(prefetch_count=1)
    got = Collector()
    channel.basic_consume(queue, got, auto_ack=True)
    for i in range(5):
        channel.basic_publish("", queue, f"{i}".encode())
    eventually(lambda: len(got.deliveries) == 5, connection=connection)


def test_messages_are_distributed_round_robin(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    a, b = Collector(), Collector()
    channel.basic_consume(queue, a, auto_ack=True)
    channel.basic_consume(queue, b, auto_ack=True)
    for i in range(10):
        channel.basic_publish("", queue, f"{i}".encode())
    eventually(lambda: len(a.deliveries) + len(b.deliveries) == 10, connection=connection)
    assert len(a.deliveries) == 5 and len(b.deliveries) == 5
    assert sorted(a.bodies + b.bodies) == sorted(f"{i}".encode() for i in range(10))


def test_unacked_messages_go_to_another_consumer_when_channel_closes(connection, unique_name):
    first = connection.channel()
    queue = fresh_queue(first, unique_name)
    first.basic_publish("", queue, b"hot-potato")
    a = Collector()
    first.basic_consume(queue, a)
    eventually(lambda: a.deliveries, connection=connection)

    second = connection.channel()
    b = Collector()
    second.basic_consume(queue, b)
    first.close()
    eventually(lambda: b.deliveries, connection=connection)
    method, _, body = b.deliveries[0]
    assert body == b"hot-potato"
    assert method.redelivered is True


def test_exclusive_consumer_blocks_other_consumers(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    ch.basic_consume(queue, Collector(), exclusive=True)

    other = connection.channel()
    err = channel_error(other, lambda: other.basic_consume(queue, Collector()))
    assert err.reply_code == 403, err
    assert err.reply_text.startswith("ACCESS_REFUSED"), err


def test_exclusive_consume_refused_when_queue_has_consumers(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    ch.basic_consume(queue, Collector())

    other = connection.channel()
    err = channel_error(other, lambda: other.basic_consume(queue, Collector(), exclusive=True))
    assert err.reply_code == 403, err


def test_higher_priority_consumer_gets_messages_first(connection, unique_name):
    # consumer_priorities: while the high-priority consumer has prefetch
    # capacity it receives everything.
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    ch.basic_qos(prefetch_count=10)
    low, high = Collector(), Collector()
    ch.basic_consume(queue, low, arguments={"x-priority": 1})
    ch.basic_consume(queue, high, arguments={"x-priority": 10})
    for i in range(6):
        ch.basic_publish("", queue, f"{i}".encode())

    def all_went_to_high():
        assert (len(high.deliveries), len(low.deliveries)) == (6, 0)
        return True

    eventually(all_went_to_high, connection=connection)


def test_unacked_deliveries_can_be_acked_after_cancel(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    channel.basic_publish("", queue, b"late-ack")
    got = Collector()
    tag = channel.basic_consume(queue, got)
    eventually(lambda: got.deliveries, connection=connection)
    channel.basic_cancel(tag)

    channel.basic_ack(got.tags[0])
    channel.basic_qos(prefetch_count=0)      # round trip: the ack caused no error
    assert channel.is_open
    channel.close()
    assert ready_count(connection, queue) == 0


def test_ack_tag_zero_multiple_acks_everything(connection, channel, unique_name):
    queue = fresh_queue(channel, unique_name)
    for i in range(4):
        channel.basic_publish("", queue, f"{i}".encode())
    got = Collector()
    channel.basic_consume(queue, got)
    eventually(lambda: len(got.deliveries) == 4, connection=connection)
    channel.basic_ack(0, multiple=True)
    channel.close()
    assert ready_count(connection, queue) == 0


def test_nack_tag_zero_multiple_requeues_everything(connection, unique_name):
    ch = connection.channel()
    queue = fresh_queue(ch, unique_name)
    for i in range(3):
        ch.basic_publish("", queue, f"{i}".encode())
    for _ in range(3):
        get_message(ch, queue)
    ch.basic_nack(0, multiple=True, requeue=True)
    eventually(lambda: ready_count(connection, queue) == 3)


def test_cancel_of_unknown_consumer_tag_is_harmless(channel):
    # RabbitMQ answers cancel-ok for a tag it does not know.  pika refuses to
    # cancel a tag it did not create, so the method is sent at a lower level.
    replies = []
    channel._impl._rpc(pika.spec.Basic.Cancel(consumer_tag="warren-pytest-unknown"),
                       replies.append, [pika.spec.Basic.CancelOk])
    eventually(lambda: replies, connection=channel.connection)
    assert replies[0].method.consumer_tag == "warren-pytest-unknown"
    channel.basic_qos(prefetch_count=0)
    assert channel.is_open


def test_delivery_tags_are_per_channel_and_increase(connection, unique_name):
    a = connection.channel()
    queue = fresh_queue(a, unique_name)
    b = connection.channel()
    for i in range(4):
        a.basic_publish("", queue, f"{i}".encode())
    tags_a = [get_message(a, queue)[0].delivery_tag for _ in range(2)]
    tags_b = [get_message(b, queue)[0].delivery_tag for _ in range(2)]
    assert tags_a == [1, 2]
    assert tags_b == [1, 2]
    a.basic_ack(2, multiple=True)
    b.basic_ack(2, multiple=True)
    b.basic_qos(prefetch_count=0)
    a.basic_qos(prefetch_count=0)
    assert a.is_open and b.is_open
