"""Policies and operator policies apply to queues and exchanges that already exist when they are
set, changed or cleared, as in RabbitMQ: a lower ``max-length`` trims a queue at once (oldest
first), clearing the policy lifts the limit for what comes next, the queue's ``policy``,
``operator_policy`` and ``effective_policy_definition`` follow, and an ``alternate-exchange``
policy on an existing exchange takes effect for its next unroutable message.

Passes against RabbitMQ 3.10.8 (``AMQP_URL`` and ``MGMT_URL``; RabbitMQ applies a policy change
asynchronously and shows it with the queue's next statistics, so the checks poll) and Warren.
"""

import urllib.parse

import pika

from conftest import drain, eventually
from http_fixtures import api, vhost  # noqa: F401 (fixtures)


def q(name):
    return urllib.parse.quote(name, safe="")


def connect(broker, vhost):
    return pika.BlockingConnection(broker.params(virtual_host=vhost))


def publish(ch, queue, bodies):
    for b in bodies:
        ch.basic_publish("", queue, b)


def ready(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def bodies(ch, queue):
    """Take every ready message of ``queue``; their bodies."""
    return [body for _, body in drain(ch, queue)]


def test_a_new_policy_trims_an_existing_queue_and_clearing_it_lifts_the_limit(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("re.q")
    publish(ch, "re.q", [b"0", b"1", b"2", b"3", b"4"])
    assert api.put(f"/api/policies/{q(vhost)}/cap", {"pattern": "^re\\.", "definition": {"max-length": 2},
                                                     "apply-to": "queues"}).status == 201
    eventually(lambda: ready(ch, "re.q") == 2, timeout=10, interval=0.1)

    def shown():
        info = api.ok(f"/api/queues/{q(vhost)}/re.q")
        return (info.get("policy"), info.get("effective_policy_definition")) == ("cap", {"max-length": 2})
    eventually(shown, timeout=10, interval=0.1)
    assert bodies(ch, "re.q") == [b"3", b"4"]   # the oldest went first
    assert api.delete(f"/api/policies/{q(vhost)}/cap").status == 204

    def lifted():
        info = api.ok(f"/api/queues/{q(vhost)}/re.q")
        return info.get("policy") is None and info.get("effective_policy_definition") == {}
    eventually(lifted, timeout=10, interval=0.1)
    publish(ch, "re.q", [b"5", b"6", b"7"])
    assert ready(ch, "re.q") == 3
    conn.close()


def test_an_operator_policy_caps_an_existing_queue(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("op.q", arguments={"x-max-length": 4})
    publish(ch, "op.q", [b"0", b"1", b"2", b"3"])
    assert api.put(f"/api/operator-policies/{q(vhost)}/ops", {"pattern": "^op\\.", "definition": {"max-length": 1},
                                                              "apply-to": "queues"}).status == 201
    eventually(lambda: ready(ch, "op.q") == 1, timeout=10, interval=0.1)
    eventually(lambda: api.ok(f"/api/queues/{q(vhost)}/op.q").get("operator_policy") == "ops",
               timeout=10, interval=0.1)
    assert bodies(ch, "op.q") == [b"3"]
    conn.close()


def test_an_alternate_exchange_policy_applies_to_an_existing_exchange(api, broker, vhost):
    conn = connect(broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("orders", "direct")
    ch.exchange_declare("unrouted", "fanout")
    ch.queue_declare("lost")
    ch.queue_bind("lost", "unrouted")
    assert api.put(f"/api/policies/{q(vhost)}/ae", {"pattern": "^orders$", "definition": {"alternate-exchange": "unrouted"},
                                                    "apply-to": "exchanges"}).status == 201

    def routed_to_ae():
        ch.basic_publish("orders", "nobody", b"x")
        return bodies(ch, "lost")
    eventually(routed_to_ae, timeout=10, interval=0.1)
    eventually(lambda: api.ok(f"/api/exchanges/{q(vhost)}/orders").get("policy") == "ae", timeout=10, interval=0.1)
    conn.close()
