"""Connection-level behaviour: handshake, authentication, vhosts, heartbeats,
channel multiplexing and shutdown."""

import time

import pika
import pika.exceptions
import pytest

from conftest import amqp_mode_is_external, eventually, get_message, start_warren

EXPECTED_CAPABILITIES = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
]


def test_server_properties_describe_the_broker(connection):
    props = connection._impl.server_properties
    for key in ("product", "version", "platform", "copyright", "information"):
        assert key in props, f"server_properties lacks {key!r}: {props}"
        value = props[key]
        assert isinstance(value, (str, bytes)) and len(value) > 0, (key, value)


@pytest.mark.parametrize("capability", EXPECTED_CAPABILITIES)
def test_server_advertises_capability(connection, capability):
    capabilities = connection._impl.server_properties.get("capabilities")
    assert isinstance(capabilities, dict), f"no capabilities table: {capabilities!r}"
    assert capabilities.get(capability) is True, capabilities


def test_tune_negotiates_sane_limits(connection):
    params = connection._impl.params
    # The client accepts the server's proposals; they must be usable values.
    assert params.frame_max >= 4096
    assert 0 < params.channel_max <= 65535


def test_wrong_password_is_refused_with_access_refused(broker):
    params = broker.params(credentials=pika.PlainCredentials(broker.username, "wrong-password"))
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError)) as info:
        pika.BlockingConnection(params)
    # authentication_failure_close is advertised, so the broker must explain
    # the refusal with connection.close 403 instead of just dropping the socket.
    message = str(info.value)
    assert "403" in message and "ACCESS_REFUSED" in message, message


def test_unknown_user_is_refused(broker):
    params = broker.params(credentials=pika.PlainCredentials("no-such-user", "guest"))
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError)) as info:
        pika.BlockingConnection(params)
    assert "403" in str(info.value), str(info.value)


def test_missing_vhost_is_not_allowed(broker):
    params = broker.params(virtual_host="warren-pytest-no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(params)
    message = str(info.value)
    assert "530" in message and "NOT_ALLOWED" in message, message


def test_heartbeats_keep_idle_connection_alive(connect):
    conn = connect(heartbeat=1)
    assert conn._impl.params.heartbeat == 1
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue

    # Stay idle for three heartbeat intervals.  The only traffic the broker
    # may send meanwhile is heartbeat frames (8 bytes each); with a 1 s
    # heartbeat it must send at least two.
    received_before = conn._impl.bytes_received
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    received = conn._impl.bytes_received - received_before
    assert received >= 16, f"only {received} bytes of heartbeats in 3 s"

    # The connection is still fully usable.
    assert conn.is_open
    ch.basic_publish("", queue, b"after-idle")
    _, _, body = get_message(ch, queue, auto_ack=True)
    assert body == b"after-idle"


def test_several_channels_on_one_connection(connection):
    channels = [connection.channel() for _ in range(3)]
    numbers = [ch.channel_number for ch in channels]
    assert len(set(numbers)) == 3

    queues = [ch.queue_declare("", exclusive=True).method.queue for ch in channels]
    # Publish on each channel to the queue declared by the next one, then read
    # every queue on its own channel: channels are independent but share the
    # connection's queues.
    for i, ch in enumerate(channels):
        ch.basic_publish("", queues[(i + 1) % 3], f"from-{numbers[i]}".encode())
    for i, ch in enumerate(channels):
        _, _, body = get_message(ch, queues[i], auto_ack=True)
        assert body == f"from-{numbers[(i - 1) % 3]}".encode()

    # Closing one channel leaves the others working.
    channels[0].close()
    assert channels[0].is_closed
    channels[1].basic_publish("", queues[2], b"still-alive")
    _, _, body = get_message(channels[2], queues[2], auto_ack=True)
    assert body == b"still-alive"


def test_channel_numbers_are_reusable_after_close(connection):
    first = connection.channel()
    number = first.channel_number
    first.close()
    again = connection.channel(channel_number=number)
    assert again.is_open
    again.queue_declare("", exclusive=True)


def test_client_close_is_clean(connect):
    conn = connect()
    conn.channel()
    conn.close()
    assert conn.is_closed


@pytest.mark.skipif(amqp_mode_is_external(),
                    reason="needs a broker process owned by the test")
def test_sigterm_closes_connections_with_connection_forced(tmp_path):
    process = start_warren(tmp_path / "warren-sigterm.log")
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host=process.host, port=process.port, connection_attempts=1,
            socket_timeout=5))
        conn.channel()
        process.proc.terminate()   # SIGTERM

        closed = {}

        def observe_close():
            try:
                conn.process_data_events(time_limit=0.1)
            except pika.exceptions.ConnectionClosedByBroker as exc:
                closed["reason"] = exc
            except pika.exceptions.AMQPConnectionError as exc:
                closed["reason"] = exc
            return "reason" in closed or conn.is_closed

        eventually(observe_close, timeout=10)
        reason = closed.get("reason")
        assert isinstance(reason, pika.exceptions.ConnectionClosedByBroker), repr(reason)
        assert reason.reply_code == 320, repr(reason)
        assert "CONNECTION_FORCED" in reason.reply_text

        process.proc.wait(10)
        assert process.proc.returncode == 0, process.output()
    finally:
        process.terminate()


def test_the_broker_announces_itself_as_rabbitmq(connection):
    """Clients branch on product and version (kombu's basic.qos semantics, the Go client's
    feature checks): a drop-in announces the RabbitMQ it follows; Warren names itself in
    `platform` and `information`."""
    props = connection._impl.server_properties
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in props.items() if k != "capabilities"}
    assert text["product"] == "RabbitMQ", text
    assert text["version"].startswith("3."), text
    if not amqp_mode_is_external():
        assert "Warren" in text["platform"] and "Warren" in text["information"], text
