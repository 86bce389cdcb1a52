"""OpenTelemetry export of the message trace (``--otlp-endpoint URL`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``): the events of messages carrying a W3C ``traceparent`` header
(or a message or correlation id) are sent as spans, OTLP over HTTP with JSON, to
``URL/v1/traces``, in the trace the ``traceparent`` names and as children of its span, so a
message joins the distributed trace of the services that sent and received it.

Warren-only; the module runs a tiny OTLP collector (an HTTP server in a thread) and a Warren
pointed at it.
"""

import http.server
import json
import threading

import pika
import pytest

from conftest import WarrenProcess, amqp_mode_is_external, close_all, eventually, warren_binary

pytestmark = pytest.mark.skipif(amqp_mode_is_external(), reason="Warren's own message trace (AMQP_URL is set)")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Collector.received.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def collector():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def exporting(collector):
    p = WarrenProcess(warren_binary(), extra_args=("--otlp-endpoint", f"http://127.0.0.1:{collector.server_port}"))
    p.wait_ready()
    yield p
    p.terminate()


def spans():
    return [s for _, _, body in Collector.received for rs in body["resourceSpans"]
            for ss in rs["scopeSpans"] for s in ss["spans"]]


def test_a_traced_message_becomes_spans_in_its_trace(exporting):
    conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=exporting.port))
    try:
        ch = conn.channel()
        ch.queue_declare("otlp-orders")
        ch.confirm_delivery()
        ch.basic_publish("", "otlp-orders", b"order", pika.BasicProperties(
            message_id="otlp-1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}))
        method, _, _ = ch.basic_get("otlp-orders")
        ch.basic_ack(method.delivery_tag)

        def exported():
            mine = [s for s in spans() if s["traceId"] == TRACE_ID]
            assert {s["name"] for s in mine} >= {"published", "got", "ack"}, mine
            return mine
        mine = eventually(exported, timeout=10)
        assert all(s["parentSpanId"] == PARENT for s in mine), mine
        assert all(len(s["spanId"]) == 16 for s in mine) and len({s["spanId"] for s in mine}) == len(mine)
        publish = next(s for s in mine if s["name"] == "published")
        attrs = {a["key"]: list(a["value"].values())[0] for a in publish["attributes"]}
        assert attrs["messaging.system"] == "rabbitmq"
        assert attrs["messaging.message.id"] == "otlp-1"
        assert attrs["messaging.destination.name"] == ""
        assert attrs["messaging.rabbitmq.destination.routing_key"] == "otlp-orders"
        assert publish["kind"] == 4          # SPAN_KIND_PRODUCER
        assert int(publish["startTimeUnixNano"]) > 1_600_000_000 * 10**9
        path, ctype, body = Collector.received[-1]
        assert path == "/v1/traces" and ctype.startswith("application/json")
        resource = {a["key"]: a["value"]["stringValue"] for a in body["resourceSpans"][0]["resource"]["attributes"]}
        assert resource["service.name"] == "warren"
    finally:
        close_all([conn])
