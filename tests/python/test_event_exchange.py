"""The event exchange (RabbitMQ's ``rabbitmq_event_exchange`` plugin).

``amq.rabbitmq.event`` in vhost ``/`` (topic, durable, internal) receives one message
per broker event, whatever vhost it happened in: queue / exchange / binding / consumer
/ connection / channel created and deleted, user authentication success and failure,
vhost / user / permission / policy changes made over the HTTP API.  The routing key is
the event type (``queue.created``, ``user.authentication.success``, ...); the body is
empty; the properties are delivery_mode 2, a timestamp in seconds and headers holding
``timestamp_in_ms`` and the event's fields.

The tests bind an exclusive queue to the exchange and, since ``/`` is shared with the
rest of the suite, only look at events naming what they created themselves.  How
``arguments`` and ``client_properties`` are encoded is not asserted (RabbitMQ 3.10
sends Erlang terms as strings), nor are pid-like values.

Passes against RabbitMQ 3.10.8 with the rabbitmq_event_exchange plugin (``AMQP_URL``
and ``MGMT_URL``) and against Warren.
"""

import time
import uuid
from collections import namedtuple

import pika
import pika.exceptions
import pytest

from conftest import channel_error, eventually
from http_fixtures import api  # noqa: F401 (fixture)

EVENTS = "amq.rabbitmq.event"
PATTERNS = ("queue.*", "exchange.*", "binding.*", "consumer.*", "connection.*",
            "channel.*", "user.#", "vhost.*", "permission.*", "policy.*")

Event = namedtuple("Event", "key headers props body exchange")



class EventLog:
    """An exclusive queue bound to the event exchange; ``until`` reads it."""

    def __init__(self, connection):
        self.channel = connection.channel()
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        for pattern in PATTERNS:
            self.channel.queue_bind(self.queue, EVENTS, pattern)
        self.seen = []

    def _drain(self):
        while True:
            method, props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            self.seen.append(Event(method.routing_key, props.headers or {}, props, body,
                                   method.exchange))

    def until(self, matches, last):
        """The events for which ``matches`` holds, in arrival order, once one
        of them satisfies ``last``."""
        def attempt():
            self._drain()
            found = [e for e in self.seen if matches(e)]
            return found if any(last(e) for e in found) else None
        return eventually(attempt)


@pytest.fixture
def events(broker):
    conn = pika.BlockingConnection(broker.params())
    yield EventLog(conn)
    if conn.is_open:
        conn.close()


def assert_event_message(event):
    assert event.exchange == EVENTS
    assert event.body == b""
    assert event.props.delivery_mode == 2
    ms = event.headers["timestamp_in_ms"]
    assert isinstance(ms, int) and not isinstance(ms, bool)
    assert abs(ms / 1000 - time.time()) < 300
    assert abs(event.props.timestamp - ms // 1000) <= 1


def subset(headers, expected):
    assert {k: headers.get(k) for k in expected} == expected, headers


def test_event_exchange_exists(api, connection):
    x = api.ok("/api/exchanges/%2F/amq.rabbitmq.event")
    assert (x["name"], x["type"], x["durable"], x["internal"], x["auto_delete"]) == (
        EVENTS, "topic", True, True, False)
    ch = connection.channel()
    ch.exchange_declare(EVENTS, passive=True)
    err = channel_error(ch, lambda: ch.basic_publish(EVENTS, "queue.created", b""))
    assert (err.reply_code, err.reply_text) == (
        403, f"ACCESS_REFUSED - cannot publish to internal exchange '{EVENTS}' in vhost '/'")


def test_topology_events_in_order(events, connection, unique_name):
    x, q, tag = unique_name("x"), unique_name("q"), unique_name("ctag")
    ch = connection.channel()
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "nowhere"})
    ch.queue_declare(q, arguments={"x-max-length": 10})
    ch.queue_bind(q, x, "rk", arguments={"a": 1})
    ch.exchange_bind(x, "amq.direct", "rk2")
    ch.basic_qos(prefetch_count=7)
    ch.basic_consume(q, lambda *a: None, consumer_tag=tag)
    ch.basic_cancel(tag)
    ch.exchange_unbind(x, "amq.direct", "rk2")
    ch.queue_unbind(q, x, "rk", arguments={"a": 1})
    ch.queue_delete(q)
    ch.exchange_delete(x)

    ours = {x, q, tag}
    seen = events.until(
        lambda e: ours & {e.headers.get(k) for k in
                          ("name", "source_name", "destination_name", "consumer_tag")},
        lambda e: e.key == "exchange.deleted")
    assert [e.key for e in seen] == [
        "exchange.created", "queue.created", "binding.created", "binding.created",
        "consumer.created", "consumer.deleted", "binding.deleted", "binding.deleted",
        "queue.deleted", "exchange.deleted"]
    (x_created, q_created, b_created, xb_created, c_created, c_deleted,
     xb_deleted, b_deleted, q_deleted, x_deleted) = (e.headers for e in seen)
    for event in seen:
        assert_event_message(event)
        assert event.headers["vhost"] == "/"
    who = {"user_who_performed_action": "guest"}
    subset(x_created, {"name": x, "type": "direct", "durable": False, "auto_delete": False,
                       "internal": False, **who})
    assert "arguments" in x_created
    subset(q_created, {"name": q, "durable": False, "auto_delete": False, "exclusive": False,
                       **who})
    assert "arguments" in q_created
    binding = {"source_name": x, "source_kind": "exchange", "destination_name": q,
               "destination_kind": "queue", "routing_key": "rk", **who}
    subset(b_created, binding)
    subset(b_deleted, binding)
    assert "arguments" in b_created and "arguments" in b_deleted
    x_binding = {"source_name": "amq.direct", "source_kind": "exchange",
                 "destination_name": x, "destination_kind": "exchange", "routing_key": "rk2"}
    subset(xb_created, x_binding)
    subset(xb_deleted, x_binding)
    subset(c_created, {"consumer_tag": tag, "queue": q, "ack_required": True,
                       "exclusive": False, "prefetch_count": 7, **who})
    assert "arguments" in c_created and "channel" in c_created
    subset(c_deleted, {"consumer_tag": tag, "queue": q})
    subset(q_deleted, {"name": q, **who})
    subset(x_deleted, {"name": x, **who})


def test_connection_and_channel_events(events, broker):
    label = f"event-test-{uuid.uuid4().hex[:10]}"
    conn = pika.BlockingConnection(broker.params(client_properties={"connection_name": label}))
    ch = conn.channel()
    ch.close()
    conn.close()

    created = events.until(lambda e: e.headers.get("user_provided_name") == label,
                           lambda e: e.key == "connection.created")[0]
    name = created.headers["name"]
    assert isinstance(name, str) and name
    # channel.closed names no connection (RabbitMQ gives only the channel's pid), so it
    # is told apart by position: between our channel.created and connection.closed.
    seen = events.until(
        lambda e: name in (e.headers.get("name"), e.headers.get("connection_name"))
        or str(e.headers.get("name", "")).startswith(f"{name} (")
        or e.key == "channel.closed",
        lambda e: e.key == "connection.closed" and e.headers.get("name") == name)
    seen = seen[[e.key for e in seen].index("user.authentication.success"):]
    assert [e.key for e in seen] == [
        "user.authentication.success", "connection.created", "channel.created",
        "channel.closed", "connection.closed"]
    auth, conn_created, channel_created, channel_closed, conn_closed = seen
    for event in seen:
        assert_event_message(event)
    subset(auth.headers, {"name": "guest", "auth_mechanism": "PLAIN", "connection_name": name})
    subset(conn_created.headers, {"name": name, "user": "guest", "vhost": "/",
                                  "user_provided_name": label})
    assert isinstance(conn_created.headers["node"], str) and conn_created.headers["node"]
    assert "protocol" in conn_created.headers and "client_properties" in conn_created.headers
    subset(channel_created.headers, {"name": f"{name} (1)", "number": 1, "user": "guest",
                                     "vhost": "/"})
    assert "connection" in channel_created.headers
    subset(conn_closed.headers, {"name": name, "node": conn_created.headers["node"],
                                 "user_provided_name": label})


def test_authentication_failure_event(events, api, broker):
    user = f"event-user-{uuid.uuid4().hex[:10]}"
    assert api.put(f"/api/users/{user}", {"password": "right", "tags": ""}).status == 201
    try:
        assert api.put(f"/api/permissions/%2F/{user}",
                       {"configure": "", "write": "", "read": ""}).status == 201
        wrong = broker.params(credentials=pika.PlainCredentials(user, "wrong"))
        with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
            pika.BlockingConnection(wrong)
        assert ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                "For details see the broker logfile.") in str(info.value)
        right = broker.params(credentials=pika.PlainCredentials(user, "right"))
        pika.BlockingConnection(right).close()

        seen = events.until(
            lambda e: e.key.startswith("user.authentication.") and e.headers.get("name") == user
            or e.key == "connection.created" and e.headers.get("user") == user,
            lambda e: e.key == "connection.created")
        assert [e.key for e in seen] == [
            "user.authentication.failure", "user.authentication.success", "connection.created"]
        failure, success, created = seen
        for event in seen:
            assert_event_message(event)
        subset(failure.headers, {"name": user, "auth_mechanism": "PLAIN"})
        assert "error" in failure.headers
        failed_name = failure.headers["connection_name"]
        assert isinstance(failed_name, str) and failed_name
        subset(success.headers, {"name": user, "auth_mechanism": "PLAIN",
                                 "connection_name": created.headers["name"]})
        assert failed_name != created.headers["name"]
        # The refused connection never became a connection.created.
        assert not [e for e in events.seen if e.key == "connection.created"
                    and e.headers.get("name") == failed_name]
    finally:
        api.delete(f"/api/users/{user}")


def test_vhost_user_permission_and_policy_events(events, api):
    suffix = uuid.uuid4().hex[:10]
    vhost, user, policy = f"event-vhost-{suffix}", f"event-user-{suffix}", f"event-policy-{suffix}"
    perms = {"configure": "^c", "write": "^w", "read": "^r"}
    try:
        assert api.put(f"/api/vhosts/{vhost}", {}).status == 201
        assert api.put(f"/api/users/{user}", {"password": "pw", "tags": ""}).status == 201
        assert api.put(f"/api/permissions/{vhost}/{user}", perms).status == 201
        assert api.put(f"/api/policies/{vhost}/{policy}",
                       {"pattern": "^nothing$", "definition": {"max-length": 5},
                        "apply-to": "queues"}).status == 201
        assert api.delete(f"/api/policies/{vhost}/{policy}").status == 204
        assert api.delete(f"/api/permissions/{vhost}/{user}").status == 204
        assert api.delete(f"/api/users/{user}").status == 204
    finally:
        api.delete(f"/api/users/{user}")
        api.delete(f"/api/vhosts/{vhost}")

    def ours(e):
        kind = e.key.split(".")[0]
        if e.key == "vhost.down":   # RabbitMQ's, right after vhost.deleted; not checked
            return False
        if kind in ("vhost", "user"):
            return e.headers.get("name") in (vhost, user)
        if kind == "permission":
            return e.headers.get("user") == user
        return kind == "policy" and e.headers.get("name") == policy

    seen = events.until(ours, lambda e: e.key == "vhost.deleted")
    assert [e.key for e in seen] == [
        "vhost.created", "user.created", "permission.created", "policy.set",
        "policy.cleared", "permission.deleted", "user.deleted", "vhost.deleted"]
    for event in seen:
        assert_event_message(event)
    v_created, u_created, p_created, pol_set, pol_cleared, p_deleted, u_deleted, v_deleted = (
        e.headers for e in seen)
    who = {"user_who_performed_action": "guest"}
    subset(v_created, {"name": vhost, **who})
    subset(u_created, {"name": user, **who})
    subset(p_created, {"user": user, "vhost": vhost, **perms, **who})
    subset(pol_set, {"name": policy, "vhost": vhost, "pattern": "^nothing$",
                     "apply-to": "queues", "definition": {"max-length": 5}, "priority": 0,
                     **who})
    subset(pol_cleared, {"name": policy, "vhost": vhost, **who})
    subset(p_deleted, {"user": user, "vhost": vhost, **who})
    subset(u_deleted, {"name": user, **who})
    subset(v_deleted, {"name": vhost, **who})
