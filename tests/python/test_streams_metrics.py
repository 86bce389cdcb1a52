"""Prometheus metrics of streams, with RabbitMQ's names (``rabbitmq_prometheus`` and the stream
plugin's collector):

* ``/metrics``: ``rabbitmq_stream_publishers`` / ``rabbitmq_stream_consumers`` (gauges) and
  ``rabbitmq_stream_publishers_messages_{published,confirmed,errored}_total`` /
  ``rabbitmq_stream_consumers_messages_consumed_total`` summed over the stream protocol's
  publishers and consumers; ``rabbitmq_global_publishers`` / ``rabbitmq_global_consumers`` with
  ``protocol="stream"``; stream connections and consumers counted in ``rabbitmq_connections`` and
  ``rabbitmq_consumers``; ``rabbitmq_stream_segments`` (typed counter, no ``_total``, as RabbitMQ)
  summed over the streams.
* ``/metrics/per-object``: per stream (labels vhost, queue) ``rabbitmq_stream_segments``,
  ``rabbitmq_queue_messages`` and ``rabbitmq_queue_messages_bytes`` (what the management API
  shows as its messages and message_bytes), ``rabbitmq_stream_consumer_max_offset_lag``; per
  publisher / consumer (labels vhost, queue, connection, id) the stream collector's counters; per
  stream connection its byte counters.

Warren-only: a Warren started by this module, so the counts are exact.
"""

import urllib.parse
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WarrenProcess, amqp_mode_is_external, eventually, warren_binary
from test_management import Api, _OPENER
from test_stream_protocol import (Confirms, Inbox, OffsetType, StreamAddr, make_consumer,
                                  make_producer, run, spec, wait_until)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="counts exactly on a Warren started by this module (AMQP_URL is set)")

MESSAGES = 10


def q(name):
    return urllib.parse.quote(name, safe="")


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = WarrenProcess(warren_binary(), tmp_path_factory.mktemp("warren-streams-metrics") / "warren.log")
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not (proc.http_port and proc.prometheus_port and proc.stream_port):
        proc.terminate()
        pytest.fail("Warren printed no HTTP / Prometheus / streams listener line; output:\n" + proc.output(),
                    pytrace=False)
    yield proc
    proc.terminate()


def scrape(warren, path="/metrics"):
    """(raw text, {family name: family}, {(sample name, labels tuple): value})."""
    with _OPENER.open(f"http://127.0.0.1:{warren.prometheus_port}{path}", timeout=10) as resp:
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, families, samples


def value(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not in the scrape"
    return samples[key]


def test_stream_metrics_follow_publishers_and_consumers(warren):
    api = Api(warren.http_port)
    addr = StreamAddr(warren.host, warren.stream_port, "/", "guest", "guest")
    stream = f"metrics-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/queues/%2F/{q(stream)}",
                   {"durable": True, "arguments": {"x-queue-type": "stream"}}).status == 201

    def global_stream(samples, name):
        return value(samples, name, protocol="stream")

    # Nothing of the stream protocol yet.
    _, families, s = scrape(warren)
    assert value(s, "rabbitmq_stream_publishers") == 0 and value(s, "rabbitmq_stream_consumers") == 0
    assert global_stream(s, "rabbitmq_global_publishers") == 0
    assert global_stream(s, "rabbitmq_global_consumers") == 0
    assert families["rabbitmq_stream_segments"].type == "counter"

    async def scenario():
        confirms, inbox = Confirms(), Inbox()
        async with make_producer(addr) as producer, make_consumer(addr) as consumer:
            await producer.send_batch(stream, [f"message {i}".encode() for i in range(MESSAGES)],
                                      on_publish_confirm=confirms)
            await confirms.wait(MESSAGES)
            await consumer.subscribe(stream, inbox, offset_specification=spec(OffsetType.FIRST))
            await wait_until(lambda: len(inbox) >= MESSAGES, what=f"{MESSAGES} messages")
            publisher = (await wait_until(lambda: [p for p in api.ok("/api/stream/publishers") if p["confirmed"] == MESSAGES],
                                          what="the publisher's confirms in the API"))[0]
            sub = (await wait_until(lambda: [c for c in api.ok("/api/stream/consumers") if c["consumed"] == MESSAGES],
                                    what="the consumer's messages in the API"))[0]
            queue = api.ok(f"/api/queues/%2F/{q(stream)}")
            stream_conns = api.ok("/api/stream/connections")
            amqp_conns = api.ok("/api/connections")

            # Aggregated.
            text, families, s = scrape(warren)
            assert value(s, "rabbitmq_stream_publishers") == 1
            assert value(s, "rabbitmq_stream_consumers") == 1
            assert value(s, "rabbitmq_stream_publishers_messages_published_total") == MESSAGES
            assert value(s, "rabbitmq_stream_publishers_messages_confirmed_total") == MESSAGES
            assert value(s, "rabbitmq_stream_publishers_messages_errored_total") == 0
            assert value(s, "rabbitmq_stream_consumers_messages_consumed_total") == MESSAGES
            assert global_stream(s, "rabbitmq_global_publishers") == 1
            assert global_stream(s, "rabbitmq_global_consumers") == 1
            assert value(s, "rabbitmq_connections") == len(stream_conns) + len(amqp_conns) >= 2
            assert value(s, "rabbitmq_consumers") == 1
            assert families["rabbitmq_stream_publishers"].type == "gauge"
            assert families["rabbitmq_stream_publishers_messages_published"].type == "counter"
            # RabbitMQ's name exactly (the parser adds _total to a counter's samples).
            segments_total = [line for line in text.splitlines() if line.startswith("rabbitmq_stream_segments ")]
            assert segments_total and float(segments_total[0].split()[1]) >= 1, segments_total
            assert value(s, "rabbitmq_queue_messages_bytes") >= queue["message_bytes"] > 0

            # Per object.
            text, families, s = scrape(warren, "/metrics/per-object")
            mine = dict(vhost="/", queue=stream)
            assert f'rabbitmq_stream_segments{{vhost="/",queue="{stream}"}} {queue["segments"]}' in text
            assert queue["segments"] >= 1
            assert value(s, "rabbitmq_queue_messages", **mine) == MESSAGES == queue["messages"]
            assert value(s, "rabbitmq_queue_messages_ready", **mine) == MESSAGES
            assert value(s, "rabbitmq_queue_messages_bytes", **mine) == queue["message_bytes"] > 0
            pub = dict(mine, connection=publisher["connection_details"]["name"], id=str(publisher["publisher_id"]))
            assert value(s, "rabbitmq_stream_publishers_messages_published_total", **pub) == MESSAGES
            assert value(s, "rabbitmq_stream_publishers_messages_confirmed_total", **pub) == MESSAGES
            assert value(s, "rabbitmq_stream_publishers_messages_errored_total", **pub) == 0
            con = dict(mine, connection=sub["connection_details"]["name"], id=str(sub["subscription_id"]))
            assert value(s, "rabbitmq_stream_consumers_messages_consumed_total", **con) == MESSAGES
            assert value(s, "rabbitmq_stream_consumer_max_offset_lag", **mine) == sub["offset_lag"] == 0
            for c in stream_conns:
                labels = dict(vhost="/", connection=c["name"])
                assert value(s, "rabbitmq_connection_incoming_bytes_total", **labels) > 0
                # Present; its value is what /api/stream/connections shows as send_oct.
                assert value(s, "rabbitmq_connection_outgoing_bytes_total", **labels) >= 0
            assert global_stream(s, "rabbitmq_global_publishers") == 1
            # The stream collector's gauges are /metrics' only (RabbitMQ's per-object mode keeps
            # its counters).
            assert "rabbitmq_stream_publishers" not in families
            # Each family once.
            typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
            assert len(typed) == len(set(typed))

    run(scenario())

    # Closed: the stream protocol's gauges go back to zero; the stream keeps its messages.
    def after():
        _, _, s = scrape(warren)
        assert (value(s, "rabbitmq_stream_publishers"), value(s, "rabbitmq_stream_consumers"),
                global_stream(s, "rabbitmq_global_publishers"), global_stream(s, "rabbitmq_global_consumers"),
                value(s, "rabbitmq_connections")) == (0, 0, 0, 0, 0)
        _, _, s = scrape(warren, "/metrics/per-object")
        assert value(s, "rabbitmq_queue_messages", vhost="/", queue=stream) == MESSAGES
        assert ("rabbitmq_stream_consumer_max_offset_lag", (("queue", stream), ("vhost", "/"))) not in s
        return True
    eventually(after)
    assert api.delete(f"/api/queues/%2F/{q(stream)}").status == 204
