"""Input a well-behaved client never sends, and that must never be stored:

* a content header whose property list clients cannot decode: RabbitMQ closes
  the connection with 541 INTERNAL_ERROR and stores nothing; a stored one
  would kill every pika / amqplib consumer of the queue, again after every
  restart;
* names that are not valid UTF-8 (queue, exchange, binding key, consumer tag):
  RabbitMQ closes with 501 "FRAME_ERROR - Malformed UTF-8 in shortstr"; a
  durable queue under such a name was renamed on export and lost its messages
  at the next restart;
* over the HTTP API, queue names longer than 255 bytes: 400, not a queue under
  the first 255 bytes.

The AMQP tests run against RabbitMQ too (``AMQP_URL``); the HTTP test needs a
Warren started with its management listener.
"""

import base64
import json
import struct
import urllib.error
import urllib.parse
import urllib.request

import pika
import pika.exceptions
import pika.spec
import pytest

from amqp_raw import RawAMQP
from conftest import WarrenProcess, amqp_mode_is_external, get_message, warren_binary

# Property lists that cannot be decoded, as (name, flags + values).
MALFORMED_PROPERTIES = [
    # content-type announced, its length runs past the end
    ("truncated short string", struct.pack(">H", 0x8000) + b"\x10ab"),
    # headers table with an unknown value type 'Z'
    ("unknown field type in headers", struct.pack(">H", 0x2000) + struct.pack(">I", 4) + b"\x01kZ\x00"),
    # delivery-mode announced, two more bytes than the flags account for
    ("bytes after the last property", struct.pack(">H", 0x1000) + b"\x02\xff\xff"),
    # headers table longer than what follows
    ("table length past the end", struct.pack(">H", 0x2000) + struct.pack(">I", 400) + b"\x01k"),
]


def shortstr(b):
    return bytes([len(b)]) + b


def method_payload(class_id, method_id, args):
    return struct.pack(">HH", class_id, method_id) + args


def raw_client(broker):
    r = RawAMQP(broker.host, broker.port)
    r.handshake(broker.username, broker.password, broker.vhost)
    r.open_channel(1)
    return r


def expect_connection_close(r):
    method = r.recv_method()
    assert isinstance(method, pika.spec.Connection.Close), method
    r.send_method(0, pika.spec.Connection.CloseOk())
    return method


@pytest.mark.parametrize("case", MALFORMED_PROPERTIES, ids=[c[0] for c in MALFORMED_PROPERTIES])
def test_malformed_properties_close_the_connection_and_store_nothing(broker, connect, unique_name, case):
    _, props = case
    conn = connect()
    ch = conn.channel()
    q = unique_name("q")
    ch.queue_declare(q)
    r = raw_client(broker)
    try:
        r.send_method(1, pika.spec.Basic.Publish(exchange="", routing_key=q))
        r.send(RawAMQP.raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 3) + props))
        r.send(RawAMQP.raw_frame(3, 1, b"bad"))
        close = expect_connection_close(r)
    finally:
        r.close()
    assert close.reply_code == 541, close
    assert close.reply_text.startswith("INTERNAL_ERROR"), close
    # Nothing was stored, and the queue's consumers go on with the next good message.
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.basic_publish("", q, b"good", pika.BasicProperties(headers={"k": "v"}))
    _, properties, body = get_message(ch, q, auto_ack=True)
    assert (body, properties.headers) == (b"good", {"k": "v"})


def _declare_queue(name):
    return method_payload(50, 10, struct.pack(">H", 0) + shortstr(name) + b"\x00" + struct.pack(">I", 0))


def _declare_exchange(name):
    return method_payload(40, 10, struct.pack(">H", 0) + shortstr(name) + shortstr(b"direct") + b"\x00"
                          + struct.pack(">I", 0))


def _bind(key):
    return method_payload(50, 20, struct.pack(">H", 0) + shortstr(b"") + shortstr(b"amq.direct")
                          + shortstr(key) + b"\x00" + struct.pack(">I", 0))


def _consume(tag):
    return method_payload(60, 20, struct.pack(">H", 0) + shortstr(b"") + shortstr(tag) + b"\x00"
                          + struct.pack(">I", 0))


NON_UTF8 = [
    ("queue.declare", _declare_queue(b"warren-pytest.bad\xff\xfename")),
    ("exchange.declare", _declare_exchange(b"warren-pytest.bad\xffx")),
    ("queue.bind routing key", _bind(b"key\xff")),
    ("basic.consume tag", _consume(b"tag\xc3")),
]


@pytest.mark.parametrize("case", NON_UTF8, ids=[c[0] for c in NON_UTF8])
def test_names_that_are_not_utf8_are_refused(broker, connect, case):
    _, payload = case
    r = raw_client(broker)
    try:
        r.send(RawAMQP.raw_frame(1, 1, payload))
        close = expect_connection_close(r)
    finally:
        r.close()
    assert (close.reply_code, close.reply_text) == (501, "FRAME_ERROR - Malformed UTF-8 in shortstr"), close
    # Nothing exists under the name as it would be shown (the invalid bytes replaced).
    ch = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        if "queue.declare" in case[0]:
            ch.queue_declare("warren-pytest.bad\ufffd\ufffdname", passive=True)
        else:
            ch.exchange_declare("warren-pytest.bad\ufffdx", passive=True)
    assert info.value.reply_code == 404


@pytest.mark.skipif(amqp_mode_is_external(),
                    reason="starts its own Warren with the management listener (AMQP_URL is set)")
def test_http_queue_names_longer_than_255_bytes_are_refused():
    proc = WarrenProcess(warren_binary()).wait_ready()
    try:
        auth = "Basic " + base64.b64encode(b"guest:guest").decode()

        def put(path):
            req = urllib.request.Request(
                f"http://127.0.0.1:{proc.http_port}{path}", data=b"{}", method="PUT",
                headers={"Authorization": auth, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        # 256 bytes, the last character cut in the middle by a 255-byte cut.
        long_name = "q" * 254 + "\u00e9"
        status, body = put(f"/api/queues/%2F/{urllib.parse.quote(long_name)}")
        assert status == 400, (status, body)
        assert json.loads(body)["error"] == "bad_request"
        assert put(f"/api/exchanges/%2F/{'x' * 256}")[0] == 400
        # Nothing was created under the first 255 bytes.
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", proc.port))
        try:
            ch = conn.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                ch.queue_declare("q" * 254, passive=True)
            assert info.value.reply_code == 404
        finally:
            if conn.is_open:
                conn.close()
        # 255 bytes is a valid name.
        assert put(f"/api/queues/%2F/{'q' * 255}")[0] == 201
    finally:
        proc.terminate()
