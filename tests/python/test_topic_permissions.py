"""Topic permissions (RabbitMQ's topic authorisation), end to end.

Per (user, vhost, exchange) a ``write`` and a ``read`` regular expression on
routing keys, applying to topic exchanges only: a publish's routing key must
match ``write``, a queue.bind / exchange.bind key must match ``read``;
``{username}`` and ``{vhost}`` are expanded; a user without a topic permission
for an exchange may use any key.  Refusals are RabbitMQ's channel.close 403
texts.  Also the HTTP API (``/api/topic-permissions...``), ``warren ctl``'s
``set/clear/list_topic_permissions`` and definitions import / export /
persistence.

Starts its own Warren processes (management port, fresh brokers for imports
and a restart), so it is skipped when AMQP_URL points at an external broker.
"""

import subprocess
import tempfile
import uuid

import pika
import pika.exceptions
import pytest

from conftest import WarrenProcess, amqp_mode_is_external, close_all, warren_binary
from test_management import ROOT, Api, _start, amqp_params, assert_error, put_user, q

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="needs Warren processes started with --management-port (AMQP_URL is set)")


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("warren-topic") / "warren.log")
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture
def api(warren):
    return Api(warren.http_port)


@pytest.fixture
def connect(warren):
    """Factory: ``connect(user, password)`` opens a pika BlockingConnection."""
    opened = []

    def make(user, password="pw", proc=None):
        conn = pika.BlockingConnection(amqp_params(proc or warren, "/", user, password))
        opened.append(conn)
        return conn

    yield make
    close_all(opened)


def new_user(api, tags=""):
    """A user with full permissions on ``/`` (password ``pw``)."""
    name = f"tp-{uuid.uuid4().hex[:8]}"
    put_user(api, name, "pw", tags)
    reply = api.put(f"/api/permissions/{ROOT}/{q(name)}",
                    {"configure": ".*", "write": ".*", "read": ".*"})
    assert reply.status == 201, reply
    return name


def set_topic(api, user, exchange, write, read, status=201):
    reply = api.put(f"/api/topic-permissions/{ROOT}/{q(user)}",
                    {"exchange": exchange, "write": write, "read": read})
    assert reply.status == status, reply


def refusal(access, key, exchange, user):
    return (f"ACCESS_REFUSED - {access} access to topic '{key}' in exchange '{exchange}' "
            f"in vhost '/' refused for user '{user}'")


def publish_refused(ch, exchange, key):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish(exchange, key, b"x")
    return info.value


def bound_queue(ch, exchange, key):
    name = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(name, exchange, key)
    return name


# --------------------------------------------------------------------------
# AMQP
# --------------------------------------------------------------------------

def test_publish_routing_key_must_match_the_write_pattern(api, connect):
    user = new_user(api)
    set_topic(api, user, "amq.topic", r"^orders\.", ".*")
    ch = connect(user).channel()
    ch.confirm_delivery()
    queue = bound_queue(ch, "amq.topic", "#")
    ch.basic_publish("amq.topic", "orders.new", b"allowed")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"allowed"
    err = publish_refused(ch, "amq.topic", "payments.x")
    assert err.reply_code == 403
    assert err.reply_text == refusal("write", "payments.x", "amq.topic", user)


def test_binding_key_must_match_the_read_pattern(api, connect):
    user = new_user(api)
    set_topic(api, user, "amq.topic", ".*", r"^orders\.")
    conn = connect(user)
    ch = conn.channel()
    queue = bound_queue(ch, "amq.topic", "orders.*")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_bind(queue, "amq.topic", "payments.*")
    assert info.value.reply_code == 403
    assert info.value.reply_text == refusal("read", "payments.*", "amq.topic", user)
    # Exchange-to-exchange: the source's read pattern applies to the binding key.
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_bind("amq.fanout", "amq.topic", "payments.#")
    assert info.value.reply_text == refusal("read", "payments.#", "amq.topic", user)
    ch = conn.channel()
    ch.exchange_bind("amq.fanout", "amq.topic", "orders.#")
    ch.exchange_unbind("amq.fanout", "amq.topic", "orders.#")


def test_username_and_vhost_are_expanded(api, connect):
    user = new_user(api)
    set_topic(api, user, "amq.topic", r"^{username}\.{vhost}", r"^{username}\.")
    conn = connect(user)
    ch = conn.channel()
    ch.confirm_delivery()
    queue = bound_queue(ch, "amq.topic", f"{user}.#")
    ch.basic_publish("amq.topic", f"{user}./.x", b"mine")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"mine"
    err = publish_refused(ch, "amq.topic", "someone-else./.x")
    assert err.reply_text == refusal("write", "someone-else./.x", "amq.topic", user)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_bind(queue, "amq.topic", "other.#")


def test_no_topic_permission_for_the_exchange_allows_every_key(api, connect):
    user = new_user(api)
    # A topic permission on another exchange does not restrict amq.topic.
    api.put(f"/api/exchanges/{ROOT}/tp-other", {"type": "topic"})
    set_topic(api, user, "tp-other", "^$", "^$")
    ch = connect(user).channel()
    ch.confirm_delivery()
    queue = bound_queue(ch, "amq.topic", "anything.#")
    ch.basic_publish("amq.topic", "anything.at.all", b"free")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"free"
    err = publish_refused(ch, "tp-other", "k")
    assert err.reply_text == refusal("write", "k", "tp-other", user)


def test_non_topic_exchanges_are_not_checked(api, connect):
    user = new_user(api)
    set_topic(api, user, "amq.direct", "^$", "^$")
    ch = connect(user).channel()
    ch.confirm_delivery()
    queue = bound_queue(ch, "amq.direct", "some-key")
    ch.basic_publish("amq.direct", "some-key", b"direct")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"direct"


def test_changes_apply_to_open_connections(api, connect):
    user = new_user(api)
    ch = connect(user).channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "payments.x", b"before")
    set_topic(api, user, "amq.topic", r"^orders\.", ".*")
    err = publish_refused(ch, "amq.topic", "payments.x")
    assert err.reply_code == 403


# --------------------------------------------------------------------------
# HTTP API
# --------------------------------------------------------------------------

def test_http_round_trip(api):
    user = new_user(api)
    path = f"/api/topic-permissions/{ROOT}/{q(user)}"
    assert_error(api.get(path), 404, "Object Not Found")
    set_topic(api, user, "amq.topic", "^a", ".*")
    set_topic(api, user, "amq.topic", "^b", ".*", status=204)
    set_topic(api, user, "tp-x", "", "^r")
    entry = {"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^b", "read": ".*"}
    other = {"user": user, "vhost": "/", "exchange": "tp-x", "write": "", "read": "^r"}
    assert sorted(api.ok(path), key=lambda e: e["exchange"]) == [entry, other]
    assert entry in api.ok("/api/topic-permissions")
    assert entry in api.ok(f"/api/vhosts/{ROOT}/topic-permissions")
    assert sorted(api.ok(f"/api/users/{q(user)}/topic-permissions"),
                  key=lambda e: e["exchange"]) == [entry, other]
    # One exchange, then all.
    assert api.delete(f"{path}?exchange=tp-x").status == 204
    assert api.ok(path) == [entry]
    assert api.delete(path).status == 204
    assert_error(api.get(path), 404, "Object Not Found")
    assert_error(api.delete(path), 404, "Object Not Found")
    assert api.ok(f"/api/users/{q(user)}/topic-permissions") == []


def test_http_errors(api):
    user = new_user(api)
    path = f"/api/topic-permissions/{ROOT}/{q(user)}"
    body = assert_error(api.put(path, {"exchange": "amq.topic", "write": "(", "read": ".*"}),
                        400, "bad_request")
    assert "(" in body["reason"]
    assert_error(api.put(path, {"exchange": "amq.topic", "write": ".*"}), 400, "bad_request")
    assert_error(api.put(path, {"exchange": 5, "write": ".*", "read": ".*"}), 400, "bad_request")
    assert_error(api.put(f"/api/topic-permissions/{ROOT}/no-such-user",
                         {"exchange": "amq.topic", "write": ".*", "read": ".*"}),
                 400, "bad_request")
    # Non-administrators: neither read nor change them.
    manager = new_user(api, "management")
    as_manager = api.as_user(manager, "pw")
    for reply in (as_manager.get("/api/topic-permissions"), as_manager.get(path),
                  as_manager.put(path, {"exchange": "amq.topic", "write": ".*", "read": ".*"}),
                  as_manager.delete(path)):
        assert_error(reply, 401, "not_authorised")
    assert_error(api.as_user(user, "wrong").get("/api/topic-permissions"), 401, "not_authorized")


def test_http_publish_and_bind_are_checked_too(api):
    user = new_user(api, "management")
    set_topic(api, user, "amq.topic", r"^orders\.", r"^orders\.")
    as_user = api.as_user(user, "pw")
    publish = f"/api/exchanges/{ROOT}/amq.topic/publish"
    body = {"properties": {}, "routing_key": "orders.x", "payload": "p", "payload_encoding": "string"}
    assert as_user.post(publish, body).status == 200
    # As RabbitMQ 3.10's publish endpoint: 400, the channel's refusal (naming no permission).
    assert_error(as_user.post(publish, dict(body, routing_key="payments.x")), 400, "bad_request",
                 f"403 ACCESS_REFUSED - access to topic 'payments.x' in exchange 'amq.topic' "
                 f"in vhost '/' refused for user '{user}'")
    queue = f"tp-q-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/queues/{ROOT}/{queue}", {"auto_delete": True}).status == 201
    bind = f"/api/bindings/{ROOT}/e/amq.topic/q/{queue}"
    assert as_user.post(bind, {"routing_key": "orders.#"}).status == 201
    assert_error(as_user.post(bind, {"routing_key": "payments.#"}), 401, "not_authorised")
    assert api.delete(f"/api/queues/{ROOT}/{queue}").status == 204


def test_deleting_the_user_or_vhost_removes_its_topic_permissions(api):
    user = new_user(api)
    set_topic(api, user, "amq.topic", "^a", "^a")
    assert api.delete(f"/api/users/{q(user)}").status == 204
    assert all(e["user"] != user for e in api.ok("/api/topic-permissions"))
    vhost = f"tp-vhost-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/vhosts/{vhost}").status == 201
    reply = api.put(f"/api/topic-permissions/{vhost}/guest",
                    {"exchange": "amq.topic", "write": "^a", "read": "^a"})
    assert reply.status == 201, reply
    assert api.ok(f"/api/vhosts/{vhost}/topic-permissions") != []
    assert api.delete(f"/api/vhosts/{vhost}").status == 204
    assert all(e["vhost"] != vhost for e in api.ok("/api/topic-permissions"))


def test_topic_permission_set_before_the_permission_applies(api, connect):
    name = f"tp-{uuid.uuid4().hex[:8]}"
    put_user(api, name, "pw", "")
    set_topic(api, name, "amq.topic", r"^orders\.", ".*")
    reply = api.put(f"/api/permissions/{ROOT}/{q(name)}",
                    {"configure": ".*", "write": ".*", "read": ".*"})
    assert reply.status == 201, reply
    ch = connect(name).channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "orders.x", b"ok")
    assert publish_refused(ch, "amq.topic", "payments.x").reply_code == 403


# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------

def test_definitions_export_import_and_restart(api, tmp_path):
    user = new_user(api)
    set_topic(api, user, "amq.topic", r"^{username}\.", ".*")
    exported = api.ok("/api/definitions")
    entry = {"user": user, "vhost": "/", "exchange": "amq.topic",
             "write": r"^{username}\.", "read": ".*"}
    assert entry in exported["topic_permissions"]
    # Imported into a fresh Warren with a data directory, then restarted on it.
    data_dir = tempfile.TemporaryDirectory(prefix="warren-pytest-topic-")
    try:
        for round_ in range(2):
            proc = WarrenProcess(warren_binary(), tmp_path / f"w{round_}.log",
                                 data_dir=data_dir.name)
            try:
                proc.wait_ready()
                fresh = Api(proc.http_port)
                if round_ == 0:
                    reply = fresh.post("/api/definitions", exported)
                    assert reply.status in (200, 204), reply
                assert entry in fresh.ok("/api/topic-permissions")
                # And enforced.
                conn = pika.BlockingConnection(amqp_params(proc, "/", user, "pw"))
                try:
                    ch = conn.channel()
                    ch.confirm_delivery()
                    ch.basic_publish("amq.topic", f"{user}.ok", b"x")
                    err = publish_refused(ch, "amq.topic", "other.x")
                    assert err.reply_text == refusal("write", "other.x", "amq.topic", user)
                finally:
                    close_all([conn])
            finally:
                proc.terminate()
    finally:
        data_dir.cleanup()


def test_import_reports_an_invalid_topic_permission(api):
    user = new_user(api)
    doc = {"topic_permissions": [{"user": user, "vhost": "/", "exchange": "amq.topic",
                                  "write": "(", "read": ".*"}]}
    body = assert_error(api.post("/api/definitions", doc), 400, "bad_request")
    assert "topic permissions" in body["reason"]
    assert api.ok(f"/api/users/{q(user)}/topic-permissions") == []


# --------------------------------------------------------------------------
# warren ctl
# --------------------------------------------------------------------------

def ctl(warren, *args):
    r = subprocess.run([str(warren_binary()), "ctl", "--port", str(warren.http_port), *args],
                       capture_output=True, text=True, timeout=30)
    return r


def test_ctl_set_list_clear(api, warren):
    user = new_user(api)
    r = ctl(warren, "set_topic_permissions", "-p", "/", user, "amq.topic", "^w", "^r")
    assert r.returncode == 0, r.stderr
    assert f'Setting topic permissions on "amq.topic" for user "{user}" in vhost "/" ...' in r.stdout
    ctl(warren, "set_topic_permissions", user, "tp-y", "^w2", "^r2")
    r = ctl(warren, "list_topic_permissions")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'Listing topic permissions for vhost "/" ...'
    assert lines[1] == "user\texchange\twrite\tread"
    assert f"{user}\tamq.topic\t^w\t^r" in lines
    r = ctl(warren, "list_user_topic_permissions", user)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f'Listing topic permissions for user "{user}" ...'
    assert lines[1] == "vhost\texchange\twrite\tread"
    assert sorted(lines[2:]) == ["/\tamq.topic\t^w\t^r", "/\ttp-y\t^w2\t^r2"]
    r = ctl(warren, "clear_topic_permissions", user, "tp-y")
    assert r.returncode == 0, r.stderr
    assert api.ok(f"/api/users/{q(user)}/topic-permissions") == [
        {"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^w", "read": "^r"}]
    r = ctl(warren, "clear_topic_permissions", user)
    assert r.returncode == 0, r.stderr
    assert api.ok(f"/api/users/{q(user)}/topic-permissions") == []
    # An invalid expression is refused, non-zero.
    r = ctl(warren, "set_topic_permissions", user, "amq.topic", "(", ".*")
    assert r.returncode != 0
