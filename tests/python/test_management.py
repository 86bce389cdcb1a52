"""The management HTTP API and the Prometheus endpoint, end to end.

One Warren for the module (``--management-port 0 --prometheus-port 0``), driven
over HTTP with urllib (basic auth) and over AMQP with pika.  The expected
status codes, error bodies, field names and counter semantics are RabbitMQ
3.10.8's, checked by hand against a RabbitMQ 3.10.8 node with the management
plugin (same requests, same AMQP traffic).  Message *rates* are sampled every
5 s, so the tests read counters (``message_stats.publish``, ``ack``, ...) and
counts, polling with ``eventually`` where the broker updates them
asynchronously.

``fixtures/rabbitmq-3.10-definitions.json`` is ``GET /api/definitions`` of a
RabbitMQ 3.10.8 node holding a representative topology (a vhost; users tagged
administrator / monitoring / management / none, with known passwords; regex
permissions; durable exchanges of every type with alternate-exchange and
internal; durable queues with TTL, expiry, dead-lettering, max-length,
priority, lazy/single-active and quorum arguments; queue, headers and
exchange-to-exchange bindings with arguments).  The fixture users' passwords
are in ``FIXTURE_PASSWORDS``.

Tests named ``test_rabbitmq_parity_*`` pin RabbitMQ behaviour that tools rely
on (field names, counter semantics, error bodies, headers) beyond the basic
round trips.

The module starts its own Warren processes (with management flags, and fresh
ones for definitions imports), so it is skipped when AMQP_URL points the suite
at an external broker.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pika
import pika.exceptions
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (Collector, WarrenProcess, amqp_mode_is_external, close_all,
                      eventually, warren_binary)

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="needs Warren processes started with --management-port/--prometheus-port "
           "and fresh brokers for definitions imports (AMQP_URL is set: an external "
           "broker cannot be started from a test)")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "rabbitmq-3.10-definitions.json"
FIXTURE_VHOST = "fixture-vhost"
FIXTURE_PASSWORDS = {
    "fixture-admin": "fixture-admin-pw",
    "fixture-monitor": "fixture-monitor-pw",
    "fixture-app": "fixture-app-secret",
    "fixture-plain": "fixture-plain-pw",
    "guest": "guest",
}
ROOT = "%2F"    # the default vhost "/" in URLs

# Fields RabbitMQ 3.10's API has and monitoring tools / scripts read (the web
# UI, rabbitmqadmin, Prometheus exporters, Datadog-style checks).
OVERVIEW_FIELDS = {
    "management_version", "rabbitmq_version", "product_name", "product_version",
    "erlang_version", "cluster_name", "node", "rates_mode", "exchange_types",
    "message_stats", "queue_totals", "object_totals", "listeners", "contexts",
    "statistics_db_event_queue", "churn_rates", "sample_retention_policies",
    "disable_stats", "enable_queue_totals",
}
QUEUE_FIELDS = {
    "name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "node", "state",
    "type", "messages", "messages_details", "messages_ready", "messages_ready_details",
    "messages_unacknowledged", "messages_unacknowledged_details", "message_bytes",
    "message_bytes_ready", "message_bytes_unacknowledged", "consumers",
    "consumer_utilisation", "consumer_capacity", "exclusive_consumer_tag", "policy",
    "effective_policy_definition", "operator_policy", "idle_since", "message_stats",
}
QUEUE_DETAIL_FIELDS = QUEUE_FIELDS | {"consumer_details", "deliveries", "incoming"}
EXCHANGE_FIELDS = {"name", "vhost", "type", "durable", "auto_delete", "internal",
                   "arguments", "user_who_performed_action"}
BINDING_FIELDS = {"source", "vhost", "destination", "destination_type", "routing_key",
                  "arguments", "properties_key"}
CONNECTION_FIELDS = {
    "name", "node", "vhost", "user", "user_who_performed_action", "state", "channels",
    "channel_max", "frame_max", "timeout", "protocol", "auth_mechanism", "type", "ssl",
    "ssl_protocol", "peer_host", "peer_port", "host", "port", "connected_at",
    "client_properties", "recv_oct", "recv_oct_details", "send_oct", "send_oct_details",
    "recv_cnt", "send_cnt", "garbage_collection", "reductions",
}
CHANNEL_FIELDS = {
    "name", "number", "node", "vhost", "user", "user_who_performed_action",
    "connection_details", "state", "confirm", "transactional", "prefetch_count",
    "global_prefetch_count", "consumer_count", "messages_unacknowledged",
    "messages_unconfirmed", "messages_uncommitted", "acks_uncommitted",
}
CONSUMER_FIELDS = {"consumer_tag", "queue", "channel_details", "ack_required", "exclusive",
                   "prefetch_count", "active", "activity_status", "arguments"}
NODE_FIELDS = {
    "name", "type", "running", "os_pid", "uptime", "mem_used", "mem_limit", "mem_alarm",
    "disk_free", "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total",
    "sockets_used", "sockets_total", "proc_used", "proc_total", "run_queue", "processors",
    "rates_mode", "exchange_types", "applications", "partitions",
}
PAGE_FIELDS = {"filtered_count", "item_count", "items", "page", "page_count", "page_size",
               "total_count"}
MESSAGE_STATS_COUNTERS = ("publish", "deliver", "deliver_get", "deliver_no_ack", "get",
                          "get_no_ack", "redeliver", "ack")


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

def q(name):
    """One URL path segment (``/`` and every reserved character escaped)."""
    return urllib.parse.quote(name, safe="")


def uniq(kind):
    return f"mgmt-pytest.{kind}.{uuid.uuid4().hex[:10]}"


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    def __repr__(self):
        return f"<HTTP {self.status} {self.raw[:500]!r}>"


# Never route the test's requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Api:
    """The management API of one Warren, as one user."""

    def __init__(self, port, user="guest", password="guest"):
        self.port = port
        self.user = user
        self.password = password

    def as_user(self, user, password):
        return Api(self.port, user, password)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, *, headers=None, auth=True, data=None):
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with _OPENER.open(req, timeout=10) as resp:
                return Reply(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, err.headers, err.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, {} if body is None else body, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, {} if body is None else body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, path):
        """GET that must answer 200; the decoded JSON."""
        reply = self.get(path)
        assert reply.status == 200, (path, reply)
        return reply.json


def assert_error(reply, status, error, reason=None):
    """A RabbitMQ JSON error: status, ``error`` and (when given) ``reason``
    (a string, or a compiled regex to search)."""
    assert reply.status == status, reply
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    body = reply.json
    assert body["error"] == error, body
    if isinstance(reason, str):
        assert body["reason"] == reason, body
    elif reason is not None:
        assert reason.search(body["reason"]), body
    return body


def publish_http(api, exchange, routing_key, payload, properties=None, vhost=ROOT,
                 encoding="string"):
    reply = api.post(f"/api/exchanges/{vhost}/{q(exchange or 'amq.default')}/publish",
                     {"properties": properties or {}, "routing_key": routing_key,
                      "payload": payload, "payload_encoding": encoding})
    assert reply.status == 200, reply
    return reply.json["routed"]


def put_queue(api, name, vhost=ROOT, durable=False, **body):
    """Create a queue over HTTP (201)."""
    reply = api.put(f"/api/queues/{vhost}/{q(name)}", dict(body, durable=durable))
    assert reply.status == 201, reply


def put_exchange(api, name, kind, vhost=ROOT, durable=False, **body):
    """Create an exchange over HTTP (201)."""
    reply = api.put(f"/api/exchanges/{vhost}/{q(name)}", dict(body, type=kind, durable=durable))
    assert reply.status == 201, reply


def put_user(api, name, password, tags):
    """Create a user over HTTP (201)."""
    reply = api.put(f"/api/users/{q(name)}", {"password": password, "tags": tags})
    assert reply.status == 201, reply


def queue_info(api, name, vhost=ROOT):
    return api.ok(f"/api/queues/{vhost}/{q(name)}")


def queue_counts(api, name, vhost=ROOT):
    info = queue_info(api, name, vhost)
    return (info.get("messages_ready"), info.get("messages_unacknowledged"),
            info.get("messages"), info.get("consumers"))


def wait_queue_counts(api, name, expected, vhost=ROOT, connection=None):
    """Poll until (ready, unacked, messages, consumers) == expected."""
    def check():
        counts = queue_counts(api, name, vhost)
        assert counts == expected, f"(ready, unacked, messages, consumers) = {counts}"
        return True
    eventually(check, connection=connection)


def counters(stats):
    """The message_stats counters (absent ones as 0)."""
    stats = stats or {}
    return {k: stats.get(k, 0) for k in MESSAGE_STATS_COUNTERS}


def connection_named(api, connection_name):
    """The /api/connections entry of the pika connection with this
    ``connection_name`` client property (waits for it to be listed)."""
    def find():
        for conn in api.ok("/api/connections"):
            if conn.get("client_properties", {}).get("connection_name") == connection_name:
                return conn
        return None
    return eventually(find)


def closed_by_broker(conn, timeout=5.0):
    """Dispatch events until the broker closes ``conn``; the exception."""
    deadline = time.monotonic() + timeout
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
    return info.value


# --------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------

def _start(log_path):
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(f"Warren binary not found at {binary}: build it (cargo build) or set "
                    "WARREN_BIN", pytrace=False)
    proc = WarrenProcess(binary, log_path)
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not (proc.http_port and proc.prometheus_port):
        proc.terminate()
        pytest.fail("Warren printed no 'Listening for HTTP/Prometheus' line; output:\n"
                    + proc.output(), pytrace=False)
    return proc


@contextmanager
def fresh_warren(tmp_path):
    """A second, empty Warren (for definitions imports)."""
    proc = _start(tmp_path / f"warren-{uuid.uuid4().hex[:6]}.log")
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("warren-mgmt") / "warren.log")
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture
def api(warren):
    return Api(warren.http_port)


def amqp_params(proc, vhost="/", user="guest", password="guest", **overrides):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=proc.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1, socket_timeout=5, stack_timeout=10, **overrides)


@pytest.fixture
def amqp(warren):
    """Factory: ``amqp(vhost=..., user=..., password=..., name=...)`` opens a
    BlockingConnection to the module's Warren (``name`` sets the
    connection_name client property); all are closed after the test."""
    opened = []

    def make(vhost="/", user="guest", password="guest", name=None, proc=None, **overrides):
        if name is not None:
            overrides["client_properties"] = {"connection_name": name}
        conn = pika.BlockingConnection(
            amqp_params(proc or warren, vhost, user, password, **overrides))
        opened.append(conn)
        return conn

    yield make
    close_all(opened)


# --------------------------------------------------------------------------
# Authentication and authorisation
# --------------------------------------------------------------------------

def test_missing_or_wrong_credentials_get_401_login_failed(api):
    reply = api.get("/api/overview", auth=False)
    assert reply.status == 401, reply
    assert reply.headers.get("WWW-Authenticate") == 'Basic realm="RabbitMQ Management"'
    for reply in (api.as_user("guest", "wrong").get("/api/overview"),
                  api.as_user("no-such-user", "x").get("/api/queues"),
                  api.as_user("guest", "wrong").put("/api/vhosts/x", {})):
        assert_error(reply, 401, "not_authorized", "Login failed")
        assert reply.headers.get("WWW-Authenticate") == 'Basic realm="RabbitMQ Management"'
    # A wrong password does not lock the account: the right one still works.
    assert api.get("/api/overview").status == 200


def test_whoami(api):
    assert api.ok("/api/whoami") == {"name": "guest", "tags": ["administrator"]}


def test_user_without_management_tag_is_refused_by_the_api_but_not_by_amqp(api, amqp):
    user = uniq("plain-user")
    put_user(api, user, "pw", "")
    assert api.put(f"/api/permissions/{ROOT}/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    as_plain = api.as_user(user, "pw")
    for path in ("/api/overview", "/api/whoami", "/api/queues", "/api/users"):
        reply = as_plain.get(path)
        assert reply.status == 401, (path, reply)
        assert reply.json["reason"] == "Not management user", (path, reply)
    assert amqp(user=user, password="pw").is_open


def test_monitoring_user_sees_everything_but_users_permissions_and_definitions(api, amqp):
    user = uniq("monitor")
    vhost = uniq("vh-unseen")
    put_user(api, user, "mon", ["monitoring"])
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    name = uniq("conn")
    amqp(name=name)                                  # guest's connection
    mon = api.as_user(user, "mon")
    assert mon.ok("/api/whoami") == {"name": user, "tags": ["monitoring"]}
    assert mon.ok("/api/overview")["node"] == api.ok("/api/overview")["node"]
    # Every vhost, including one the user has no permissions in, and other users' connections.
    assert {"/", vhost} <= {v["name"] for v in mon.ok("/api/vhosts")}
    eventually(lambda: name in {c["client_properties"].get("connection_name")
                                for c in mon.ok("/api/connections")})
    for method, path, body in (("GET", "/api/users", None),
                               ("GET", f"/api/users/{q(user)}", None),
                               ("GET", "/api/permissions", None),
                               ("GET", "/api/definitions", None),
                               ("PUT", f"/api/vhosts/{q(uniq('vh'))}", {}),
                               ("PUT", f"/api/users/{q(uniq('u'))}",
                                {"password": "x", "tags": ""})):
        reply = mon.request(method, path, body)
        assert reply.status == 401, (method, path, reply)
        assert reply.json["reason"] == "Not administrator user", (method, path, reply)


def test_rabbitmq_parity_monitoring_user_needs_permissions_for_vhost_contents(api):
    """The monitoring tag lists every vhost, connection and channel, but a
    vhost's queues, exchanges and details stay behind its permissions:
    RabbitMQ answers 401 "User not authorised to access virtual host" and
    leaves that vhost's queues out of /api/queues."""
    user = uniq("monitor")
    vhost = uniq("vh-closed")
    queue = uniq("q")
    put_user(api, user, "mon", "monitoring")
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    assert api.put(f"/api/queues/{q(vhost)}/{q(queue)}", {"durable": False}).status == 201
    mon = api.as_user(user, "mon")
    assert vhost in {v["name"] for v in mon.ok("/api/vhosts")}
    for path in (f"/api/queues/{q(vhost)}", f"/api/exchanges/{q(vhost)}",
                 f"/api/queues/{q(vhost)}/{q(queue)}"):
        reply = mon.get(path)
        assert reply.status == 401, (path, reply)
        assert reply.json["reason"].startswith("User not authorised to access virtual host"), reply
    assert mon.get(f"/api/vhosts/{q(vhost)}").status == 401
    assert queue not in {x["name"] for x in mon.ok("/api/queues")}
    # With permissions in the vhost the same requests succeed.
    assert api.put(f"/api/permissions/{q(vhost)}/{q(user)}",
                   {"configure": "", "write": "", "read": ".*"}).status == 201
    assert queue in {x["name"] for x in mon.ok(f"/api/queues/{q(vhost)}")}


def test_management_user_sees_only_its_vhosts_and_connections(api, amqp):
    user = uniq("mgmt-user")
    vhost = uniq("vh-own")
    put_user(api, user, "m", "management")
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    assert api.put(f"/api/permissions/{q(vhost)}/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    own, other = uniq("own"), uniq("other")
    amqp(vhost=vhost, user=user, password="m", name=own)
    amqp(name=other)
    connection_named(api, own)
    connection_named(api, other)
    mine = api.as_user(user, "m")
    assert [v["name"] for v in mine.ok("/api/vhosts")] == [vhost]
    assert [c["client_properties"]["connection_name"] for c in mine.ok("/api/connections")] == [own]
    assert mine.get(f"/api/queues/{q(vhost)}").status == 200
    reply = mine.get(f"/api/queues/{ROOT}")
    assert reply.status == 401, reply
    assert "not authorised to access virtual host" in reply.json["reason"]
    reply = mine.get("/api/users")
    assert reply.status == 401 and reply.json["reason"] == "Not administrator user", reply


def test_rabbitmq_parity_authorisation_refusals(api):
    """RabbitMQ answers an authenticated user lacking a tag with error
    "not_authorised" (British spelling, unlike "not_authorized" for a failed
    login) and no WWW-Authenticate header, so a browser does not pop up a
    login dialog for a user who did log in."""
    user = uniq("mon-parity")
    put_user(api, user, "p", "monitoring")
    plain = uniq("plain-parity")
    put_user(api, plain, "p", "")
    for reply, reason in ((api.as_user(user, "p").get("/api/users"), "Not administrator user"),
                          (api.as_user(plain, "p").get("/api/overview"), "Not management user")):
        assert_error(reply, 401, "not_authorised", reason)
        assert reply.headers.get("WWW-Authenticate") is None, dict(reply.headers)


# --------------------------------------------------------------------------
# Overview, nodes, misc
# --------------------------------------------------------------------------

def test_overview_fields_and_totals_follow_amqp(api, warren, amqp):
    overview = api.ok("/api/overview")
    missing = OVERVIEW_FIELDS - overview.keys()
    assert not missing, f"overview lacks {sorted(missing)}"
    assert overview["rabbitmq_version"].startswith("3.10."), overview["rabbitmq_version"]
    assert overview["management_version"] == overview["rabbitmq_version"]
    assert {t["name"] for t in overview["exchange_types"]} >= \
        {"direct", "fanout", "topic", "headers"}
    listeners = {(l["protocol"], l["port"]) for l in overview["listeners"]}
    assert ("amqp", warren.port) in listeners, overview["listeners"]
    assert ("http", warren.http_port) in listeners, overview["listeners"]
    assert set(overview["object_totals"]) >= {"channels", "connections", "consumers",
                                              "exchanges", "queues"}
    assert set(overview["queue_totals"]) >= {"messages", "messages_ready",
                                             "messages_unacknowledged"}
    for key in ("publish", "ack", "deliver_get", "confirm", "redeliver", "get"):
        assert isinstance(overview["message_stats"][key], int), key
        assert "rate" in overview["message_stats"][f"{key}_details"], key

    # Earlier tests' connections are closed: start from a quiet broker.
    eventually(lambda: api.ok("/api/connections") == [])
    before = api.ok("/api/overview")
    conn = amqp()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    ch.queue_declare(queue)
    for body in (b"1", b"2"):
        ch.basic_publish("", queue, body)

    def grown():
        now = api.ok("/api/overview")
        got = (now["object_totals"]["queues"] - before["object_totals"]["queues"],
               now["object_totals"]["connections"] - before["object_totals"]["connections"],
               now["object_totals"]["channels"] - before["object_totals"]["channels"],
               now["queue_totals"]["messages_ready"] - before["queue_totals"]["messages_ready"],
               now["message_stats"]["publish"] - before["message_stats"]["publish"],
               now["message_stats"]["confirm"] - before["message_stats"]["confirm"])
        assert got == (1, 1, 1, 2, 2, 2), \
            f"(queues, connections, channels, ready, publish, confirm) grew by {got}"
        return True
    eventually(grown)


def test_nodes_cluster_name_and_feature_flags(api, warren):
    node_name = api.ok("/api/overview")["node"]
    nodes = api.ok("/api/nodes")
    assert [n["name"] for n in nodes] == [node_name]
    node = nodes[0]
    missing = NODE_FIELDS - node.keys()
    assert not missing, f"node lacks {sorted(missing)}"
    assert node["running"] is True
    assert node["os_pid"] == str(warren.proc.pid)
    assert node["mem_used"] > 0 and node["mem_limit"] > 0 and node["mem_alarm"] is False
    assert 0 < node["fd_used"] <= node["fd_total"]
    assert node["disk_free"] > 0 and node["disk_free_alarm"] is False
    assert node["partitions"] == []
    assert api.ok(f"/api/nodes/{q(node_name)}")["name"] == node_name
    # (RabbitMQ 3.10 crashes with a bodiless 500 here; 404 is what the API means.)
    assert_error(api.get("/api/nodes/rabbit@no-such-node"), 404, "Object Not Found", "Not Found")

    assert api.ok("/api/cluster-name") == {"name": overview_cluster_name(api)}

    flags = {f["name"]: f for f in api.ok("/api/feature-flags")}
    for name in ("quorum_queue", "implicit_default_bindings", "virtual_host_metadata"):
        assert flags[name]["state"] == "enabled", flags.get(name)
        assert {"desc", "stability", "provided_by"} <= flags[name].keys()


def overview_cluster_name(api):
    return api.ok("/api/overview")["cluster_name"]


def test_unknown_api_path_is_a_json_404(api):
    assert_error(api.get("/api/no-such-endpoint"), 404, "Object Not Found", "Not Found")


# --------------------------------------------------------------------------
# Vhosts
# --------------------------------------------------------------------------

def test_vhost_put_get_delete_round_trip_gives_creator_permissions(api, amqp):
    vhost = uniq("vh")
    path = f"/api/vhosts/{q(vhost)}"
    assert_error(api.get(path), 404, "Object Not Found", "Not Found")
    assert api.put(path).status == 201
    assert api.put(path).status == 204
    info = api.ok(path)
    assert info["name"] == vhost
    assert "tracing" in info and "cluster_state" in info
    assert vhost in {v["name"] for v in api.ok("/api/vhosts")}
    # As RabbitMQ: the administrator who created it gets full permissions there.
    full = {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    assert api.ok(f"/api/vhosts/{q(vhost)}/permissions") == [full]
    assert api.ok(f"/api/permissions/{q(vhost)}/guest") == full
    conn = amqp(vhost=vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"counted")

    def counts():
        now = api.ok(path)
        assert [now.get(k) for k in ("messages", "messages_ready", "messages_unacknowledged")] \
            == [1, 1, 0], now
        return True
    eventually(counts, connection=conn)

    assert api.delete(path).status == 204
    err = closed_by_broker(conn)
    assert err.reply_code == 320, err
    # RabbitMQ says "... is deleted" or, racing its vhost supervisor, "... is down".
    assert err.reply_text.startswith(f"CONNECTION_FORCED - vhost '{vhost}' is "), err
    assert_error(api.get(path), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(path), 404, "Object Not Found", "Not Found")
    assert vhost not in {v["name"] for v in api.ok("/api/vhosts")}
    assert api.get(f"/api/permissions/{q(vhost)}/guest").status == 404


# --------------------------------------------------------------------------
# Users and permissions
# --------------------------------------------------------------------------

def test_user_created_over_http_logs_in_over_amqp(api, warren, amqp):
    user = uniq("app-user")
    path = f"/api/users/{q(user)}"
    assert api.put(path, {"password": "s3cret", "tags": ["management"]}).status == 201
    info = api.ok(path)
    assert set(info) >= {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert info["name"] == user and info["tags"] == ["management"]
    assert info["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert len(base64.b64decode(info["password_hash"])) == 36     # 4-byte salt + SHA-256
    assert "password" not in info
    assert user in {u["name"] for u in api.ok("/api/users")}
    assert api.as_user(user, "s3cret").ok("/api/whoami") == {"name": user, "tags": ["management"]}

    # No permissions yet: the login is accepted, the vhost is not (530 NOT_ALLOWED).
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        amqp(user=user, password="s3cret")
    perm = f"/api/permissions/{ROOT}/{q(user)}"
    assert api.put(perm, {"configure": "^app\\.", "write": ".*", "read": ".*"}).status == 201
    assert api.put(perm, {"configure": "^app\\.", "write": ".*", "read": ".*"}).status == 204
    expected = {"user": user, "vhost": "/", "configure": "^app\\.", "write": ".*", "read": ".*"}
    assert api.ok(perm) == expected
    assert api.ok(f"/api/users/{q(user)}/permissions") == [expected]
    assert expected in api.ok("/api/permissions")

    conn = amqp(user=user, password="s3cret")
    ch = conn.channel()
    ch.queue_declare(f"app.{uniq('q')}")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.queue_declare(uniq("not-app"))
    assert refused.value.reply_code == 403
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp(user=user, password="wrong")

    # A new password replaces the old one; tags may be a comma-separated string.
    assert api.put(path, {"password": "n3w", "tags": "management,monitoring"}).status == 204
    assert api.ok(path)["tags"] == ["management", "monitoring"]
    assert amqp(user=user, password="n3w").is_open
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp(user=user, password="s3cret")

    assert api.delete(perm).status == 204
    assert_error(api.get(perm), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(perm), 404, "Object Not Found", "Not Found")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        amqp(user=user, password="n3w")

    assert api.delete(path).status == 204
    assert_error(api.get(path), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(path), 404, "Object Not Found", "Not Found")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp(user=user, password="n3w")


def test_deleting_a_user_closes_its_amqp_connections(api, amqp):
    user = uniq("doomed")
    put_user(api, user, "pw", "")
    assert api.put(f"/api/permissions/{ROOT}/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    doomed = [amqp(user=user, password="pw", name=uniq("doomed")) for _ in range(2)]
    survivor = amqp(name=uniq("survivor"))
    for conn in doomed:
        conn.channel()
    assert api.delete(f"/api/users/{q(user)}").status == 204
    for conn in doomed:
        err = closed_by_broker(conn)
        assert err.reply_code == 320, err
        assert err.reply_text.startswith("CONNECTION_FORCED - "), err
        assert f"'{user}'" in err.reply_text, err
    # Other users' connections are untouched.
    survivor.process_data_events(time_limit=0.2)
    assert survivor.is_open
    survivor.channel().queue_declare(uniq("q"))
    assert api.ok("/api/permissions") and all(p["user"] != user for p in api.ok("/api/permissions"))


def test_permission_and_user_errors(api):
    user = uniq("u")
    put_user(api, user, "x", "")
    full = {"configure": ".*", "write": ".*", "read": ".*"}
    reply = api.put(f"/api/permissions/{ROOT}/{q(uniq('ghost'))}", full)
    assert reply.status == 400 and reply.json["error"] == "bad_request", reply
    reply = api.put(f"/api/permissions/{q(uniq('no-vhost'))}/{q(user)}", full)
    assert reply.status == 400 and reply.json["error"] == "bad_request", reply
    assert_error(api.get(f"/api/permissions/{ROOT}/{q(user)}"), 404, "Object Not Found")
    assert_error(api.get(f"/api/users/{q(uniq('ghost'))}"), 404, "Object Not Found", "Not Found")
    assert_error(api.get(f"/api/users/{q(uniq('ghost'))}/permissions"), 404, "Object Not Found")
    reply = api.request("PUT", f"/api/users/{q(user)}", data=b"{not json")
    assert reply.status == 400 and reply.json["error"] == "bad_request", reply


# --------------------------------------------------------------------------
# Exchanges
# --------------------------------------------------------------------------

def test_exchange_put_get_delete_round_trip(api, amqp):
    name = uniq("x")
    path = f"/api/exchanges/{ROOT}/{q(name)}"
    body = {"type": "topic", "durable": True, "auto_delete": False, "internal": False,
            "arguments": {"alternate-exchange": "amq.fanout"}}
    assert api.put(path, body).status == 201
    assert api.put(path, body).status == 204
    info = api.ok(path)
    missing = EXCHANGE_FIELDS - info.keys()
    assert not missing, f"exchange lacks {sorted(missing)}"
    assert {k: info[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal",
                                 "arguments")} == {
        "name": name, "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {"alternate-exchange": "amq.fanout"}}
    assert name in {x["name"] for x in api.ok(f"/api/exchanges/{ROOT}")}
    assert (name, "/") in {(x["name"], x["vhost"]) for x in api.ok("/api/exchanges")}
    # The exchange is real for AMQP clients.
    ch = amqp().channel()
    ch.exchange_declare(name, "topic", passive=True)

    reply = api.put(path, dict(body, type="fanout"))
    assert_error(reply, 400, "bad_request",
                 re.compile(r"inequivalent arg 'type' for exchange .* "
                            r"received 'fanout' but current is 'topic'"))
    reply = api.put(f"/api/exchanges/{ROOT}/{q(uniq('x'))}", {"type": "no-such-type"})
    assert reply.status == 400 and reply.json["error"] == "bad_request", reply
    reply = api.put(f"/api/exchanges/{q(uniq('no-vhost'))}/{q(uniq('x'))}", {"type": "direct"})
    assert reply.status == 404 and "error" in reply.json, reply

    queue = uniq("q")
    put_queue(api, queue)
    reply = api.post(f"/api/bindings/{ROOT}/e/{q(name)}/q/{q(queue)}", {"routing_key": "#"})
    assert reply.status == 201, reply
    assert_error(api.delete(f"{path}?if-unused=true"), 400, "bad_request", re.compile("in use"))
    assert api.ok(path)["name"] == name
    assert api.delete(path).status == 204
    assert_error(api.get(path), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(path), 404, "Object Not Found", "Not Found")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        amqp().channel().exchange_declare(name, "topic", passive=True)
    assert err.value.reply_code == 404


def test_default_and_predeclared_exchanges(api):
    default = api.ok(f"/api/exchanges/{ROOT}/amq.default")
    assert (default["name"], default["type"], default["durable"]) == ("", "direct", True)
    names = {x["name"]: x["type"] for x in api.ok(f"/api/exchanges/{ROOT}")}
    assert names[""] == "direct"
    for name, kind in (("amq.direct", "direct"), ("amq.fanout", "fanout"),
                       ("amq.topic", "topic"), ("amq.headers", "headers"),
                       ("amq.match", "headers"), ("amq.rabbitmq.trace", "topic")):
        assert names.get(name) == kind, (name, names)
    # RabbitMQ counts 7 predeclared exchanges per vhost (the default one included), plus
    # the event exchange in `/` where its plugin is on (always, in Warren).
    assert names.get("amq.rabbitmq.event", "topic") == "topic", names
    predeclared = [n for n in names if n == "" or n.startswith("amq.") and n != "amq.rabbitmq.event"]
    assert len(predeclared) == 7, names
    reply = api.put(f"/api/exchanges/{ROOT}/amq.custom", {"type": "direct"})
    assert reply.status == 401 and reply.json["error"] == "not_authorised", reply


def test_publish_over_http_reaches_amqp_consumers(api, amqp):
    queue = uniq("q")
    ch = amqp().channel()
    ch.queue_declare(queue)
    props = {"content_type": "text/plain", "correlation_id": "corr-1", "delivery_mode": 2,
             "priority": 3, "message_id": "m-1", "headers": {"h1": "v1", "n": 7}}
    assert publish_http(api, "", queue, "hello over http", props) is True
    assert publish_http(api, "amq.default", queue, base64.b64encode(b"\x00\x01\xfe\xff").decode(),
                        encoding="base64") is True
    assert publish_http(api, "amq.direct", uniq("nobody-bound"), "lost") is False

    method, got_props, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"hello over http"
    assert method.exchange == "" and method.routing_key == queue
    assert (got_props.content_type, got_props.correlation_id, got_props.delivery_mode,
            got_props.priority, got_props.message_id) == ("text/plain", "corr-1", 2, 3, "m-1")
    assert got_props.headers == {"h1": b"v1", "n": 7} or got_props.headers == {"h1": "v1", "n": 7}
    _, _, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"\x00\x01\xfe\xff"
    reply = api.post(f"/api/exchanges/{ROOT}/{q(uniq('missing'))}/publish",
                     {"properties": {}, "routing_key": "k", "payload": "x",
                      "payload_encoding": "string"})
    # RabbitMQ: 400 "404 NOT_FOUND - no exchange ..."; Warren: 404.
    assert reply.status in (400, 404) and "error" in reply.json, reply


# --------------------------------------------------------------------------
# Queues
# --------------------------------------------------------------------------

def test_amqp_queue_shows_ready_unacked_and_consumers(api, amqp):
    queue = uniq("q")
    cname = uniq("conn")
    conn = amqp(name=cname)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue, arguments={"x-max-length": 100, "x-message-ttl": 600000})
    for i in range(5):
        ch.basic_publish("", queue, f"m{i}".encode())
    wait_queue_counts(api, queue, (5, 0, 5, 0))
    info = queue_info(api, queue)
    missing = QUEUE_DETAIL_FIELDS - info.keys()
    assert not missing, f"queue lacks {sorted(missing)}"
    assert {k: info[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive",
                                 "type", "state")} == {
        "name": queue, "vhost": "/", "durable": False, "auto_delete": False,
        "exclusive": False, "type": "classic", "state": "running"}
    assert info["arguments"] == {"x-max-length": 100, "x-message-ttl": 600000}
    assert info["message_bytes_ready"] == 10
    assert info["consumer_details"] == []

    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=2)
    collector = Collector()
    tag = uniq("ctag")
    consumer_ch.basic_consume(queue, collector, consumer_tag=tag)
    eventually(lambda: len(collector.deliveries) == 2, connection=conn)
    wait_queue_counts(api, queue, (3, 2, 5, 1), connection=conn)
    info = queue_info(api, queue)
    assert len(info["consumer_details"]) == 1
    consumer = info["consumer_details"][0]
    assert consumer["consumer_tag"] == tag
    assert consumer["queue"] == {"name": queue, "vhost": "/"}
    assert consumer["ack_required"] is True and consumer["prefetch_count"] == 2
    assert consumer["exclusive"] is False
    assert consumer["channel_details"]["connection_name"] == connection_named(api, cname)["name"]
    assert consumer["channel_details"]["number"] == consumer_ch.channel_number
    assert consumer["channel_details"]["user"] == "guest"

    # The listing agrees with the detail view.
    listed = api.ok(f"/api/queues/{ROOT}?page=1&page_size=10&name={q(queue)}"
                    "&columns=name,messages_ready,messages_unacknowledged,consumers")["items"]
    assert listed == [{"name": queue, "messages_ready": 3, "messages_unacknowledged": 2,
                       "consumers": 1}]
    assert queue in {x["name"] for x in api.ok("/api/queues")}

    # Acking frees the window: two more are delivered.
    consumer_ch.basic_ack(collector.tags[-1], multiple=True)
    eventually(lambda: len(collector.deliveries) == 4, connection=conn)
    wait_queue_counts(api, queue, (1, 2, 3, 1), connection=conn)
    # Closing the channel requeues its unacked messages and removes the consumer.
    consumer_ch.close()
    wait_queue_counts(api, queue, (3, 0, 3, 0))
    assert ch.queue_declare(queue, passive=True).method.message_count == 3


def test_message_stats_counters_follow_amqp_traffic(api, amqp):
    """Counters as RabbitMQ 3.10 counts them for: 5 confirmed publishes, 4
    deliveries to a manual-ack consumer, one nack(requeue) and its
    redelivery, 4 acks, and one manual-ack basic.get + ack."""
    before = counters(api.ok("/api/overview")["message_stats"])
    conn = amqp()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    ch.queue_declare(queue)
    for i in range(4):
        ch.basic_publish("", queue, f"m{i}".encode())
    ch.basic_qos(prefetch_count=10)
    collector = Collector()
    tag = ch.basic_consume(queue, collector)
    eventually(lambda: len(collector.deliveries) == 4, connection=conn)
    ch.basic_nack(collector.tags[0], requeue=True)
    eventually(lambda: len(collector.deliveries) == 5, connection=conn)
    assert collector.deliveries[4][0].redelivered is True
    for delivery_tag in collector.tags[1:]:
        ch.basic_ack(delivery_tag)
    ch.basic_cancel(tag)
    ch.basic_publish("", queue, b"via get")
    method, _, body = ch.basic_get(queue)
    assert body == b"via get"
    ch.basic_ack(method.delivery_tag)

    expected = {"publish": 5, "deliver": 5, "deliver_get": 6, "deliver_no_ack": 0, "get": 1,
                "get_no_ack": 0, "redeliver": 1, "ack": 5}

    def queue_stats():
        stats = counters(queue_info(api, queue).get("message_stats"))
        assert stats == expected, stats
        return True
    eventually(queue_stats, connection=conn)

    def overview_stats():
        now = counters(api.ok("/api/overview")["message_stats"])
        delta = {k: now[k] - before[k] for k in now}
        assert delta == expected, delta
        return True
    eventually(overview_stats, connection=conn)
    stats = queue_info(api, queue)["message_stats"]
    for key in ("publish", "deliver_get", "ack", "redeliver", "get"):
        assert isinstance(stats[f"{key}_details"]["rate"], (int, float)), key
    wait_queue_counts(api, queue, (0, 0, 0, 0))


def test_rabbitmq_parity_auto_ack_and_empty_gets_are_counted_separately(api, amqp):
    """RabbitMQ counts auto-ack deliveries as ``deliver_no_ack``, auto-ack
    basic.get as ``get_no_ack`` (not ``deliver`` / ``get``), and basic.get on
    an empty queue as ``get_empty``.  The API's /get fetches with
    ``ack_requeue_false`` are auto-ack gets (``get_no_ack``); the other
    ackmodes are manual-ack gets (``get``)."""
    conn = amqp()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    ch.queue_declare(queue)
    for i in range(3):
        ch.basic_publish("", queue, f"m{i}".encode())
    assert ch.basic_get(queue, auto_ack=True)[2] == b"m0"
    collector = Collector()
    tag = ch.basic_consume(queue, collector, auto_ack=True)
    eventually(lambda: len(collector.deliveries) == 2, connection=conn)
    ch.basic_cancel(tag)
    assert ch.basic_get(queue, auto_ack=True)[0] is None          # empty
    expected = {"publish": 3, "deliver": 0, "deliver_no_ack": 2, "get": 0,
                "get_no_ack": 1, "deliver_get": 3, "ack": 0, "redeliver": 0}

    def check():
        stats = queue_info(api, queue).get("message_stats", {})
        got = counters(stats)
        assert got == expected, got
        assert stats.get("get_empty") == 1, stats
        return True
    eventually(check, timeout=2, connection=conn)

    for i in range(3):
        publish_http(api, "", queue, f"h{i}")
    for ackmode in ("ack_requeue_true", "reject_requeue_false", "ack_requeue_false",
                    "ack_requeue_false"):
        reply = api.post(f"/api/queues/{ROOT}/{q(queue)}/get",
                         {"count": 1, "ackmode": ackmode, "encoding": "auto"})
        assert reply.status == 200 and len(reply.json) == 1, (ackmode, reply)
    def http_gets():
        got = counters(queue_info(api, queue).get("message_stats"))
        assert (got["get"], got["get_no_ack"], got["redeliver"]) == (2, 3, 1), got
        return True
    eventually(http_gets, timeout=2)


def test_rabbitmq_parity_properties_key_encoding(api):
    """RabbitMQ's properties_key of an argument-less binding is the routing
    key form-encoded (quote_plus: space as ``+``) with ``~`` escaped as
    ``%7E`` (``~`` separates the arguments hash)."""
    exchange, queue = uniq("x"), uniq("q")
    put_exchange(api, exchange, "topic")
    put_queue(api, queue)
    expected = {"fan.*": "fan.%2A", "a/b+c&d=e": "a%2Fb%2Bc%26d%3De", "\u00fcn": "%C3%BCn",
                "sp ace": "sp+ace", "a~b": "a%7Eb", "": "~"}
    for key in expected:
        assert api.post(f"/api/bindings/{ROOT}/e/{q(exchange)}/q/{q(queue)}",
                        {"routing_key": key}).status == 201
    got = {b["routing_key"]: b["properties_key"]
           for b in api.ok(f"/api/bindings/{ROOT}/e/{q(exchange)}/q/{q(queue)}")}
    assert got == expected


def test_queue_put_get_delete_round_trip(api, amqp):
    name = uniq("q")
    path = f"/api/queues/{ROOT}/{q(name)}"
    body = {"durable": True, "auto_delete": False,
            "arguments": {"x-message-ttl": 60000, "x-max-length": 10,
                          "x-dead-letter-exchange": "amq.fanout"}}
    assert api.put(path, body).status == 201
    assert api.put(path, body).status == 204
    info = api.ok(path)
    assert (info["name"], info["vhost"], info["durable"], info["auto_delete"], info["type"]) == \
        (name, "/", True, False, "classic")
    assert info["arguments"] == body["arguments"]
    assert_error(api.put(path, dict(body, durable=False)), 400, "bad_request",
                 re.compile(r"inequivalent arg 'durable' for queue '.*' in vhost '/': "
                            r"received 'false' but current is 'true'"))
    assert_error(api.get(f"/api/queues/{ROOT}/{q(uniq('missing'))}"), 404, "Object Not Found",
                 "Not Found")
    assert_error(api.get(f"/api/queues/{q(uniq('no-vhost'))}"), 404, "Object Not Found")
    reply = api.put(f"/api/queues/{q(uniq('no-vhost'))}/x", {})
    assert reply.status == 404 and "error" in reply.json, reply

    quorum = uniq("quorum")
    assert api.put(f"/api/queues/{ROOT}/{q(quorum)}",
                   {"durable": True, "arguments": {"x-queue-type": "quorum"}}).status == 201
    assert queue_info(api, quorum)["type"] == "quorum"

    # The queue is real for AMQP clients, with the same arguments.
    conn = amqp()
    ch = conn.channel()
    ch.queue_declare(name, durable=True, arguments=body["arguments"], passive=False)
    publish_http(api, "", name, "one")
    wait_queue_counts(api, name, (1, 0, 1, 0))
    assert_error(api.delete(f"{path}?if-empty=true"), 400, "bad_request", re.compile("not empty"))
    consumer_ch = conn.channel()
    consumer_ch.basic_consume(name, Collector())
    wait_queue_counts(api, name, (0, 1, 1, 1), connection=conn)
    assert_error(api.delete(f"{path}?if-unused=true"), 400, "bad_request", re.compile("in use"))
    consumer_ch.close()
    wait_queue_counts(api, name, (1, 0, 1, 0))

    publish_http(api, "", name, "two")
    wait_queue_counts(api, name, (2, 0, 2, 0))
    assert api.delete(f"{path}/contents").status == 204          # purge
    wait_queue_counts(api, name, (0, 0, 0, 0))
    assert ch.queue_declare(name, passive=True).method.message_count == 0
    assert api.delete(f"{path}?if-empty=true&if-unused=true").status == 204
    assert_error(api.get(path), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(path), 404, "Object Not Found", "Not Found")
    assert_error(api.delete(f"{path}/contents"), 404, "Object Not Found")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.queue_declare(name, passive=True)
    assert err.value.reply_code == 404


def test_queue_get_ackmodes(api, amqp):
    dead = uniq("dlq")
    queue = uniq("q")
    put_queue(api, dead)
    put_queue(api, queue, arguments={"x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": dead})
    for i in (1, 2, 3):
        publish_http(api, "", queue, f"m{i}",
                     {"content_type": "text/plain", "headers": {"n": i}, "delivery_mode": 1})

    def get(count, ackmode, encoding="auto", **extra):
        reply = api.post(f"/api/queues/{ROOT}/{q(queue)}/get",
                         dict({"count": count, "ackmode": ackmode, "encoding": encoding}, **extra))
        assert reply.status == 200, reply
        return reply.json

    got = get(2, "ack_requeue_true")
    assert [m["payload"] for m in got] == ["m1", "m2"]
    assert [m["redelivered"] for m in got] == [False, False]
    assert [m["message_count"] for m in got] == [2, 1]
    first = got[0]
    assert (first["exchange"], first["routing_key"], first["payload_bytes"],
            first["payload_encoding"]) == ("", queue, 2, "string")
    assert first["properties"]["content_type"] == "text/plain"
    assert first["properties"]["headers"] == {"n": 1}
    # Requeued: still three messages, in their original order, now redelivered.
    wait_queue_counts(api, queue, (3, 0, 3, 0))
    got = get(3, "reject_requeue_true")
    assert [(m["payload"], m["redelivered"]) for m in got] == \
        [("m1", True), ("m2", True), ("m3", False)]
    wait_queue_counts(api, queue, (3, 0, 3, 0))
    got = get(1, "ack_requeue_true", encoding="base64")
    assert (got[0]["payload"], got[0]["payload_encoding"]) == (base64.b64encode(b"m1").decode(),
                                                              "base64")
    got = get(1, "ack_requeue_true", truncate=1)
    assert (got[0]["payload"], got[0]["payload_bytes"]) == ("m", 2)

    # ack_requeue_false takes a message; reject_requeue_false dead-letters it.
    assert [m["payload"] for m in get(1, "ack_requeue_false")] == ["m1"]
    wait_queue_counts(api, queue, (2, 0, 2, 0))
    assert [m["payload"] for m in get(1, "reject_requeue_false")] == ["m2"]
    wait_queue_counts(api, queue, (1, 0, 1, 0))
    wait_queue_counts(api, dead, (1, 0, 1, 0))
    ch = amqp().channel()
    method, props, body = ch.basic_get(dead, auto_ack=True)
    assert body == b"m2"
    assert props.headers["x-death"][0]["reason"] in (b"rejected", "rejected")

    # A binary body comes back base64 in auto mode; an empty queue gives [].
    publish_http(api, "", queue, base64.b64encode(b"\xff\xfe").decode(), encoding="base64")
    got = get(2, "ack_requeue_false")
    assert [m["payload"] for m in got] == ["m3", base64.b64encode(b"\xff\xfe").decode()]
    assert got[1]["payload_encoding"] == "base64"
    assert get(1, "ack_requeue_false") == []
    reply = api.post(f"/api/queues/{ROOT}/{q(uniq('missing'))}/get",
                     {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    assert reply.status == 404 and "error" in reply.json, reply

    # Fetches are basic.gets: 11 messages fetched, 7 of them redeliveries.  (How
    # RabbitMQ splits them between get and get_no_ack is checked in
    # test_rabbitmq_parity_auto_ack_and_empty_gets_are_counted_separately.)
    def fetch_counters():
        stats = counters(queue_info(api, queue).get("message_stats"))
        assert (stats["get"] + stats["get_no_ack"], stats["redeliver"], stats["deliver_get"],
                stats["publish"], stats["deliver"], stats["ack"]) == (11, 7, 11, 4, 0, 0), stats
        return True
    eventually(fetch_counters)


def test_queue_bindings_listing(api):
    queue = uniq("q")
    exchange = uniq("x")
    put_queue(api, queue)
    put_exchange(api, exchange, "direct")
    assert api.post(f"/api/bindings/{ROOT}/e/{q(exchange)}/q/{q(queue)}",
                    {"routing_key": "rk", "arguments": {}}).status == 201
    bindings = api.ok(f"/api/queues/{ROOT}/{q(queue)}/bindings")
    for b in bindings:
        assert set(b) == BINDING_FIELDS, b
    # The implicit default-exchange binding is listed first, as RabbitMQ does.
    assert bindings[0] == {"source": "", "vhost": "/", "destination": queue,
                           "destination_type": "queue", "routing_key": queue, "arguments": {},
                           "properties_key": queue}
    assert [(b["source"], b["routing_key"]) for b in bindings[1:]] == [(exchange, "rk")]


# --------------------------------------------------------------------------
# Bindings
# --------------------------------------------------------------------------

def test_binding_create_get_delete_with_properties_key(api, amqp):
    exchange, other, queue = uniq("x"), uniq("x2"), uniq("q")
    put_exchange(api, exchange, "topic")
    put_exchange(api, other, "fanout")
    put_queue(api, queue)
    between = f"/api/bindings/{ROOT}/e/{q(exchange)}/q/{q(queue)}"

    reply = api.post(between, {"routing_key": "orders.#", "arguments": {}})
    assert reply.status == 201, reply
    assert reply.headers.get("Location"), dict(reply.headers)
    reply = api.post(between, {"routing_key": "audit", "arguments": {"x-tag": "a", "n": 1}})
    assert reply.status == 201, reply
    listed = api.ok(between)
    assert len(listed) == 2
    for b in listed:
        assert set(b) == BINDING_FIELDS, b
        assert (b["source"], b["vhost"], b["destination"], b["destination_type"]) == \
            (exchange, "/", queue, "queue")
    by_key = {b["routing_key"]: b for b in listed}
    assert by_key["orders.#"]["properties_key"] == "orders.%23"
    assert by_key["orders.#"]["arguments"] == {}
    with_args = by_key["audit"]
    assert with_args["arguments"] == {"x-tag": "a", "n": 1}
    assert with_args["properties_key"].startswith("audit~"), with_args

    for b in listed:
        assert api.ok(f"{between}/{q(b['properties_key'])}") == b
    assert_error(api.get(f"{between}/{q('no-such-key')}"), 404, "Object Not Found", "Not Found")
    in_vhost = {(b["source"], b["destination"], b["routing_key"])
                for b in api.ok(f"/api/bindings/{ROOT}")}
    assert in_vhost >= {(exchange, queue, "orders.#"), (exchange, queue, "audit")}
    assert len([b for b in api.ok("/api/bindings") if b["source"] == exchange]) == 2

    # Exchange-to-exchange bindings, seen from both ends.
    e2e = f"/api/bindings/{ROOT}/e/{q(exchange)}/e/{q(other)}"
    assert api.post(e2e, {"routing_key": "fan.*", "arguments": {}}).status == 201
    assert [(b["destination"], b["destination_type"], b["properties_key"])
            for b in api.ok(e2e)] == [(other, "exchange", "fan.%2A")]
    source = api.ok(f"/api/exchanges/{ROOT}/{q(exchange)}/bindings/source")
    assert {b["destination"] for b in source} == {queue, other}
    destination = api.ok(f"/api/exchanges/{ROOT}/{q(other)}/bindings/destination")
    assert [b["source"] for b in destination] == [exchange]

    # The bindings route AMQP traffic.
    ch = amqp().channel()
    ch.confirm_delivery()
    sink = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(sink, other)
    ch.basic_publish(exchange, "orders.new", b"order")
    ch.basic_publish(exchange, "fan.out", b"fanned")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"order"
    assert ch.basic_get(sink, auto_ack=True)[2] == b"fanned"

    # Delete by properties key.
    assert api.delete(f"{between}/{q('orders.%23')}").status == 204
    assert_error(api.get(f"{between}/{q('orders.%23')}"), 404, "Object Not Found")
    assert_error(api.delete(f"{between}/{q('orders.%23')}"), 404, "Object Not Found")
    assert api.delete(f"{between}/{q(with_args['properties_key'])}").status == 204
    assert api.ok(between) == []
    assert api.delete(f"{e2e}/{q('fan.%2A')}").status == 204
    assert api.ok(e2e) == []
    ch.basic_publish(exchange, "orders.new", b"unrouted")
    assert ch.basic_get(queue, auto_ack=True)[0] is None

    # Errors.
    for path in (f"e/{q(exchange)}/q/{q(uniq('missing'))}", f"e/{q(uniq('missing'))}/q/{q(queue)}"):
        reply = api.post(f"/api/bindings/{ROOT}/{path}", {"routing_key": "k"})
        assert reply.status == 404 and "error" in reply.json, (path, reply)
    reply = api.post(f"/api/bindings/{ROOT}/e/amq.default/q/{q(queue)}", {"routing_key": "k"})
    assert reply.status == 401 and reply.json["error"] == "not_authorised", reply


def test_rabbitmq_parity_binding_location_header_resolves_to_the_binding(api):
    """RabbitMQ's 201 carries ``Location: <destination>/<url-encoded
    properties_key>``, relative to the POST URL, so resolving it gives the
    new binding's URL (clients follow it)."""
    exchange, queue = uniq("x"), uniq("q")
    put_exchange(api, exchange, "topic")
    put_queue(api, queue)
    for key, args in (("a.#", {}), ("plain", {}), ("with.args", {"k": "v"})):
        post_url = api.url(f"/api/bindings/{ROOT}/e/{q(exchange)}/q/{q(queue)}")
        reply = api.post(post_url[len(api.url("")):], {"routing_key": key, "arguments": args})
        assert reply.status == 201, reply
        target = urllib.parse.urljoin(post_url, reply.headers["Location"])
        got = api.get(target[len(api.url("")):])
        assert got.status == 200, (reply.headers["Location"], target, got)
        assert (got.json["routing_key"], got.json["arguments"]) == (key, args)


# --------------------------------------------------------------------------
# Connections, channels, consumers
# --------------------------------------------------------------------------

def test_connections_channels_and_consumers(api, warren, amqp):
    cname = uniq("conn")
    conn = amqp(name=cname)
    publisher = conn.channel()
    publisher.confirm_delivery()
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=3)
    queue = uniq("q")
    publisher.queue_declare(queue)
    tag = uniq("ctag")
    consumer_ch.basic_consume(queue, Collector(), consumer_tag=tag)

    def listed_with_channels():
        conn_info = connection_named(api, cname)
        return conn_info if conn_info.get("channels") == 2 else None
    info = eventually(listed_with_channels, connection=conn)
    missing = CONNECTION_FIELDS - info.keys()
    assert not missing, f"connection lacks {sorted(missing)}"
    match = re.fullmatch(r"127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)", info["name"])
    assert match, info["name"]
    assert (int(match.group(1)), int(match.group(2))) == (info["peer_port"], warren.port)
    assert (info["peer_host"], info["host"], info["port"]) == \
        ("127.0.0.1", "127.0.0.1", warren.port)
    assert (info["user"], info["vhost"], info["state"], info["protocol"], info["auth_mechanism"],
            info["ssl"], info["type"]) == ("guest", "/", "running", "AMQP 0-9-1", "PLAIN", False,
                                           "network")
    assert info["timeout"] == 60 and info["frame_max"] == 131072 and info["channel_max"] == 2047
    assert abs(info["connected_at"] / 1000 - time.time()) < 60
    assert info["client_properties"]["product"] == "Pika Python Client Library"
    assert info["client_properties"]["capabilities"]["publisher_confirms"] is True
    assert info["recv_oct"] > 0 and info["send_oct"] > 0

    path = f"/api/connections/{q(info['name'])}"
    assert api.ok(path)["name"] == info["name"]
    assert info["name"] in {c["name"] for c in api.ok(f"/api/vhosts/{ROOT}/connections")}

    channels = api.ok(f"{path}/channels")
    assert [c["number"] for c in channels] == [publisher.channel_number, consumer_ch.channel_number]
    for chan in channels:
        missing = CHANNEL_FIELDS - chan.keys()
        assert not missing, f"channel lacks {sorted(missing)}"
        assert chan["name"] == f"{info['name']} ({chan['number']})"
        assert chan["connection_details"] == {"name": info["name"], "peer_host": "127.0.0.1",
                                              "peer_port": info["peer_port"]}
        assert (chan["user"], chan["vhost"], chan["state"]) == ("guest", "/", "running")
    pub, cons = channels
    assert (pub["confirm"], pub["transactional"], pub["consumer_count"]) == (True, False, 0)
    assert (cons["confirm"], cons["prefetch_count"], cons["consumer_count"]) == (False, 3, 1)
    all_channels = {c["name"] for c in api.ok("/api/channels")}
    assert {pub["name"], cons["name"]} <= all_channels
    assert api.ok(f"/api/channels/{q(cons['name'])}")["number"] == consumer_ch.channel_number
    in_vhost = {c["name"] for c in api.ok(f"/api/vhosts/{ROOT}/channels")}
    assert in_vhost >= {pub["name"], cons["name"]}

    for listing in (api.ok("/api/consumers"), api.ok(f"/api/consumers/{ROOT}")):
        mine = [c for c in listing if c["consumer_tag"] == tag]
        assert len(mine) == 1, listing
        consumer = mine[0]
        missing = CONSUMER_FIELDS - consumer.keys()
        assert not missing, f"consumer lacks {sorted(missing)}"
        assert consumer["queue"] == {"name": queue, "vhost": "/"}
        assert (consumer["ack_required"], consumer["exclusive"], consumer["prefetch_count"],
                consumer["active"]) == (True, False, 3, True)
        assert consumer["channel_details"]["name"] == cons["name"]
        assert consumer["channel_details"]["connection_name"] == info["name"]
        assert consumer["channel_details"]["peer_port"] == info["peer_port"]

    consumer_ch.close()
    eventually(lambda: all(c["consumer_tag"] != tag for c in api.ok("/api/consumers")))
    eventually(lambda: [c["number"] for c in api.ok(f"{path}/channels")]
               == [publisher.channel_number])
    conn.close()
    eventually(lambda: api.get(path).status == 404)
    assert info["name"] not in {c["name"] for c in api.ok("/api/connections")}
    assert_error(api.get(f"/api/channels/{q(cons['name'])}"), 404, "Object Not Found")


def test_deleting_a_connection_closes_it_with_320(api, amqp):
    name = uniq("victim")
    conn = amqp(name=name)
    conn.channel()
    info = connection_named(api, name)
    path = f"/api/connections/{q(info['name'])}"
    assert api.delete(path, headers={"X-Reason": "tests said so"}).status == 204
    err = closed_by_broker(conn)
    assert (err.reply_code, err.reply_text) == (320, "CONNECTION_FORCED - tests said so")
    eventually(lambda: api.get(path).status == 404)
    assert_error(api.delete(path), 404, "Object Not Found", "Not Found")

    name = uniq("victim2")
    conn = amqp(name=name)
    info = connection_named(api, name)
    assert api.delete(f"/api/connections/{q(info['name'])}").status == 204
    err = closed_by_broker(conn)
    assert (err.reply_code, err.reply_text) == \
        (320, "CONNECTION_FORCED - Closed via management plugin")
    assert_error(api.get(f"/api/connections/{q('127.0.0.1:1 -> 127.0.0.1:2')}"), 404,
                 "Object Not Found", "Not Found")


def test_rabbitmq_parity_connection_user_provided_name(api, amqp):
    """RabbitMQ shows the client's ``connection_name`` property as
    ``user_provided_name`` (the name the UI and scripts find connections by)."""
    cname = uniq("named")
    amqp(name=cname)
    info = connection_named(api, cname)
    assert info.get("user_provided_name") == cname, sorted(info)


def test_rabbitmq_parity_channel_message_stats(api, amqp):
    """RabbitMQ keeps per-channel counters: ``message_stats.publish`` /
    ``confirm`` on a publishing channel, ``deliver`` / ``ack`` on a
    consuming one."""
    cname = uniq("conn")
    conn = amqp(name=cname)
    publisher = conn.channel()
    publisher.confirm_delivery()
    queue = uniq("q")
    publisher.queue_declare(queue)
    for i in range(3):
        publisher.basic_publish("", queue, b"x")
    consumer_ch = conn.channel()
    collector = Collector()
    consumer_ch.basic_consume(queue, collector)
    eventually(lambda: len(collector.deliveries) == 3, connection=conn)
    consumer_ch.basic_ack(collector.tags[-1], multiple=True)
    path = f"/api/connections/{q(connection_named(api, cname)['name'])}/channels"

    def check():
        pub, cons = api.ok(path)
        pub_stats, cons_stats = pub.get("message_stats", {}), cons.get("message_stats", {})
        assert (pub_stats.get("publish"), pub_stats.get("confirm")) == (3, 3), pub
        assert (cons_stats.get("deliver"), cons_stats.get("ack")) == (3, 3), cons
        return True
    eventually(check, timeout=2, connection=conn)


# --------------------------------------------------------------------------
# RabbitMQ fields beyond the basics
# --------------------------------------------------------------------------

def test_rabbitmq_parity_exchange_message_stats(api, amqp):
    """RabbitMQ counts messages in and out of each exchange
    (``message_stats.publish_in`` / ``publish_out``): exporters and the UI
    graph them."""
    exchange, queue = uniq("x"), uniq("q")
    ch = amqp().channel()
    ch.confirm_delivery()
    ch.exchange_declare(exchange, "fanout")
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange)
    for _ in range(2):
        ch.basic_publish(exchange, "", b"x")

    def check():
        stats = api.ok(f"/api/exchanges/{ROOT}/{q(exchange)}").get("message_stats", {})
        assert (stats.get("publish_in"), stats.get("publish_out")) == (2, 2), stats
        return True
    eventually(check, timeout=2)


def test_rabbitmq_parity_queue_memory_and_bytes_fields(api, amqp):
    """Fields RabbitMQ 3.10 has on every classic queue that exporters read:
    ``memory``, ``messages_persistent``, ``messages_ram``,
    ``head_message_timestamp``, ``single_active_consumer_tag``; and
    ``message_bytes`` counts unacknowledged bytes too (= ready + unacked)."""
    conn = amqp()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    ch.queue_declare(queue, durable=True)
    for _ in range(3):
        ch.basic_publish("", queue, b"12345", pika.BasicProperties(delivery_mode=2))
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    consumer_ch.basic_consume(queue, Collector())
    wait_queue_counts(api, queue, (2, 1, 3, 1), connection=conn)
    info = queue_info(api, queue)
    missing = {"memory", "messages_persistent", "messages_ram", "messages_ready_ram",
               "messages_unacknowledged_ram", "message_bytes_persistent", "message_bytes_ram",
               "head_message_timestamp", "single_active_consumer_tag"} - info.keys()
    assert not missing, f"queue lacks {sorted(missing)}"
    assert (info["message_bytes"], info["message_bytes_ready"],
            info["message_bytes_unacknowledged"]) == (15, 10, 5), info
    assert info["messages_persistent"] == 3


def test_rabbitmq_parity_put_without_durable_creates_transient_objects(api):
    """RabbitMQ's PUT of a queue or exchange without ``durable`` creates a
    non-durable one."""
    queue, exchange = uniq("q"), uniq("x")
    assert api.put(f"/api/queues/{ROOT}/{q(queue)}", {}).status == 201
    assert api.put(f"/api/exchanges/{ROOT}/{q(exchange)}", {"type": "direct"}).status == 201
    assert queue_info(api, queue)["durable"] is False
    assert api.ok(f"/api/exchanges/{ROOT}/{q(exchange)}")["durable"] is False


# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------

def _normalised(definitions, vhosts=None):
    """The comparable part of a definitions document: sets of JSON strings."""
    def keep(item):
        return vhosts is None or item.get("vhost", item.get("name")) in vhosts

    def dumps(items, fields=None):
        return sorted(json.dumps({k: v for k, v in i.items() if fields is None or k in fields},
                                 sort_keys=True) for i in items if keep(i))
    return {
        "users": sorted(json.dumps({"name": u["name"], "password_hash": u["password_hash"],
                                    "hashing_algorithm": u["hashing_algorithm"],
                                    "tags": sorted(u["tags"] if isinstance(u["tags"], list)
                                                   else [t for t in u["tags"].split(",") if t])},
                                   sort_keys=True) for u in definitions["users"]),
        "vhosts": sorted(v["name"] for v in definitions["vhosts"] if keep(v)),
        "permissions": dumps(definitions["permissions"]),
        "queues": dumps(definitions["queues"],
                        {"name", "vhost", "durable", "auto_delete", "arguments"}),
        "exchanges": dumps(definitions["exchanges"]),
        "bindings": dumps(definitions["bindings"]),
    }


def _build_topology(api):
    """A vhost with a user, durable and transient objects; returns names."""
    t = {k: uniq(k) for k in ("vh", "user", "topic", "alt", "headers", "q", "quorum", "transient_q",
                              "transient_x")}
    vh = q(t["vh"])
    assert api.put(f"/api/vhosts/{vh}").status == 201
    put_user(api, t['user'], "def-pw", "management")
    assert api.put(f"/api/permissions/{vh}/{q(t['user'])}",
                   {"configure": "^cfg", "write": ".*", "read": "^r"}).status == 201
    for name, body in ((t["alt"], {"type": "fanout", "durable": True}),
                       (t["topic"], {"type": "topic", "durable": True,
                                     "arguments": {"alternate-exchange": t["alt"]}}),
                       (t["headers"], {"type": "headers", "durable": True, "internal": True}),
                       (t["transient_x"], {"type": "direct", "durable": False})):
        assert api.put(f"/api/exchanges/{vh}/{q(name)}", body).status == 201
    for name, body in ((t["q"], {"durable": True, "arguments": {"x-message-ttl": 1000,
                                                                "x-max-length": 7,
                                                                "x-overflow": "reject-publish"}}),
                       (t["quorum"], {"durable": True, "arguments": {"x-queue-type": "quorum"}}),
                       (t["transient_q"], {"durable": False})):
        assert api.put(f"/api/queues/{vh}/{q(name)}", body).status == 201
    for path, body in ((f"e/{q(t['topic'])}/q/{q(t['q'])}",
                        {"routing_key": "a.*", "arguments": {"x-k": "v"}}),
                       (f"e/{q(t['topic'])}/e/{q(t['headers'])}",
                        {"routing_key": "#", "arguments": {}}),
                       (f"e/{q(t['headers'])}/q/{q(t['quorum'])}",
                        {"routing_key": "", "arguments": {"x-match": "any", "a": 1}}),
                       (f"e/{q(t['alt'])}/q/{q(t['transient_q'])}",
                        {"routing_key": "", "arguments": {}})):
        assert api.post(f"/api/bindings/{vh}/{path}", body).status == 201
    return t


def test_definitions_export_contains_durable_objects(api):
    t = _build_topology(api)
    defs = api.ok("/api/definitions")
    assert defs["rabbit_version"].startswith("3.10.")
    assert defs["rabbitmq_version"].startswith("3.10.")
    for key in ("users", "vhosts", "permissions", "topic_permissions", "parameters",
                "global_parameters", "policies", "queues", "exchanges", "bindings"):
        assert isinstance(defs[key], list), key
    vh = t["vh"]
    user = [u for u in defs["users"] if u["name"] == t["user"]]
    assert len(user) == 1 and user[0]["tags"] == ["management"]
    assert user[0]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert user[0]["password_hash"]
    assert {"name": vh} in [{"name": v["name"]} for v in defs["vhosts"]]
    perms = defs["permissions"]
    assert {"user": t["user"], "vhost": vh, "configure": "^cfg", "write": ".*",
            "read": "^r"} in perms
    assert {"user": "guest", "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"} in perms

    queues = {x["name"]: x for x in defs["queues"] if x["vhost"] == vh}
    assert {t["q"], t["quorum"]} <= set(queues)
    assert queues[t["q"]] == {"name": t["q"], "vhost": vh, "durable": True, "auto_delete": False,
                              "arguments": {"x-message-ttl": 1000, "x-max-length": 7,
                                            "x-overflow": "reject-publish"}}
    assert queues[t["quorum"]]["arguments"] == {"x-queue-type": "quorum"}
    exchanges = {x["name"]: x for x in defs["exchanges"] if x["vhost"] == vh}
    assert {t["topic"], t["alt"], t["headers"]} <= set(exchanges)
    assert exchanges[t["topic"]] == {"name": t["topic"], "vhost": vh, "type": "topic",
                                     "durable": True, "auto_delete": False, "internal": False,
                                     "arguments": {"alternate-exchange": t["alt"]}}
    assert exchanges[t["headers"]]["internal"] is True
    assert not [x for x in defs["exchanges"] if x["name"].startswith("amq.")]
    bindings = {(b["source"], b["destination"], b["destination_type"], b["routing_key"],
                 json.dumps(b["arguments"], sort_keys=True))
                for b in defs["bindings"] if b["vhost"] == vh}
    assert bindings >= {
        (t["topic"], t["q"], "queue", "a.*", '{"x-k": "v"}'),
        (t["topic"], t["headers"], "exchange", "#", "{}"),
        (t["headers"], t["quorum"], "queue", "", '{"a": 1, "x-match": "any"}'),
    }
    assert not [b for b in defs["bindings"] if b["vhost"] == vh and b["source"] == ""]

    # The vhost-scoped export: that vhost's objects, without vhost fields.
    scoped = api.ok(f"/api/definitions/{q(vh)}")
    assert sorted(x["name"] for x in scoped["queues"]) == \
        sorted(x["name"] for x in defs["queues"] if x["vhost"] == vh)
    assert sorted(x["name"] for x in scoped["exchanges"]) == \
        sorted(x["name"] for x in defs["exchanges"] if x["vhost"] == vh)
    assert len(scoped["bindings"]) == len([b for b in defs["bindings"] if b["vhost"] == vh])
    for key in ("queues", "exchanges", "bindings"):
        assert all("vhost" not in x for x in scoped[key]), scoped[key]
    assert "users" not in scoped and "vhosts" not in scoped


def test_rabbitmq_parity_definitions_export_includes_transient_objects(api, amqp):
    """RabbitMQ 3.10's GET /api/definitions exports every non-exclusive queue,
    durable or not (auto-delete ones too), transient exchanges and the
    bindings between them; only exclusive queues are left out."""
    t = _build_topology(api)
    ch = amqp(vhost=t["vh"]).channel()
    exclusive = uniq("excl")
    ch.queue_declare(exclusive, exclusive=True)
    auto_delete = uniq("autodel")
    ch.queue_declare(auto_delete, auto_delete=True)
    ch.basic_consume(auto_delete, Collector())
    defs = api.ok("/api/definitions")
    queues = {x["name"]: x for x in defs["queues"] if x["vhost"] == t["vh"]}
    exchanges = {x["name"]: x for x in defs["exchanges"] if x["vhost"] == t["vh"]}
    assert exclusive not in queues
    assert {t["transient_q"], auto_delete} <= set(queues), sorted(queues)
    assert queues[t["transient_q"]]["durable"] is False
    assert queues[auto_delete]["auto_delete"] is True
    assert t["transient_x"] in exchanges and exchanges[t["transient_x"]]["durable"] is False
    assert (t["alt"], t["transient_q"]) in {(b["source"], b["destination"])
                                           for b in defs["bindings"] if b["vhost"] == t["vh"]}


def test_definitions_import_into_a_fresh_warren_reproduces_them(api, amqp, tmp_path):
    t = _build_topology(api)
    exported = api.ok("/api/definitions")
    scoped = api.ok(f"/api/definitions/{q(t['vh'])}")
    with fresh_warren(tmp_path) as other:
        fresh = Api(other.http_port)
        assert fresh.post("/api/definitions", exported).status == 204
        assert _normalised(fresh.ok("/api/definitions")) == _normalised(exported)
        assert queue_info(fresh, t["quorum"], q(t["vh"]))["type"] == "quorum"
        # Importing again changes nothing.
        assert fresh.post("/api/definitions", exported).status == 204
        assert _normalised(fresh.ok("/api/definitions")) == _normalised(exported)

        # The user's password hash came along: it logs in over AMQP and HTTP.
        conn = amqp(vhost=t["vh"], user=t["user"], password="def-pw", proc=other)
        assert conn.is_open
        assert fresh.as_user(t["user"], "def-pw").ok("/api/whoami")["name"] == t["user"]
        # The imported bindings and alternate exchange route.
        ch = amqp(vhost=t["vh"], proc=other).channel()
        ch.confirm_delivery()
        ch.basic_publish(t["topic"], "a.b", b"bound")
        ch.basic_publish(t["topic"], "unmatched", b"to-alt")
        ch.basic_publish(t["topic"], "x", b"to-headers", pika.BasicProperties(headers={"a": 1}))
        assert ch.basic_get(t["q"], auto_ack=True)[2] == b"bound"
        assert ch.basic_get(t["quorum"], auto_ack=True)[2] == b"to-headers"

        # A vhost-scoped document imports into another vhost.
        target = uniq("vh-target")
        assert fresh.put(f"/api/vhosts/{q(target)}").status == 201
        assert fresh.post(f"/api/definitions/{q(target)}", scoped).status == 204
        assert sorted(x["name"] for x in fresh.ok(f"/api/queues/{q(target)}")) == \
            sorted(x["name"] for x in scoped["queues"])
        assert sorted((b["source"], b["destination"], b["routing_key"])
                      for b in fresh.ok(f"/api/bindings/{q(target)}") if b["source"]) == \
            sorted((b["source"], b["destination"], b["routing_key"]) for b in scoped["bindings"])

        # Errors: not JSON, not an administrator.
        reply = fresh.request("POST", "/api/definitions", data=b"{broken")
        assert reply.status == 400 and reply.json["error"] == "bad_request", reply
        reply = fresh.as_user(t["user"], "def-pw").post("/api/definitions", exported)
        assert reply.status == 401 and reply.json["reason"] == "Not administrator user", reply


def test_rabbitmq_3_10_definitions_import(amqp, tmp_path):
    """A RabbitMQ 3.10.8 export (fixtures/) imports into a fresh Warren with
    every object, password and permission intact."""
    fixture = json.loads(FIXTURE.read_text())
    with fresh_warren(tmp_path) as other:
        api = Api(other.http_port)
        assert api.post("/api/definitions", fixture).status == 204
        vh = q(FIXTURE_VHOST)

        users = {u["name"]: u for u in api.ok("/api/users")}
        for u in fixture["users"]:
            got = users[u["name"]]
            assert (got["tags"], got["hashing_algorithm"], got["password_hash"]) == \
                (u["tags"], u["hashing_algorithm"], u["password_hash"]), u["name"]
        assert {v["name"] for v in fixture["vhosts"]} <= {v["name"] for v in api.ok("/api/vhosts")}
        perms = api.ok("/api/permissions")
        for p in fixture["permissions"]:
            assert p in perms, p
        exchanges = {(x["vhost"], x["name"]): x for x in api.ok("/api/exchanges")}
        for x in fixture["exchanges"]:
            got = exchanges[(x["vhost"], x["name"])]
            assert {k: got[k] for k in x} == x, x["name"]
        queues = {(x["vhost"], x["name"]): x for x in api.ok("/api/queues")}
        for x in fixture["queues"]:
            got = queues[(x["vhost"], x["name"])]
            assert {k: got[k] for k in x} == x, x["name"]
            assert got["type"] == x["arguments"].get("x-queue-type", "classic"), got
        fields = ("source", "vhost", "destination", "destination_type", "routing_key",
                  "arguments")
        bindings = [{k: b[k] for k in fields} for b in api.ok("/api/bindings")]
        for b in fixture["bindings"]:
            assert b in bindings, b
        for b in fixture["bindings"]:
            kind = "q" if b["destination_type"] == "queue" else "e"
            listed = api.ok(f"/api/bindings/{q(b['vhost'])}/e/{q(b['source'])}"
                            f"/{kind}/{q(b['destination'])}")
            assert [x["routing_key"] for x in listed] == [b["routing_key"]], listed
        # Its export is the RabbitMQ document again (users, vhosts, permissions, objects).
        assert _normalised(api.ok("/api/definitions")) == _normalised(fixture)

        # Passwords: each fixture user logs in over AMQP with the password set in RabbitMQ.
        for user, password in FIXTURE_PASSWORDS.items():
            vhost = "/" if user == "guest" else FIXTURE_VHOST
            if user == "fixture-plain":
                continue                                   # no permissions anywhere
            assert amqp(vhost=vhost, user=user, password=password, proc=other).is_open, user
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            amqp(vhost=FIXTURE_VHOST, user="fixture-app", password="wrong", proc=other)
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            amqp(vhost=FIXTURE_VHOST, user="fixture-plain", password="fixture-plain-pw", proc=other)
        # ... and over HTTP, with the tags' powers.
        assert api.as_user("fixture-admin", "fixture-admin-pw").get("/api/users").status == 200
        reply = api.as_user("fixture-monitor", "fixture-monitor-pw").get("/api/users")
        assert reply.status == 401 and reply.json["reason"] == "Not administrator user", reply
        monitor = api.as_user("fixture-monitor", "fixture-monitor-pw")
        assert monitor.get(f"/api/queues/{vh}").status == 200
        reply = api.as_user("fixture-plain", "fixture-plain-pw").get("/api/overview")
        assert reply.status == 401 and reply.json["reason"] == "Not management user", reply
        app = api.as_user("fixture-app", "fixture-app-secret")
        app_vhosts = [v["name"] for v in app.ok("/api/vhosts")]
        assert sorted(app_vhosts) == ["/", FIXTURE_VHOST]

        # The regex permissions apply: fixture-app configures only ^app\. names.
        ch = amqp(vhost=FIXTURE_VHOST, user="fixture-app", password="fixture-app-secret",
                  proc=other).channel()
        ch.queue_declare("app.allowed", auto_delete=True)
        # Gone again: GET /api/definitions lists transient queues too (as RabbitMQ's does), and the
        # re-export below must be the fixture alone.
        ch.queue_delete("app.allowed")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.queue_declare("other.refused")
        assert refused.value.reply_code == 403

        # The topology routes: topic, exchange-to-exchange, alternate exchange,
        # internal exchange, headers.
        ch = amqp(vhost=FIXTURE_VHOST, user="fixture-admin", password="fixture-admin-pw",
                  proc=other).channel()
        ch.confirm_delivery()
        ch.basic_publish("fx.topic", "orders.new", b"order")
        ch.basic_publish("fx.topic", "audit.login", b"audit")
        ch.basic_publish("fx.direct", "nobody", b"alternate")
        ch.basic_publish("fx.direct", "internal", b"via internal")
        ch.basic_publish("fx.headers", "", b"report",
                         pika.BasicProperties(headers={"format": "pdf", "type": "report"}))
        ch.basic_publish("fx.direct", "work", b"to dlx",
                         pika.BasicProperties(expiration="0"))
        for queue, body in (("fq.quorum", b"order"), ("fq.maxlen", b"audit"),
                            ("fq.alt", b"alternate"), ("fq.lazy", b"via internal"),
                            ("fq.headers", b"report")):
            assert ch.basic_get(queue, auto_ack=True)[2] == body, queue
        # fq.dlx dead-letters through fx.dlx ("dead") into fq.dead.
        got = eventually(lambda: ch.basic_get("fq.dead", auto_ack=True)[2])
        assert got == b"to dlx"

        # Re-importing the same document is a no-op.
        assert api.post("/api/definitions", fixture).status == 204
        assert _normalised(api.ok("/api/definitions")) == _normalised(fixture)


# --------------------------------------------------------------------------
# Listing parameters
# --------------------------------------------------------------------------

def test_listing_pagination_columns_sort_and_name_filter(api):
    prefix = uniq("page")
    sizes = [0, 3, 1, 4, 2]
    for i, n in enumerate(sizes):
        name = f"{prefix}.{i}"
        put_queue(api, name)
        for _ in range(n):
            publish_http(api, "", name, "x")
    for i, n in enumerate(sizes):
        wait_queue_counts(api, f"{prefix}.{i}", (n, 0, n, 0))
    base = f"/api/queues/{ROOT}?name={q(prefix)}&columns=name,messages"
    total = len(api.ok(f"/api/queues/{ROOT}"))

    page = api.ok(f"{base}&page=1&page_size=2")
    assert set(page) == PAGE_FIELDS
    assert {k: page[k] for k in PAGE_FIELDS - {"items"}} == {
        "filtered_count": 5, "item_count": 2, "page": 1, "page_count": 3, "page_size": 2,
        "total_count": total}
    assert page["items"] == [{"name": f"{prefix}.0", "messages": 0},
                             {"name": f"{prefix}.1", "messages": 3}]
    page = api.ok(f"{base}&page=3&page_size=2")
    assert (page["item_count"], page["items"]) == (1, [{"name": f"{prefix}.4", "messages": 2}])

    def names(extra):
        items = api.ok(f"{base}&page=1&page_size=10{extra}")["items"]
        return [int(x["name"].rsplit(".", 1)[1]) for x in items]
    assert names("") == [0, 1, 2, 3, 4]
    assert names("&sort=messages") == [0, 2, 4, 1, 3]
    assert names("&sort=messages&sort_reverse=true") == [3, 1, 4, 2, 0]
    assert names("&sort=name&sort_reverse=true") == [4, 3, 2, 1, 0]
    regex = q(f"^{re.escape(prefix)}\\.[13]$")
    got = api.ok(f"/api/queues/{ROOT}?page=1&page_size=10&columns=name&use_regex=true&name={regex}")
    assert (got["filtered_count"], got["items"]) == \
        (2, [{"name": f"{prefix}.1"}, {"name": f"{prefix}.3"}])

    # Dotted columns keep the nesting; without paging a plain list comes back.
    got = api.ok(f"/api/queues/{ROOT}?page=1&name={q(prefix + '.3')}"
                 "&columns=name,message_stats.publish")
    assert got["items"] == [{"name": f"{prefix}.3", "message_stats": {"publish": 4}}]
    assert got["page_size"] == 100
    listing = api.ok(f"/api/queues/{ROOT}?columns=name,messages_ready")
    assert isinstance(listing, list) and len(listing) == total
    assert all(set(x) == {"name", "messages_ready"} for x in listing), listing[:3]

    # The other listings take the same parameters.
    page = api.ok(f"/api/exchanges/{ROOT}?page=1&page_size=2&columns=name,type")
    assert set(page) == PAGE_FIELDS and page["items"] == [{"name": "", "type": "direct"},
                                                          {"name": "amq.direct", "type": "direct"}]
    users = api.ok("/api/users?columns=name,tags")
    assert {"name": "guest", "tags": ["administrator"]} in users
    assert all(set(u) == {"name", "tags"} for u in users), users
    assert all(set(v) == {"name"} for v in api.ok("/api/vhosts?columns=name"))
    assert all(set(b) == {"source", "destination"}
               for b in api.ok(f"/api/bindings/{ROOT}?columns=source,destination"))

    for bad in ("page=0", "page=x", "page=1&page_size=0", "page=1&page_size=501"):
        reply = api.get(f"/api/queues/{ROOT}?{bad}")
        assert reply.status == 400, (bad, reply)


def test_rabbitmq_parity_page_out_of_range(api):
    """RabbitMQ answers a page past the end with 400 page_out_of_range."""
    prefix = uniq("oor")
    for i in range(3):
        assert api.put(f"/api/queues/{ROOT}/{q(f'{prefix}.{i}')}", {"durable": False}).status == 201
    reply = api.get(f"/api/queues/{ROOT}?page=5&page_size=2&name={q(prefix)}")
    assert_error(reply, 400, "page_out_of_range",
                 "Page out of range, page: 5 page size: 2, len: 3")


# --------------------------------------------------------------------------
# Health checks
# --------------------------------------------------------------------------

def test_health_checks(api, warren):
    # (ready-to-serve-clients is newer than RabbitMQ 3.10, which answers 404.)
    for check in ("alarms", "local-alarms", "virtual-hosts", "ready-to-serve-clients"):
        assert api.ok(f"/api/health/checks/{check}") == {"status": "ok"}, check
    for port in (warren.port, warren.http_port):
        assert api.ok(f"/api/health/checks/port-listener/{port}") == {"status": "ok", "port": port}
    reply = api.get("/api/health/checks/port-listener/1")
    assert reply.status == 503, reply
    body = reply.json
    assert (body["status"], body["missing"]) == ("failed", 1)
    assert "reason" in body and warren.port in body["ports"]
    assert api.get("/api/health/checks/port-listener/not-a-port").status == 400
    assert api.ok("/api/health/checks/protocol-listener/amqp") == \
        {"status": "ok", "protocol": "amqp"}
    assert api.ok("/api/health/checks/protocol-listener/http")["status"] == "ok"
    reply = api.get("/api/health/checks/protocol-listener/stomp")
    assert reply.status == 503, reply
    assert (reply.json["status"], reply.json["missing"]) == ("failed", "stomp"), reply
    assert api.ok(f"/api/aliveness-test/{ROOT}") == {"status": "ok"}
    assert_error(api.get(f"/api/aliveness-test/{q(uniq('no-vhost'))}"), 404, "Object Not Found")
    reply = api.get("/api/health/checks/alarms", auth=False)
    assert reply.status == 401, reply


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------

def scrape(proc, path="/metrics"):
    """(content type, raw text, {sample name: {labels tuple: value}}, families)."""
    with _OPENER.open(f"http://127.0.0.1:{proc.prometheus_port}{path}", timeout=10) as resp:
        ctype = resp.headers.get("Content-Type", "")
        text = resp.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return ctype, text, samples, families


def value(samples, name, **labels):
    series = samples.get(name)
    assert series is not None, f"no {name} in the scrape"
    key = tuple(sorted(labels.items()))
    assert key in series, f"{name}{labels} not in {sorted(series)[:5]}"
    return series[key]


AGGREGATED_FAMILIES = {
    "rabbitmq_connections": "gauge", "rabbitmq_channels": "gauge", "rabbitmq_queues": "gauge",
    "rabbitmq_consumers": "gauge", "rabbitmq_queue_messages_ready": "gauge",
    "rabbitmq_queue_messages_unacked": "gauge", "rabbitmq_queue_messages": "gauge",
    "rabbitmq_global_messages_received": "counter",
    "rabbitmq_global_messages_delivered": "counter",
    "rabbitmq_global_messages_acknowledged": "counter",
    "rabbitmq_global_messages_confirmed": "counter",
    "rabbitmq_global_messages_routed": "counter",
    "rabbitmq_global_messages_redelivered": "counter",
    "rabbitmq_process_resident_memory_bytes": "gauge", "rabbitmq_identity_info": "unknown",
}


def test_prometheus_metrics_follow_amqp_traffic(api, warren, amqp):
    # Other tests' connections are closed; start from a quiet broker.
    eventually(lambda: api.ok("/api/connections") == [])
    ctype, _, before, families = scrape(warren)
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    types = {f.name: f.type for f in families}
    for name, kind in AGGREGATED_FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))
    node = api.ok("/api/overview")["node"]
    identity = before["rabbitmq_identity_info"]
    assert [dict(k)["rabbitmq_node"] for k in identity] == [node]
    assert value(before, "rabbitmq_process_resident_memory_bytes") > 1_000_000

    def g(samples, name):
        return value(samples, name)

    def c(samples, name):
        """A global counter summed over its series (RabbitMQ splits some by queue_type)."""
        series = samples.get(name)
        assert series, f"no {name} in the scrape"
        return sum(v for k, v in series.items() if dict(k).get("protocol") == "amqp091")

    conn = amqp()
    publisher = conn.channel()
    publisher.confirm_delivery()
    queue = uniq("q")
    publisher.queue_declare(queue)
    for i in range(3):
        publisher.basic_publish("", queue, f"m{i}".encode())
    consumer_ch = conn.channel()
    collector = Collector()
    consumer_ch.basic_consume(queue, collector)
    eventually(lambda: len(collector.deliveries) == 3, connection=conn)
    consumer_ch.basic_ack(collector.tags[0])
    consumer_ch.basic_ack(collector.tags[1])

    gauges = ("connections", "channels", "consumers", "queues", "queue_messages_ready",
              "queue_messages_unacked", "queue_messages")
    totals = ("received", "confirmed", "routed", "delivered", "acknowledged")

    def growth(now):
        """How much each gauge and global counter grew since ``before``."""
        got = {k: g(now, f"rabbitmq_{k}") - g(before, f"rabbitmq_{k}") for k in gauges}
        for k in totals:
            name = f"rabbitmq_global_messages_{k}_total"
            got[k] = c(now, name) - c(before, name)
        return got

    def during():
        got = growth(scrape(warren)[2])
        assert got == {"connections": 1, "channels": 2, "consumers": 1, "queues": 1,
                       "queue_messages_ready": 0, "queue_messages_unacked": 1,
                       "queue_messages": 1, "received": 3, "confirmed": 3, "routed": 3,
                       "delivered": 3, "acknowledged": 2}, got
        return True
    eventually(during, connection=conn)

    conn.close()

    def after():
        got = growth(scrape(warren)[2])
        # The unacked message went back to the queue when the channel closed.
        assert {k: got[k] for k in gauges} == {
            "connections": 0, "channels": 0, "consumers": 0, "queues": 1,
            "queue_messages_ready": 1, "queue_messages_unacked": 0, "queue_messages": 1}, got
        return True
    eventually(after)


def test_prometheus_per_object_queue_series(api, warren, amqp):
    conn = amqp()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = uniq("q")
    odd = f'{uniq("odd")} "quoted" back\\slash'      # label escaping
    ch.queue_declare(queue)
    ch.queue_declare(odd)
    for _ in range(3):
        ch.basic_publish("", queue, b"x")
    ch.basic_publish("", odd, b"y")
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    consumer_ch.basic_consume(queue, Collector())
    vhost = uniq("vh")
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    other_queue = uniq("q")
    assert api.put(f"/api/queues/{q(vhost)}/{q(other_queue)}", {"durable": False}).status == 201
    publish_http(api, "", other_queue, "z", vhost=q(vhost))

    def check():
        ctype, _, s, families = scrape(warren, "/metrics/per-object")
        assert "version=0.0.4" in ctype
        mine = dict(vhost="/", queue=queue)
        got = (value(s, "rabbitmq_queue_messages_ready", **mine),
               value(s, "rabbitmq_queue_messages_unacked", **mine),
               value(s, "rabbitmq_queue_messages", **mine),
               value(s, "rabbitmq_queue_consumers", **mine))
        assert got == (2, 1, 3, 1), got
        assert value(s, "rabbitmq_queue_messages_ready", vhost="/", queue=odd) == 1
        assert value(s, "rabbitmq_queue_messages_ready", vhost=vhost, queue=other_queue) == 1
        types = {f.name: f.type for f in families}
        assert types["rabbitmq_queue_messages_ready"] == "gauge"
        # Aggregated and per-object series agree.
        _, _, agg, _ = scrape(warren)
        per_queue_ready = sum(v for k, v in s["rabbitmq_queue_messages_ready"].items())
        assert per_queue_ready == value(agg, "rabbitmq_queue_messages_ready")
        return True
    eventually(check, connection=conn)

    ch.queue_delete(odd)

    def gone():
        _, _, s, _ = scrape(warren, "/metrics/per-object")
        keys = {dict(k)["queue"] for k in s["rabbitmq_queue_messages_ready"]}
        assert odd not in keys and queue in keys
        return True
    eventually(gone)


def test_prometheus_exposition_declares_each_family_once(warren, amqp):
    """Text format 0.0.4 allows one TYPE line (one group) per metric family;
    Prometheus rejects a scrape that repeats one."""
    amqp().channel()
    for path in ("/metrics", "/metrics/per-object"):
        _, text, _, families = scrape(warren, path)
        typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        duplicated = sorted({n for n in typed if typed.count(n) > 1})
        assert not duplicated, f"{path} repeats # TYPE for {duplicated}"
        names = [f.name for f in families]
        assert len(names) == len(set(names)), path


# --------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------

def test_policies_put_get_delete_and_apply_to_new_queues(api, amqp):
    """PUT /api/policies/{vhost}/{name}: 201 then 204; the queue declared
    after it shows the policy and obeys it (max-length from the policy); an
    invalid pattern or an unknown key is 400; DELETE 204 then 404."""
    prefix = uniq("pol")
    body = {"pattern": f"^{prefix}\\.", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"}
    assert api.put(f"/api/policies/{ROOT}/{q(prefix)}", body).status == 201
    assert api.put(f"/api/policies/{ROOT}/{q(prefix)}", body).status == 204
    got = api.ok(f"/api/policies/{ROOT}/{q(prefix)}")
    assert (got["name"], got["vhost"], got["pattern"], got["apply-to"], got["definition"], got["priority"]) == \
        (prefix, "/", f"^{prefix}\\.", "queues", {"max-length": 2}, 1)
    assert prefix in [p["name"] for p in api.ok("/api/policies")]
    bad = dict(body, pattern="(")
    assert api.put(f"/api/policies/{ROOT}/{q(prefix + '-bad')}", bad).status == 400
    bad = dict(body, definition={"no-such-setting": 1})
    assert api.put(f"/api/policies/{ROOT}/{q(prefix + '-bad')}", bad).status == 400

    conn = amqp()
    ch = conn.channel()
    name = f"{prefix}.q"
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, str(i).encode())
    info = eventually(lambda: (lambda i: i if i["messages_ready"] == 2 else None)(queue_info(api, name)), connection=conn)
    assert info["policy"] == prefix and info["effective_policy_definition"] == {"max-length": 2}, info
    # The oldest message was dropped (drop-head), as RabbitMQ's max-length does.
    assert ch.basic_get(name, auto_ack=True)[2] == b"1"

    assert api.delete(f"/api/policies/{ROOT}/{q(prefix)}").status == 204
    assert api.delete(f"/api/policies/{ROOT}/{q(prefix)}").status == 404


def test_policies_travel_with_definitions(api, tmp_path):
    """Policies are exported with the definitions and imported into a fresh
    broker, where they apply to the queues the same document declares."""
    prefix = uniq("dpol")
    body = {"pattern": f"^{prefix}", "definition": {"message-ttl": 60000, "dead-letter-exchange": "amq.fanout"},
            "priority": 3, "apply-to": "all"}
    assert api.put(f"/api/policies/{ROOT}/{q(prefix)}", body).status == 201
    assert api.put(f"/api/queues/{ROOT}/{q(prefix + '.q')}", {"durable": True}).status == 201
    exported = api.ok("/api/definitions")
    mine = [p for p in exported["policies"] if p["name"] == prefix]
    assert mine == [{"vhost": "/", "name": prefix, "pattern": f"^{prefix}", "apply-to": "all",
                     "definition": body["definition"], "priority": 3}], exported["policies"]
    with fresh_warren(tmp_path) as other:
        other_api = Api(other.http_port)
        assert other_api.post("/api/definitions", exported).status == 204
        assert [p["name"] for p in other_api.ok("/api/policies")] == [p["name"] for p in exported["policies"]]
        info = queue_info(other_api, prefix + ".q")
        assert info["policy"] == prefix, info
    assert api.delete(f"/api/policies/{ROOT}/{q(prefix)}").status == 204


def test_user_id_impersonator_and_http_publish(api, amqp):
    """An impersonator may publish any user_id; others get 406 over AMQP and
    RabbitMQ's 400 with the channel error as reason over HTTP."""
    queue = uniq("q")
    user = uniq("impersonator")
    put_user(api, user, "pw", ["impersonator"])
    assert api.put(f"/api/permissions/{ROOT}/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    ch = amqp(user=user, password="pw").channel()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"as-other", pika.BasicProperties(user_id="someone-else"))
    _, props, body = ch.basic_get(queue, auto_ack=True) or (None, None, None)
    assert (body, props.user_id) == (b"as-other", "someone-else")

    reply = api.post(f"/api/exchanges/{ROOT}/amq.default/publish",
                     {"properties": {"user_id": "bob"}, "routing_key": queue, "payload": "x",
                      "payload_encoding": "string"})
    assert reply.status == 400, reply
    assert reply.json["reason"] == ("406 PRECONDITION_FAILED - user_id property set to 'bob' "
                                    "but authenticated user was 'guest'"), reply
    assert publish_http(api, "", queue, "own", {"user_id": "guest"}) is True
