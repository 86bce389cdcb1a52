"""An application's tests (pytest + pika) against a Warren started with --test-controls
(WARREN_TEST_CONTROLS=true in a CI service container): each test starts from an empty vhost
(reset), asserts once the broker is quiet (wait-idle) instead of sleeping, looks at messages
without taking them (peek), and makes the broker close the application's connection to test its
reconnection (a fault).

    AMQP_URL=amqp://guest:guest@localhost:5672/%2F MGMT_URL=http://localhost:15672 \\
        pytest test_controls_example.py
"""

import base64
import json
import os
import urllib.error
import urllib.request

import pika
import pika.exceptions
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")
MGMT_URL = os.environ.get("MGMT_URL", "http://localhost:15672")
VHOST = "%2F"


def control(method, path, body=None):
    req = urllib.request.Request(MGMT_URL + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, (json.loads(text) if text else None)


class OrderPublisher:
    """The application under test: publishes orders, reconnecting once if the broker closed
    its connection."""

    def __init__(self):
        self.connect()
        self.reconnects = 0

    def connect(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL + "?client_properties=" +
                                                               "{'connection_name':'order-publisher'}"))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        self.ch.queue_declare("orders")

    def publish(self, order_id):
        try:
            self.ch.basic_publish("", "orders", json.dumps({"id": order_id}).encode(),
                                  pika.BasicProperties(message_id=order_id))
        except (pika.exceptions.ConnectionClosedByBroker, pika.exceptions.StreamLostError,
                pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError):
            self.reconnects += 1
            self.connect()
            self.ch.basic_publish("", "orders", json.dumps({"id": order_id}).encode(),
                                  pika.BasicProperties(message_id=order_id))

    def close(self):
        if self.conn.is_open:
            self.conn.close()


@pytest.fixture(autouse=True)
def clean_vhost():
    assert control("POST", f"/api/warren/vhosts/{VHOST}/reset")[0] == 204


def test_published_orders_can_be_inspected_without_being_taken():
    app = OrderPublisher()
    for i in range(3):
        app.publish(f"order-{i}")
    status, page = control("GET", f"/api/warren/queues/{VHOST}/orders/messages?count=10")
    assert status == 200
    assert [m["properties"]["message_id"] for m in page["messages"]] == ["order-0", "order-1", "order-2"]
    assert app.ch.queue_declare("orders", passive=True).method.message_count == 3
    # Drain it; then the broker is idle (nothing ready, unacked or unconfirmed).
    while app.ch.basic_get("orders", auto_ack=True)[0] is not None:
        pass
    status, idle = control("GET", f"/api/warren/vhosts/{VHOST}/wait-idle?quiet_ms=50&timeout_ms=5000")
    assert (status, idle["idle"]) == (200, True)
    app.close()


def test_the_publisher_reconnects_when_the_broker_closes_its_connection():
    app = OrderPublisher()
    app.publish("before")
    status, applied = control("POST", "/api/warren/faults", {
        "fault": "close-connection", "connection": "order-publisher", "code": 320, "text": "injected"})
    assert status == 200, "the broker runs with --test-controls"
    assert applied == {"applied": 1}
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):                         # until the close arrives
            app.conn.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320
    app.publish("after")
    assert app.reconnects == 1
    assert app.ch.queue_declare("orders", passive=True).method.message_count == 2
    app.close()
