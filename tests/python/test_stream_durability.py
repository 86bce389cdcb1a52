"""Streams across restarts and retention (Warren only: each test restarts its own broker on a
scratch data directory, which an external broker cannot do).

- kill -9 while publishing to a stream with publisher confirms (AMQP 0-9-1 and the stream
  protocol): every confirmed message is there after the restart, in order, with its offset;
  offsets go on from where they were;
- stored consumer offsets and named publishers' sequences (deduplication) survive a restart;
- retention by x-max-length-bytes drops whole old segments: what remains is a contiguous run up
  to the newest message, and a consumer from `first` starts at a segment boundary;
- a deleted stream stays deleted, and one declared again with the same name starts empty.
"""

import asyncio
import os
import threading

import pika
import pytest

from conftest import amqp_mode_is_external, eventually
from test_durability import DurableWarren, connect, data_dir, warren  # noqa: F401 (fixtures)
from test_stream_protocol import (StreamAddr, admin, make_consumer, make_producer, publish,
                                  read, run, spec, wait_until)
from rstream import OffsetType

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="restarts the broker on the same data directory: needs a Warren process owned by "
           "the test (AMQP_URL is set)")

STREAM = {"x-queue-type": "stream"}


def addr_of(proc):
    assert proc.stream_port, "Warren printed no 'Listening for streams on' line"
    return StreamAddr(proc.host, proc.stream_port, "/", "guest", "guest")


def amqp_read(conn, stream, count, offset="first"):
    """Read ``count`` messages from ``stream`` over AMQP 0-9-1: [(offset, body)]."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=500)
    got = []

    def on_message(c, method, props, body):
        got.append((props.headers["x-stream-offset"], body))
        c.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(stream, on_message, arguments={"x-stream-offset": offset})
    eventually(lambda: len(got) >= count, timeout=15, connection=conn)
    ch.basic_cancel(tag)
    return got


def test_confirmed_amqp_publishes_to_a_stream_survive_sigkill(warren, connect):
    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("dur.stream", durable=True, arguments=STREAM)
    ch.confirm_delivery()
    confirmed = []
    # Publish until killed: each publish returns once confirmed.
    stop = threading.Event()

    def killer():
        # Kill once a good number are confirmed, while publishing goes on.
        while len(confirmed) < 300 and not stop.is_set():
            stop.wait(0.005)
        broker.crash()

    t = threading.Thread(target=killer)
    t.start()
    try:
        for i in range(100_000):
            ch.basic_publish("", "dur.stream", b"m-%d" % i)
            confirmed.append(b"m-%d" % i)
    except (pika.exceptions.AMQPError, OSError):
        pass
    finally:
        stop.set()
        t.join()
    assert len(confirmed) >= 300

    broker = warren()
    conn = connect(broker)
    got = amqp_read(conn, "dur.stream", len(confirmed))
    offsets = [o for o, _ in got]
    bodies = [b for _, b in got]
    assert bodies[:len(confirmed)] == confirmed
    assert offsets == list(range(len(got)))
    # New messages continue the offsets.
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "dur.stream", b"after")
    last = amqp_read(conn, "dur.stream", 1, offset=len(got))
    assert last == [(len(got), b"after")]


def test_confirmed_stream_protocol_publishes_survive_sigkill(warren):
    broker = warren()
    addr = addr_of(broker)

    async def publish_then_kill():
        async with admin(addr) as client:
            await client.create_stream("dur.sp")
        await publish(addr, "dur.sp", [b"p-%d" % i for i in range(2000)])

    run(publish_then_kill())
    broker.crash()
    broker = warren()
    addr = addr_of(broker)
    inbox = run(read(addr, "dur.sp", 2000, offset_spec=spec(OffsetType.FIRST)))
    assert inbox.bodies == [b"p-%d" % i for i in range(2000)]
    assert inbox.offsets == list(range(2000))


def test_stored_offsets_and_publisher_sequences_survive_a_restart(warren):
    broker = warren()
    addr = addr_of(broker)

    async def before():
        async with admin(addr) as client:
            await client.create_stream("dur.off")
        async with make_producer(addr) as producer:
            for i in range(1, 6):
                await producer.send_wait("dur.off", b"x-%d" % i, publisher_name="writer")
        async with admin(addr) as client:
            await client.store_offset("dur.off", "reader", 3)
            # The offset is written with the next batch: a query on the same connection
            # comes after it.
            assert await client.query_offset("dur.off", "reader") == 3

    run(before())
    broker.crash()
    broker = warren()
    addr = addr_of(broker)

    async def after():
        async with admin(addr) as client:
            assert await client.query_offset("dur.off", "reader") == 3
            assert await client.query_publisher_sequence("dur.off", "writer") == 5

    run(after())


def test_retention_drops_whole_old_segments(warren, connect):
    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    args = dict(STREAM, **{"x-max-length-bytes": 20_000, "x-stream-max-segment-size-bytes": 4_000})
    ch.queue_declare("dur.ret", durable=True, arguments=args)
    ch.confirm_delivery()
    body = b"r" * 100
    for i in range(2000):
        ch.basic_publish("", "dur.ret", body, pika.BasicProperties(message_id=str(i)))
    got = amqp_read(conn, "dur.ret", 1)
    first = got[0][0]
    # Old segments went, whole: the first kept offset is not 0, and everything from it to
    # the newest message is there.
    assert first > 0
    rest = amqp_read(conn, "dur.ret", 2000 - first)
    assert [o for o, _ in rest] == list(range(first, 2000))
    kept = 2000 - first
    # About 20 kB of 100-byte bodies (plus a segment's worth: the current one is never dropped).
    assert 100 <= kept <= 400, kept
    segs = [f for f in os.listdir(os.path.join(broker.data_dir, "streams", os.listdir(
        os.path.join(broker.data_dir, "streams"))[0])) if f.endswith(".seg")]
    assert 2 <= len(segs) <= 12, segs
    # After a restart the same messages are kept.
    broker.stop(conn)
    broker = warren()
    conn = connect(broker)
    again = amqp_read(conn, "dur.ret", kept)
    assert [o for o, _ in again][:kept] == list(range(first, 2000))


def test_a_deleted_stream_declared_again_starts_empty(warren, connect):
    broker = warren()
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("dur.del", durable=True, arguments=STREAM)
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", "dur.del", b"old-%d" % i)
    ch.queue_delete("dur.del")
    ch.queue_declare("dur.del", durable=True, arguments=STREAM)
    ch.basic_publish("", "dur.del", b"new")
    assert amqp_read(conn, "dur.del", 1) == [(0, b"new")]
    broker.crash()
    broker = warren()
    conn = connect(broker)
    assert amqp_read(conn, "dur.del", 1) == [(0, b"new")]
    assert conn.channel().queue_declare("dur.del", passive=True).method.message_count == 1
