"""The exchange types of the plugins development setups enable: ``x-consistent-hash``
(bundled rabbitmq_consistent_hash_exchange), ``x-random`` (bundled rabbitmq_random_exchange),
RabbitMQ 4.x's built-in ``x-modulus-hash`` and ``x-local-random``, and ``x-delayed-message``
(the community rabbitmq_delayed_message_exchange plugin).

What is checked is what a user relies on: a key always lands in the same queue while the
bindings stay; weights split keys roughly in proportion; hashing on a header or a property;
one random queue per message; and the declare / bind errors, with RabbitMQ's texts (recorded
against RabbitMQ 3.10.8 with both plugins enabled). "Nothing else arrived" is established with
a marker published after the messages (one channel's messages stay in order per queue).

Against another broker (``AMQP_URL``), the 4.x types are skipped: RabbitMQ 3.10 has none.
"""

import base64
import collections
import json
import os
import urllib.parse
import urllib.request

import pika
import pytest

from conftest import amqp_mode_is_external, channel_error, eventually
from test_routing import drain_up_to_marker

KEYS = [f"order-{i}" for i in range(400)]

needs_4x_types = pytest.mark.skipif(amqp_mode_is_external(),
                                    reason="x-modulus-hash and x-local-random are RabbitMQ 4.x types")


def queues(channel, unique_name, n):
    names = [unique_name(f"q{i}") for i in range(n)]
    for name in names:
        channel.queue_declare(name)
    return names


def drain(channel, names):
    """Everything each queue holds, up to a marker published to it now (bodies as str)."""
    return dict(zip(names, drain_up_to_marker(channel, *names)))


def placement(drained):
    """body -> the queue it landed in (each body exactly once)."""
    where = {}
    for name, bodies in drained.items():
        for b in bodies:
            assert b not in where, f"{b} delivered to {where[b]} and {name}"
            where[b] = name
    return where


# --------------------------------------------------------------------------
# x-consistent-hash
# --------------------------------------------------------------------------

def test_consistent_hash_keeps_each_key_in_one_queue_and_weights_split_the_keys(channel, unique_name):
    x = unique_name("chx")
    channel.exchange_declare(x, "x-consistent-hash")
    light, heavy = queues(channel, unique_name, 2)
    # Many points per queue: with few, the arcs (and so the split) vary a lot with the names.
    channel.queue_bind(light, x, "50")
    channel.queue_bind(heavy, x, "200")
    for _ in range(2):
        for k in KEYS:
            channel.basic_publish(x, k, k.encode())
    drained = drain(channel, [light, heavy])
    # Every message routed, and both copies of a key in the same queue.
    assert sum(len(b) for b in drained.values()) == 2 * len(KEYS)
    for name, bodies in drained.items():
        counts = collections.Counter(bodies)
        assert set(counts.values()) == {2}, f"a key split across queues ({name})"
    # Weight 200 against 50: the heavy queue takes about 80 % of the keys. The queue names are
    # random, so the ring is too: the bounds are about 5 standard deviations wide.
    heavy_keys = len(set(drained[heavy]))
    assert 0.62 * len(KEYS) < heavy_keys < 0.95 * len(KEYS), heavy_keys


def test_consistent_hash_adding_a_queue_moves_only_keys_to_it(channel, unique_name):
    x = unique_name("chx")
    channel.exchange_declare(x, "x-consistent-hash")
    a, b, c = queues(channel, unique_name, 3)
    channel.queue_bind(a, x, "10")
    channel.queue_bind(b, x, "10")
    for k in KEYS:
        channel.basic_publish(x, k, k.encode())
    before = placement(drain(channel, [a, b]))
    channel.queue_bind(c, x, "10")
    for k in KEYS:
        channel.basic_publish(x, k, k.encode())
    after = placement(drain(channel, [a, b, c]))
    moved = [k for k in KEYS if after[k] != before[k]]
    assert moved, "the new queue got no keys"
    assert all(after[k] == c for k in moved), "a key moved between the old queues"


def test_consistent_hash_on_a_header_and_on_message_id(channel, unique_name):
    by_header, by_id = unique_name("chx-h"), unique_name("chx-p")
    channel.exchange_declare(by_header, "x-consistent-hash", arguments={"hash-header": "customer"})
    channel.exchange_declare(by_id, "x-consistent-hash", arguments={"hash-property": "message_id"})
    qs = queues(channel, unique_name, 4)
    for q in qs[:2]:
        channel.queue_bind(q, by_header, "5")
    for q in qs[2:]:
        channel.queue_bind(q, by_id, "5")
    for i, k in enumerate(KEYS[:100]):
        # The routing key changes every time: only the header / message_id decides.
        channel.basic_publish(by_header, f"rk-{i}", b"h:" + k.encode(),
                              pika.BasicProperties(headers={"customer": k}))
        channel.basic_publish(by_header, f"rk-{i}-again", b"h2:" + k.encode(),
                              pika.BasicProperties(headers={"customer": k}))
        channel.basic_publish(by_id, f"rk-{i}", b"p:" + k.encode(), pika.BasicProperties(message_id=k))
        channel.basic_publish(by_id, f"rk-{i}-again", b"p2:" + k.encode(), pika.BasicProperties(message_id=k))
    where = placement(drain(channel, qs))
    assert len(where) == 400
    for k in KEYS[:100]:
        assert where["h:" + k] == where["h2:" + k] and where["h:" + k] in qs[:2]
        assert where["p:" + k] == where["p2:" + k] and where["p:" + k] in qs[2:]
    assert {where["h:" + k] for k in KEYS[:100]} == set(qs[:2]), "the header spread over both queues"


@pytest.mark.parametrize("key, text", [
    ("abc", 'PRECONDITION_FAILED - The binding key must be an integer: <<"abc">>'),
    ("0", "PRECONDITION_FAILED - The binding key must be greater than 0"),
    ("-3", "PRECONDITION_FAILED - The binding key must be greater than 0"),
])
def test_consistent_hash_binding_key_must_be_a_positive_weight(channel, unique_name, key, text):
    x = unique_name("chx")
    channel.exchange_declare(x, "x-consistent-hash")
    q = queues(channel, unique_name, 1)[0]
    err = channel_error(channel, lambda: channel.queue_bind(q, x, key))
    assert (err.reply_code, err.reply_text) == (406, text)


@pytest.mark.parametrize("args, text", [
    ({"hash-header": "h", "hash-property": "message_id"},
     "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive"),
    ({"hash-property": "app_id"}, "PRECONDITION_FAILED - Unsupported property: app_id"),
])
def test_consistent_hash_declare_arguments_are_checked(channel, unique_name, args, text):
    x = unique_name("chx")
    err = channel_error(channel, lambda: channel.exchange_declare(x, "x-consistent-hash", arguments=args))
    assert (err.reply_code, err.reply_text) == (406, text)


# --------------------------------------------------------------------------
# x-random, x-local-random, x-modulus-hash
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["x-random", pytest.param("x-local-random", marks=needs_4x_types)])
def test_random_exchange_delivers_each_message_to_one_queue(channel, unique_name, kind):
    x = unique_name("rx")
    channel.exchange_declare(x, kind)
    qs = queues(channel, unique_name, 3)
    for q in qs:
        channel.queue_bind(q, x, "ignored")
    bodies = [f"m{i}" for i in range(300)]
    for b in bodies:
        channel.basic_publish(x, "any-key", b.encode())
    drained = drain(channel, qs)
    where = placement(drained)
    assert sorted(where) == sorted(bodies), "each message exactly once"
    assert all(drained[q] for q in qs), "some queue never picked in 300 messages"


@needs_4x_types
def test_modulus_hash_is_stable_and_ignores_binding_keys(channel, unique_name):
    x = unique_name("mx")
    channel.exchange_declare(x, "x-modulus-hash")
    qs = queues(channel, unique_name, 3)
    for i, q in enumerate(qs):
        channel.queue_bind(q, x, f"key-{i}")
    for _ in range(2):
        for k in KEYS[:150]:
            channel.basic_publish(x, k, k.encode())
    drained = drain(channel, qs)
    assert sum(len(b) for b in drained.values()) == 300
    for name, bodies in drained.items():
        assert set(collections.Counter(bodies).values()) <= {2}, f"a key split across queues ({name})"
    assert all(drained[q] for q in qs)


def test_new_types_are_listed_in_the_overview(broker):
    if broker.process is not None:
        base = f"http://127.0.0.1:{broker.process.http_port}"
    elif os.environ.get("MGMT_URL"):
        base = os.environ["MGMT_URL"].rstrip("/")
    else:
        pytest.skip("no management URL for this broker (set MGMT_URL)")
    req = urllib.request.Request(f"{base}/api/overview")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req) as r:
        names = [t["name"] for t in json.load(r)["exchange_types"]]
    assert {"x-consistent-hash", "x-random"} <= set(names)
    if not amqp_mode_is_external():
        assert {"x-modulus-hash", "x-local-random"} <= set(names)


# --------------------------------------------------------------------------
# x-delayed-message (the rabbitmq_delayed_message_exchange plugin's contract)
# --------------------------------------------------------------------------

needs_delayed_plugin = pytest.mark.skipif(
    amqp_mode_is_external(), reason="RabbitMQ here has no rabbitmq_delayed_message_exchange plugin")


def delayed(delay_ms):
    return pika.BasicProperties(headers={"x-delay": delay_ms})


@needs_delayed_plugin
def test_delayed_exchange_needs_a_delayed_type(channel, unique_name):
    x = unique_name("dx")
    err = channel_error(channel, lambda: channel.exchange_declare(x, "x-delayed-message"))
    assert (err.reply_code, err.reply_text) == (
        406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type")


@needs_delayed_plugin
def test_delayed_messages_are_held_then_routed_in_due_order(channel, unique_name, broker):
    x = unique_name("dx")
    channel.exchange_declare(x, "x-delayed-message", arguments={"x-delayed-type": "topic"})
    q = queues(channel, unique_name, 1)[0]
    channel.queue_bind(q, x, "orders.#")
    channel.basic_publish(x, "orders.held", b"held", delayed(600_000))  # not due during the test
    channel.basic_publish(x, "orders.late", b"late", delayed(1500))
    channel.basic_publish(x, "orders.soon", b"soon", delayed(200))
    channel.basic_publish(x, "orders.now", b"now", delayed(0))
    channel.basic_publish(x, "orders.plain", b"plain")
    channel.basic_publish(x, "other.key", b"unroutable", delayed(100))
    # Without a delay (absent or 0) a message is routed at once, before the marker.
    assert drain(channel, [q])[q] == ["now", "plain"]
    # The delayed ones arrive in due order, routed by the topic type when due.
    def next_body():
        method, _, body = channel.basic_get(q, auto_ack=True)
        return body.decode() if method else None

    arrived = [eventually(next_body, timeout=30), eventually(next_body, timeout=30)]
    assert arrived == ["soon", "late"]
    # The one due in 10 minutes is still held, and counted on the exchange.
    if broker.process is not None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{broker.process.http_port}/api/exchanges/%2F/{urllib.parse.quote(x, safe='')}")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(req) as r:
            assert json.load(r)["messages_delayed"] == 1
    assert drain(channel, [q])[q] == []
