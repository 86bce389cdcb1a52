"""Wire-level protocol handling, driven with a raw socket client (amqp_raw)
because pika never sends malformed or out-of-order frames."""

import time

import pika.frame
import pika.spec
import pytest

from amqp_raw import PROTOCOL_HEADER, RawAMQP

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8


@pytest.fixture
def raw(broker):
    clients = []

    def make(handshake=True, **handshake_args):
        client = RawAMQP(broker.host, broker.port)
        clients.append(client)
        if handshake:
            handshake_args.setdefault("username", broker.username)
            handshake_args.setdefault("password", broker.password)
            handshake_args.setdefault("vhost", broker.vhost)
            client.handshake(**handshake_args)
        return client

    yield make
    for client in clients:
        client.close()


def expect_connection_error(client, code, name):
    """The broker answers with connection.close ``code``; after our close-ok
    it closes the socket."""
    close = client.wait_for_connection_close()
    assert close.reply_code == code, close
    assert close.reply_text.startswith(name), close
    client.wait_for_eof(timeout=5)
    return close


@pytest.mark.parametrize("header", [
    b"GET / HTTP/1.1\r\n\r\n",          # not AMQP at all
    b"AMQP\x00\x00\x09\x00",            # AMQP 0-9-0
    b"AMQP\x00\x01\x00\x00",            # AMQP 1.0
], ids=["http", "amqp-0-9-0", "amqp-1-0"])
def test_unsupported_protocol_header_gets_0_9_1_header(raw, header):
    client = raw(handshake=False)
    client.send(header)
    # The spec: reply with the supported protocol header, then close.
    assert client.recv_raw(8) == PROTOCOL_HEADER
    client.wait_for_eof(timeout=5)


def test_connection_start_offers_plain(raw):
    client = raw(handshake=False)
    client.send(PROTOCOL_HEADER)
    start = client.recv_method()
    assert isinstance(start, pika.spec.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert b"PLAIN" in start.mechanisms.split()      # pika leaves these as bytes
    assert b"en_US" in start.locales.split()


def test_silent_client_is_disconnected_after_missed_heartbeats(raw):
    client = raw(heartbeat=1)
    started = time.monotonic()
    heartbeats = 0
    # We never send anything: the broker keeps sending heartbeats, then gives
    # up on us (RabbitMQ: after about two missed intervals) and closes.
    while True:
        frame = client.recv_frame(timeout=8)
        if frame is None:
            break
        assert isinstance(frame, pika.frame.Heartbeat), frame
        heartbeats += 1
    elapsed = time.monotonic() - started
    assert heartbeats >= 1
    assert 1.0 <= elapsed <= 6.0, f"closed after {elapsed:.1f}s"


def test_bad_frame_end_is_frame_error(raw):
    client = raw()
    payload = pika.frame.Method(1, pika.spec.Channel.Open()).marshal()[7:-1]
    client.send(client.raw_frame(FRAME_METHOD, 1, payload, end=b"\x00"))
    expect_connection_error(client, 501, "FRAME_ERROR")


def test_frame_larger_than_frame_max_is_frame_error(raw):
    client = raw(frame_max=4096)
    client.open_channel(1)
    client.send(client.raw_frame(FRAME_BODY, 1, b"x" * 5000))
    expect_connection_error(client, 501, "FRAME_ERROR")


def test_unknown_frame_type_is_frame_error(raw):
    client = raw()
    client.send(client.raw_frame(9, 0, b"zz"))
    expect_connection_error(client, 501, "FRAME_ERROR")


def test_method_on_unopened_channel_is_channel_error(raw):
    client = raw()
    client.send_method(5, pika.spec.Queue.Declare(queue="", exclusive=True))
    close = expect_connection_error(client, 504, "CHANNEL_ERROR")
    assert (close.class_id, close.method_id) == (50, 10)   # queue.declare


def test_second_channel_open_is_channel_error(raw):
    client = raw()
    client.open_channel(1)
    client.send_method(1, pika.spec.Channel.Open())
    close = expect_connection_error(client, 504, "CHANNEL_ERROR")
    assert (close.class_id, close.method_id) == (20, 10)   # channel.open


@pytest.mark.parametrize("frame", [
    pika.frame.Header(1, 3, pika.spec.BasicProperties()).marshal(),
    pika.frame.Body(1, b"abc").marshal(),
], ids=["content-header", "content-body"])
def test_content_frame_without_method_is_unexpected_frame(raw, frame):
    client = raw()
    client.open_channel(1)
    client.send(frame)
    expect_connection_error(client, 505, "UNEXPECTED_FRAME")


def test_method_in_the_middle_of_content_is_unexpected_frame(raw):
    client = raw()
    client.open_channel(1)
    client.send_method(1, pika.spec.Basic.Publish(exchange="", routing_key="nowhere"))
    client.send(pika.frame.Header(1, 10, pika.spec.BasicProperties()).marshal())
    client.send(pika.frame.Body(1, b"12345").marshal())    # half the body
    client.send_method(1, pika.spec.Basic.Qos(prefetch_count=1))
    expect_connection_error(client, 505, "UNEXPECTED_FRAME")


def test_heartbeat_on_nonzero_channel_is_unexpected_frame(raw):
    client = raw()
    client.open_channel(1)
    client.send(client.raw_frame(FRAME_HEARTBEAT, 1, b""))
    expect_connection_error(client, 505, "UNEXPECTED_FRAME")


def test_methods_on_a_closing_channel_are_discarded(raw):
    client = raw()
    client.open_channel(1)
    client.send_method(1, pika.spec.Basic.Ack(delivery_tag=7))
    close = client.recv_method()
    assert isinstance(close, pika.spec.Channel.Close), close
    assert close.reply_code == 406
    assert (close.class_id, close.method_id) == (60, 80)   # basic.ack

    # Until we send close-ok, the broker must ignore what we send on the
    # channel: this qos gets no qos-ok and causes no further error.
    client.send_method(1, pika.spec.Basic.Qos(prefetch_count=1))
    client.send_method(1, pika.spec.Channel.CloseOk())
    # The channel number is free again and the connection healthy.
    client.send_method(1, pika.spec.Channel.Open())
    reply = client.recv_method()
    assert isinstance(reply, pika.spec.Channel.OpenOk), reply
    client.send_method(1, pika.spec.Queue.Declare(queue="", exclusive=True))
    reply = client.recv_method()
    assert isinstance(reply, pika.spec.Queue.DeclareOk), reply


def test_connection_close_handshake(raw):
    client = raw()
    client.open_channel(1)
    client.send_method(0, pika.spec.Connection.Close(
        reply_code=200, reply_text="bye", class_id=0, method_id=0))
    reply = client.recv_method()
    assert isinstance(reply, pika.spec.Connection.CloseOk), reply
    # Closing the socket is now up to us (the side that sent close).


def test_connection_close_keeps_socket_and_answers_every_close(raw):
    """After the client's connection.close the broker discards what follows
    (here publishes), answers a second close with close-ok too, and leaves
    closing the socket to the client (RabbitMQ's reader)."""
    client = raw()
    client.open_channel(1)
    publish = pika.frame.Method(1, pika.spec.Basic.Publish(
        exchange="", routing_key="nowhere")).marshal()
    header = pika.frame.Header(1, 1, pika.spec.BasicProperties()).marshal()
    body = pika.frame.Body(1, b"x").marshal()
    close = pika.frame.Method(0, pika.spec.Connection.Close(
        reply_code=200, reply_text="bye", class_id=0, method_id=0)).marshal()
    client.send(close + (publish + header + body) * 200 + close)
    assert isinstance(client.recv_method(), pika.spec.Connection.CloseOk)
    assert isinstance(client.recv_method(), pika.spec.Connection.CloseOk)
    # Nothing else comes, and the socket stays open while we keep it.
    with pytest.raises(TimeoutError):
        client.recv_frame(timeout=0.5)
    assert not client.eof


def test_queue_delete_ok_comes_before_own_consumer_cancel(raw, unique_name):
    """Deleting a queue on the channel that consumes from it: RabbitMQ sends
    queue.delete-ok first, then basic.cancel for that consumer."""
    queue = unique_name()
    client = raw(capabilities={"consumer_cancel_notify": True})
    client.open_channel(1)
    client.send_method(1, pika.spec.Queue.Declare(queue=queue))
    assert isinstance(client.recv_method(), pika.spec.Queue.DeclareOk)
    client.send_method(1, pika.spec.Basic.Consume(queue=queue, consumer_tag="ctag-own"))
    assert isinstance(client.recv_method(), pika.spec.Basic.ConsumeOk)
    client.send_method(1, pika.spec.Queue.Delete(queue=queue))
    first = client.recv_method()
    second = client.recv_method()
    assert isinstance(first, pika.spec.Queue.DeleteOk), (first, second)
    assert isinstance(second, pika.spec.Basic.Cancel), second
    assert second.consumer_tag == "ctag-own"


def test_channel_max_counts_open_channels_not_numbers(raw):
    """RabbitMQ accepts any channel number; channel_max bounds how many are
    open at once: the open beyond it is connection.close 530 (class/method 0)."""
    client = raw(channel_max=2)
    client.open_channel(65535)
    client.open_channel(1)
    client.send_method(7, pika.spec.Channel.Open())
    close = client.wait_for_connection_close()
    assert (close.reply_code, close.class_id, close.method_id) == (530, 0, 0), close
    assert close.reply_text == ("NOT_ALLOWED - number of channels opened (2) has reached "
                                "the negotiated channel_max (2)"), close
    client.wait_for_eof(timeout=5)


def test_bad_password_gets_access_refused_close(raw, broker):
    client = raw(handshake=False)
    client.send(PROTOCOL_HEADER)
    assert isinstance(client.recv_method(), pika.spec.Connection.Start)
    client.send_method(0, pika.spec.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN", response=f"\0{broker.username}\0not-the-password",
        locale="en_US"))
    close = client.recv_method()
    assert isinstance(close, pika.spec.Connection.Close), close
    assert close.reply_code == 403
    assert close.reply_text.startswith("ACCESS_REFUSED"), close


@pytest.mark.parametrize("channel_max,frame_max", [
    (0, 131072),        # channel_max "no limit": more than offered
    (65535, 131072),    # more channels than offered
    (2047, 0),          # frame_max "no limit"
    (2047, 1 << 20),    # larger frames than offered
    (2047, 4000),       # below the 4096 minimum
])
def test_tune_ok_beyond_the_offer_is_refused(broker, channel_max, frame_max):
    """As RabbitMQ: a tune-ok may only lower what connection.tune offered; otherwise the socket is
    closed without connection.close (the connection was never opened)."""
    r = RawAMQP(broker.host, broker.port, timeout=10)
    try:
        r.send(PROTOCOL_HEADER)
        assert isinstance(r.recv_method(), pika.spec.Connection.Start)
        r.send_method(0, pika.spec.Connection.StartOk(
            client_properties={}, mechanism="PLAIN",
            response=f"\0{broker.username}\0{broker.password}", locale="en_US"))
        tune = r.recv_method()
        assert (tune.channel_max, tune.frame_max) == (2047, 131072), tune
        r.send_method(0, pika.spec.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=0))
        r.send_method(0, pika.spec.Connection.Open(virtual_host=broker.vhost))
        assert r.recv_method(timeout=10) is None
    finally:
        r.close()
