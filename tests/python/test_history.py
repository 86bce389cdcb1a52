"""Message-rate and queue-depth history over the management API, RabbitMQ's
way: ``?lengths_age=&lengths_incr=&msg_rates_age=&msg_rates_incr=`` add
``samples`` (newest first, ``{"sample", "timestamp"}``), ``avg`` and
``avg_rate`` to the ``*_details`` objects of ``/api/overview``,
``/api/queues/{vhost}/{name}`` (and queue lists) and
``/api/exchanges/{vhost}/{name}``.

A real client publishes and fetches; the samples (taken by the broker every
5 s) must then show it.  Waits are ``eventually`` polls of at most two
sampling intervals.  The broker is a Warren started by this module (skipped
when AMQP_URL points the suite elsewhere).
"""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
import pytest

from conftest import WarrenProcess, amqp_mode_is_external, eventually, warren_binary

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="reads the history of a Warren started by this module (AMQP_URL is set)")

SAMPLE_WAIT = 12.0      # two 5 s sampling intervals and some slack
RANGE = "lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5"


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(f"Warren binary not found at {binary}", pytrace=False)
    proc = WarrenProcess(binary, tmp_path_factory.mktemp("warren-history") / "warren.log")
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield proc
    proc.terminate()


def api(warren, path):
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api{path}",
                                     headers={"Authorization": "Basic " + token})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def channel(warren):
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=warren.port, connection_attempts=1, socket_timeout=5))
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


def values(details):
    return [s["sample"] for s in details["samples"]]


def check_shape(details, count=13, incr_ms=5000):
    """RabbitMQ's shape: ``count`` samples, newest first, ``incr`` apart, the
    newest at the current time rounded down to the increment."""
    samples = details["samples"]
    assert len(samples) == count
    stamps = [s["timestamp"] for s in samples]
    assert stamps[0] % incr_ms == 0 and stamps[0] <= time.time() * 1000
    assert all(a - b == incr_ms for a, b in zip(stamps, stamps[1:]))
    assert {"avg", "avg_rate", "rate"} <= details.keys()


def test_queue_samples_show_what_a_client_did(warren, channel):
    name = f"history.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name)
    for i in range(7):
        channel.basic_publish("", name, f"m{i}".encode())
    for _ in range(3):
        method, _, _ = channel.basic_get(name)
        channel.basic_ack(method.delivery_tag)
    path = f"/queues/%2F/{urllib.parse.quote(name, safe='')}?{RANGE}"

    def sampled():
        status, queue = api(warren, path)
        assert status == 200
        ms = queue["message_stats"]
        assert values(queue["messages_ready_details"])[0] == 4
        assert values(ms["publish_details"])[0] == 7
        assert values(ms["get_details"])[0] == 3 and values(ms["ack_details"])[0] == 3
        return queue
    queue = eventually(sampled, timeout=SAMPLE_WAIT, interval=0.25)
    ms = queue["message_stats"]
    for details in (queue["messages_details"], queue["messages_ready_details"],
                    queue["messages_unacknowledged_details"], ms["publish_details"],
                    ms["deliver_get_details"], ms["ack_details"]):
        check_shape(details)
    assert values(queue["messages_details"])[0] == 4
    assert values(queue["messages_unacknowledged_details"])[0] == 0
    assert values(ms["deliver_get_details"])[0] == 3
    # Counters never go back in time, and a minute ago the queue did not exist.
    publish = values(ms["publish_details"])
    assert publish == sorted(publish, reverse=True) and publish[-1] == 0
    assert values(queue["messages_ready_details"])[-1] == 0
    # The same samples in a (filtered, paged) list of queues.
    status, page = api(warren, f"/queues/%2F?page=1&page_size=10&name={name}&{RANGE}")
    assert status == 200 and [q["name"] for q in page["items"]] == [name]
    assert values(page["items"][0]["messages_ready_details"])[0] == 4


def test_overview_and_exchange_samples(warren, channel):
    exchange, queue = f"history-x.{uuid.uuid4().hex[:8]}", f"history-xq.{uuid.uuid4().hex[:8]}"
    channel.exchange_declare(exchange, "fanout")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange)
    _, before = api(warren, f"/overview?{RANGE}")
    published0 = values(before["message_stats"]["publish_details"])[0]
    for _ in range(5):
        channel.basic_publish(exchange, "", b"x")

    def sampled():
        _, overview = api(warren, f"/overview?{RANGE}")
        assert values(overview["message_stats"]["publish_details"])[0] >= published0 + 5
        assert values(overview["queue_totals"]["messages_ready_details"])[0] >= 5
        return overview
    overview = eventually(sampled, timeout=SAMPLE_WAIT, interval=0.25)
    check_shape(overview["message_stats"]["publish_details"])
    check_shape(overview["queue_totals"]["messages_details"])
    # The exchange's own history (another range), polled too: it is read a moment later, and
    # the publishes may have straddled a sample.
    def exchange_sampled():
        status, x = api(warren, f"/exchanges/%2F/{urllib.parse.quote(exchange)}?msg_rates_age=20&msg_rates_incr=5")
        assert status == 200
        check_shape(x["message_stats"]["publish_in_details"], count=5)
        assert values(x["message_stats"]["publish_out_details"])[0] == 5
        return values(x["message_stats"]["publish_in_details"])[0] == 5
    eventually(exchange_sampled, timeout=SAMPLE_WAIT, interval=0.25)


def test_without_parameters_no_samples_and_bad_parameters_refused(warren):
    _, overview = api(warren, "/overview")
    assert "samples" not in overview["message_stats"]["publish_details"]
    # Lengths only: message_stats stay without samples.
    _, overview = api(warren, "/overview?lengths_age=10&lengths_incr=5")
    assert len(overview["queue_totals"]["messages_details"]["samples"]) == 3
    assert "samples" not in overview["message_stats"]["publish_details"]
    for query in ("lengths_age=60", "lengths_age=x&lengths_incr=5", "msg_rates_age=60&msg_rates_incr=0",
                  "msg_rates_age=86400&msg_rates_incr=1"):
        status, body = api(warren, f"/overview?{query}")
        assert status == 400 and body["error"] == "bad_request", query
    # Still authenticated as before.
    request = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/overview?{RANGE}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401
