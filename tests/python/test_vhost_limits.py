"""Virtual host limits (``max-queues``, ``max-connections``), set over the HTTP API and with
``rabbitmqctl set_vhost_limits`` (what Testcontainers' ``withVhostLimit`` runs): a declare past
the queue limit is refused with RabbitMQ's 406, a connection past the connection limit with its
530, and what exists stays. Texts recorded against RabbitMQ 3.10.8. Each test uses a fresh vhost,
so it runs against RabbitMQ too (``AMQP_URL`` and ``MGMT_URL``).
"""

import json
import os
import subprocess

import pika
import pika.exceptions
import pytest

from conftest import channel_error, warren_binary
from http_fixtures import api, vhost  # noqa: F401 (fixtures)




def connect(broker, vhost):
    return pika.BlockingConnection(broker.params(virtual_host=vhost))


def test_queue_limit_refuses_declares_beyond_it(api, broker, vhost):
    assert api.put(f"/api/vhost-limits/{vhost}/max-queues", {"value": 2}).status == 204
    assert api.get(f"/api/vhost-limits/{vhost}").json == [{"vhost": vhost, "value": {"max-queues": 2}}]
    # Part of the definitions (so kept across restarts), as RabbitMQ exports them.
    params = api.get("/api/definitions").json["parameters"]
    assert {"vhost": vhost, "component": "vhost-limits", "name": "limits", "value": {"max-queues": 2}} in params
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.queue_declare("q1")  # a redeclare is not a new queue
    err = channel_error(ch, lambda: ch.queue_declare("q3"))
    assert (err.reply_code, err.reply_text) == (
        406, f"PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '{vhost}' (2) is reached")
    # Lifting it (a negative value means no limit) lets the declare through.
    assert api.put(f"/api/vhost-limits/{vhost}/max-queues", {"value": -1}).status == 204
    ch = conn.channel()
    ch.queue_declare("q3")
    conn.close()


def test_connection_limit_refuses_connections_beyond_it(api, broker, vhost):
    assert api.put(f"/api/vhost-limits/{vhost}/max-connections", {"value": 1}).status == 204
    first = connect(broker, vhost)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(broker, vhost)
    expected = (f"(530) \"NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': "
                "connection limit (1) is reached\"")
    assert expected in str(info.value), str(info.value)
    assert first.is_open
    first.close()
    # The place is free again.
    connect(broker, vhost).close()
    assert api.delete(f"/api/vhost-limits/{vhost}/max-connections").status == 204
    assert api.get(f"/api/vhost-limits/{vhost}").json == []


def test_rabbitmqctl_set_vhost_limits(api, broker, vhost):
    if os.environ.get("MGMT_URL"):
        pytest.skip("runs Warren's own rabbitmqctl against a Warren started here")
    ctl = [str(warren_binary()), "ctl", "--port", str(broker.process.http_port), "-p", vhost]
    r = subprocess.run(ctl + ["set_vhost_limits", json.dumps({"max-queues": 5, "max-connections": 10})],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert api.get(f"/api/vhost-limits/{vhost}").json == [
        {"vhost": vhost, "value": {"max-connections": 10, "max-queues": 5}}]
    r = subprocess.run(ctl + ["list_vhost_limits"], capture_output=True, text=True, timeout=30)
    assert json.loads(r.stdout) == {"max-connections": 10, "max-queues": 5}
    r = subprocess.run(ctl + ["clear_vhost_limits"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert api.get(f"/api/vhost-limits/{vhost}").json == []
