"""queue.declare / bind / unbind / purge / delete semantics."""

import uuid

import pika.exceptions
import pytest

from conftest import channel_error, eventually, get_message


def declare_passive(connection, queue):
    """Passive declare on a throw-away channel; returns the declare-ok method
    or raises ChannelClosedByBroker."""
    ch = connection.channel()
    method = ch.queue_declare(queue, passive=True).method
    ch.close()
    return method


def assert_queue_missing(connection, queue):
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_declare(queue, passive=True))
    assert err.reply_code == 404, err
    assert err.reply_text.startswith("NOT_FOUND"), err


def queue_exists(connection, queue):
    try:
        declare_passive(connection, queue)
        return True
    except pika.exceptions.ChannelClosedByBroker as err:
        assert err.reply_code == 404, err
        return False


@pytest.mark.parametrize("durable", [True, False])
def test_declare_named_queue(connection, channel, unique_name, durable):
    name = unique_name()
    ok = channel.queue_declare(name, durable=durable).method
    assert ok.queue == name
    assert ok.message_count == 0
    assert ok.consumer_count == 0
    # Redeclaring with identical arguments is idempotent.
    assert channel.queue_declare(name, durable=durable).method.queue == name
    assert declare_passive(connection, name).queue == name


def test_server_named_queue(channel):
    first = channel.queue_declare("", exclusive=True).method.queue
    second = channel.queue_declare("", exclusive=True).method.queue
    assert first.startswith("amq.gen-"), first
    assert second.startswith("amq.gen-"), second
    assert first != second


def test_redeclare_with_different_durability_is_precondition_failed(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name, durable=True)
    err = channel_error(channel, lambda: channel.queue_declare(name, durable=False))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err


def test_redeclare_with_different_arguments_is_precondition_failed(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name, arguments={"x-max-length": 10})
    err = channel_error(
        channel, lambda: channel.queue_declare(name, arguments={"x-max-length": 20}))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err


def test_passive_declare_of_missing_queue_is_not_found(connection, unique_name):
    assert_queue_missing(connection, unique_name())


def test_exclusive_queue_is_locked_for_other_connections(connect, unique_name):
    owner = connect()
    name = unique_name()
    owner.channel().queue_declare(name, exclusive=True)

    other = connect()
    ch = other.channel()
    err = channel_error(ch, lambda: ch.queue_declare(name, passive=True))
    assert err.reply_code == 405, err
    assert err.reply_text.startswith("RESOURCE_LOCKED"), err

    ch = other.channel()
    err = channel_error(
        ch, lambda: ch.basic_consume(name, lambda *a: None, auto_ack=True))
    assert err.reply_code == 405, err

    # The owner itself can still use it.
    assert declare_passive(owner, name).queue == name


def test_exclusive_queue_is_deleted_when_its_connection_closes(connect, unique_name):
    observer = connect()
    owner = connect()
    name = unique_name()
    owner.channel().queue_declare(name, exclusive=True)
    # While the owner lives, the queue exists but is locked to others.
    ch = observer.channel()
    err = channel_error(ch, lambda: ch.queue_declare(name, passive=True))
    assert err.reply_code == 405, err

    owner.close()
    # queue_exists asserts on a 405, so polling waits for a clean 404.
    eventually(lambda: not queue_exists(observer, name))


def test_auto_delete_queue_goes_away_after_last_consumer(connection, channel, unique_name):
    name = unique_name()
    channel.queue_declare(name, auto_delete=True)
    tag = channel.basic_consume(name, lambda *a: None, auto_ack=True)
    # It exists while it has a consumer.
    assert declare_passive(connection, name).consumer_count == 1
    channel.basic_cancel(tag)
    eventually(lambda: not queue_exists(connection, name))


def test_declare_ok_reports_message_and_consumer_counts(connection, channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    for i in range(3):
        channel.basic_publish("", name, f"m{i}".encode())
    eventually(lambda: declare_passive(connection, name).message_count == 3)
    assert declare_passive(connection, name).consumer_count == 0

    consumer_ch = connection.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    consumer_ch.basic_consume(name, lambda *a: None)

    def counts():
        ok = declare_passive(connection, name)
        return (ok.message_count, ok.consumer_count)

    # One message is now unacked at the consumer; two remain ready.
    eventually(lambda: counts() == (2, 1), connection=connection)
    # A non-passive redeclare reports the same counts.
    again = channel.queue_declare(name).method
    assert (again.message_count, again.consumer_count) == (2, 1)


def test_bind_and_unbind_on_amq_direct(channel, unique_name):
    name = unique_name()
    key = unique_name("rk")
    channel.queue_declare(name)
    channel.queue_bind(name, "amq.direct", routing_key=key)

    channel.basic_publish("amq.direct", key, b"routed")
    method, _, body = get_message(channel, name, auto_ack=True)
    assert body == b"routed"
    assert method.exchange == "amq.direct"
    assert method.routing_key == key

    # Another routing key does not reach the queue.  Confirms make the check
    # deterministic: once the publish is confirmed it has been routed.
    channel.confirm_delivery()
    channel.basic_publish("amq.direct", key + ".other", b"elsewhere")
    assert channel.basic_get(name, auto_ack=True) == (None, None, None)

    channel.queue_unbind(name, "amq.direct", routing_key=key)
    channel.basic_publish("amq.direct", key, b"after-unbind")
    assert channel.basic_get(name, auto_ack=True) == (None, None, None)


def test_bind_to_missing_exchange_is_not_found(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    err = channel_error(
        channel, lambda: channel.queue_bind(name, unique_name("x"), routing_key="k"))
    assert err.reply_code == 404, err


def test_purge_returns_message_count(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    channel.confirm_delivery()
    for i in range(4):
        channel.basic_publish("", name, f"m{i}".encode())
    assert channel.queue_purge(name).method.message_count == 4
    assert channel.basic_get(name) == (None, None, None)
    assert channel.queue_purge(name).method.message_count == 0


def test_delete_if_unused_refused_while_consumed(connection, unique_name):
    name = unique_name()
    owner = connection.channel()
    owner.queue_declare(name)
    owner.basic_consume(name, lambda *a: None, auto_ack=True)

    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_delete(name, if_unused=True))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err
    assert queue_exists(connection, name)

    # Without consumers the same delete succeeds.
    owner.close()
    ch = connection.channel()
    ch.queue_delete(name, if_unused=True)
    assert not queue_exists(connection, name)


def test_delete_if_empty_refused_with_messages(connection, channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    channel.confirm_delivery()
    channel.basic_publish("", name, b"keep-me")

    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_delete(name, if_empty=True))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err
    assert declare_passive(connection, name).message_count == 1

    channel.queue_purge(name)
    channel.queue_delete(name, if_empty=True)
    assert not queue_exists(connection, name)


def test_delete_reports_deleted_message_count(connection, channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    channel.confirm_delivery()
    for i in range(3):
        channel.basic_publish("", name, b"x")
    assert channel.queue_delete(name).method.message_count == 3
    assert not queue_exists(connection, name)


def test_reserved_amq_prefix_is_access_refused(channel):
    err = channel_error(channel, lambda: channel.queue_declare("amq.warren-pytest-reserved"))
    assert err.reply_code == 403, err
    assert err.reply_text.startswith("ACCESS_REFUSED"), err


def test_binding_to_default_exchange_is_access_refused(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    err = channel_error(channel, lambda: channel.queue_bind(name, "", routing_key="k"))
    assert err.reply_code == 403, err


def test_invalid_queue_argument_is_precondition_failed(channel, unique_name):
    err = channel_error(channel, lambda: channel.queue_declare(
        unique_name(), arguments={"x-max-length": "not-a-number"}))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED"), err


def test_purge_of_missing_queue_is_not_found(channel, unique_name):
    err = channel_error(channel, lambda: channel.queue_purge(unique_name()))
    assert err.reply_code == 404, err


def test_delete_of_missing_queue_is_ok(channel, unique_name):
    # Since RabbitMQ 3.x queue.delete is idempotent.
    assert channel.queue_delete(unique_name()).method.message_count == 0
    assert channel.is_open


def test_unbind_of_missing_binding_is_ok(channel, unique_name):
    name = unique_name()
    channel.queue_declare(name)
    channel.queue_unbind(name, "amq.direct", routing_key=unique_name("rk"))
    assert channel.is_open


@pytest.mark.parametrize("operation", ["redeclare", "purge", "delete", "get", "bind"])
def test_other_connections_cannot_touch_an_exclusive_queue(connect, unique_name, operation):
    owner = connect()
    name = unique_name()
    owner.channel().queue_declare(name, exclusive=True)
    ch = connect().channel()
    action = {
        "redeclare": lambda: ch.queue_declare(name, exclusive=True),
        "purge": lambda: ch.queue_purge(name),
        "delete": lambda: ch.queue_delete(name),
        "get": lambda: ch.basic_get(name),
        "bind": lambda: ch.queue_bind(name, "amq.direct", routing_key="k"),
    }[operation]
    err = channel_error(ch, action)
    assert err.reply_code == 405, err
    assert err.reply_text.startswith("RESOURCE_LOCKED"), err
    assert declare_passive(owner, name).queue == name


def test_publish_to_default_exchange_without_queue_is_dropped(channel, unique_name):
    # Not mandatory: silently dropped, channel stays open, confirm is an ack.
    channel.confirm_delivery()
    channel.basic_publish("", unique_name(), b"void")
    assert channel.is_open


def _locked_text(name):
    return (f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in "
            "vhost '/'. It could be originally declared on another connection or the exclusive "
            "property value does not match that of the original declaration.")


def test_exclusive_flag_must_match_before_other_equivalence(connect, unique_name):
    """RabbitMQ checks exclusivity first and strictly: a declare whose
    exclusive flag differs from the queue's is 405 (not 406), even when
    durable or auto_delete differ too; passive declares are lenient."""
    conn = connect()
    # Short names: RabbitMQ cuts reply texts over 255 bytes (compared in full here).
    tag = uuid.uuid4().hex[:8]
    exclusive, shared = f"excl-{tag}", f"shared-{tag}"
    conn.channel().queue_declare(exclusive, exclusive=True)
    conn.channel().queue_declare(shared)
    for name, kwargs in [(exclusive, {}),
                         (exclusive, {"durable": True, "auto_delete": True}),
                         (shared, {"exclusive": True}),
                         (shared, {"exclusive": True, "durable": True})]:
        ch = conn.channel()
        err = channel_error(ch, lambda: ch.queue_declare(name, **kwargs))
        assert (err.reply_code, err.reply_text) == (405, _locked_text(name)), (name, kwargs)
    # Passive: no exclusive flag check for the owner or for a shared queue.
    conn.channel().queue_declare(exclusive, passive=True)
    conn.channel().queue_declare(shared, passive=True, exclusive=True)
    conn.channel().queue_delete(shared)


def test_exclusive_queue_is_never_durable(connect, unique_name):
    """RabbitMQ makes exclusive queues non-durable whatever the client asked,
    so redeclaring with either durable value is equivalent."""
    conn = connect()
    name = unique_name("excl")
    ch = conn.channel()
    ch.queue_declare(name, exclusive=True, durable=True)
    ch.queue_declare(name, exclusive=True, durable=False)
    ch.queue_declare(name, exclusive=True, durable=True)


def test_long_reply_text_is_cut_to_252_bytes_and_dots(connect):
    """A reply text longer than a short string holds: RabbitMQ sends its
    first 252 bytes and '...'."""
    name = "long-" + uuid.uuid4().hex + "x" * 150
    connect().channel().queue_declare(name, exclusive=True)
    ch = connect().channel()
    err = channel_error(ch, lambda: ch.queue_declare(name, passive=True))
    assert err.reply_code == 405
    assert len(err.reply_text.encode()) == 255, err.reply_text
    assert err.reply_text == _locked_text(name)[:252] + "...", err.reply_text
