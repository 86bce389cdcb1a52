"""Large bodies split over many frames with a small negotiated frame_max."""

import hashlib
import os

import pika

from conftest import eventually, get_message

BODY_SIZE = 100 * 1024


def test_small_frame_max_is_negotiated(connect):
    conn = connect(frame_max=4096)
    # The client asked for 4096 and the broker must accept the smaller value.
    assert conn._impl.params.frame_max == 4096
    assert conn.channel().is_open


def test_large_body_roundtrip_with_frame_max_4096(connect, unique_name):
    conn = connect(frame_max=4096)
    ch = conn.channel()
    queue = unique_name()
    ch.queue_declare(queue)
    body = os.urandom(BODY_SIZE)
    props = pika.BasicProperties(message_id="big", headers={"sha256": hashlib.sha256(body).hexdigest()})

    # basic.get path.
    ch.basic_publish("", queue, body, props)
    method, got_props, got = get_message(ch, queue, auto_ack=True)
    assert len(got) == BODY_SIZE
    assert got == body
    assert got_props.headers["sha256"] == hashlib.sha256(body).hexdigest()

    # basic.consume path, several large messages back to back so that their
    # body frames follow one another on the wire.
    bodies = [os.urandom(BODY_SIZE) for _ in range(3)]
    for b in bodies:
        ch.basic_publish("", queue, b)
    received = []
    ch.basic_consume(queue, lambda c, m, p, b: received.append(b), auto_ack=True)
    eventually(lambda: len(received) == 3, timeout=10, connection=conn)
    assert received == bodies


def test_large_body_crosses_frame_max_boundaries(connect, unique_name):
    """Publisher with frame_max 4096, consumer with the default frame_max:
    the broker must re-frame bodies, not forward the publisher's frames."""
    small = connect(frame_max=4096).channel()
    large_conn = connect()
    large = large_conn.channel()
    queue = unique_name()
    small.queue_declare(queue)
    # Sizes around multiples of the 4096 - 8 byte frame payload.
    sizes = [4087, 4088, 4089, 3 * 4088, BODY_SIZE]
    bodies = [os.urandom(n) for n in sizes]
    for b in bodies:
        small.basic_publish("", queue, b)
    got = [get_message(large, queue, auto_ack=True)[2] for _ in sizes]
    assert [len(b) for b in got] == sizes
    assert got == bodies
    # And the other direction.
    for b in bodies:
        large.basic_publish("", queue, b)
    got = [get_message(small, queue, auto_ack=True)[2] for _ in sizes]
    assert got == bodies
