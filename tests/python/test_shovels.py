"""Dynamic shovels (RabbitMQ's ``rabbitmq_shovel`` + ``rabbitmq_shovel_management``): runtime
parameters of component ``shovel`` (``PUT /api/parameters/shovel/{vhost}/{name}`` with
``{"value": {...}}``, ``rabbitmqctl set_parameter shovel``) that move messages from a source queue
or exchange to a destination queue or exchange, on the same broker (``amqp://``: a direct
connection to the shovel's own vhost) or another one (``amqp://user:pass@host:port/vhost``).

What RabbitMQ 3.10.8 does, and these tests pin:

* ``PUT`` answers 201 (created) / 204 (replaced); a bad definition is a 400 ``bad_request`` whose
  reason starts with ``Validation failed`` and names the problem (``Must specify 'src-exchange' or
  'src-queue'``, ``Cannot specify 'dest-exchange' and 'dest-queue'``, ``Key "src-uri" not found in
  NAME``, ``... not a valid URI``, ``ack-mode should be one of ...``).
* ``GET /api/shovels/{vhost}`` lists ``{"name", "vhost", "type": "dynamic", "state": "running",
  "src_uri", "src_queue", "dest_uri", "dest_queue", ...}`` once the shovel runs.
* The source queue and destination queue are declared (durable) when missing; messages keep their
  properties, headers and body, in order; with ``dest-add-forward-headers`` each gets an
  ``x-shovelled`` array with one table per shovel it went through, and with
  ``dest-add-timestamp-header`` an ``x-shovelled-timestamp``.
* ``src-delete-after: "queue-length"`` moves as many messages as the queue had when the shovel
  started, then the shovel deletes itself (its parameter is gone); a number N moves N.
* A shovel from an exchange binds a queue of its own with ``src-exchange-key``; to a destination
  exchange without ``dest-exchange-key``, messages keep their routing key.
* Deleting the parameter stops the shovel: later messages stay at the source.
* Shovels are runtime parameters in the definitions (``parameters``, component ``shovel``), and
  importing one starts it.

Each test uses a fresh vhost (``vhost`` fixture), so the file passes against RabbitMQ 3.10.8 with
the shovel plugins enabled (``AMQP_URL`` and ``MGMT_URL``) and against Warren. The tests that
start Warren processes of their own (a second broker, a restart, kill -9, ``warren ctl``) run
against Warren only.
"""

import json
import os
import signal
import subprocess
import urllib.parse
import uuid

import pika
import pytest

from conftest import WarrenProcess, close_all, eventually, warren_binary
from http_fixtures import api, vhost  # noqa: F401 (fixtures)
from test_management import Api
from test_security import _tls_args, pki, start_broker  # noqa: F401 (pki: fixture)

warren_only = pytest.mark.skipif(
    bool(os.environ.get("AMQP_URL") or os.environ.get("MGMT_URL")),
    reason="starts Warren processes of its own (a second broker, a restart, Warren's CLI)")


def q(name):
    return urllib.parse.quote(name, safe="")


def here(vhost):
    """This broker, vhost ``vhost`` (``amqp://`` alone is the default vhost ``/``)."""
    return f"amqp:///{q(vhost)}"


def shovel_path(vhost, name):
    return f"/api/parameters/shovel/{q(vhost)}/{q(name)}"


def put_shovel(api, vhost, name, value, status=201):
    reply = api.put(shovel_path(vhost, name), {"value": value})
    assert reply.status == status, reply
    return reply


def running(api, vhost, name):
    """Wait until shovel ``name`` reports ``running``; its status row."""
    def check():
        rows = [r for r in api.ok(f"/api/shovels/{q(vhost)}") if r["name"] == name]
        assert rows and rows[0]["state"] == "running", rows
        return rows[0]
    return eventually(check, timeout=15)


@pytest.fixture
def conn(broker, vhost):
    c = pika.BlockingConnection(broker.params(virtual_host=vhost))
    yield c
    close_all([c])


def publish(conn, queue, bodies, exchange="", headers=None, persistent=False):
    ch = conn.channel()
    ch.confirm_delivery()
    for i, body in enumerate(bodies):
        props = pika.BasicProperties(headers=dict(headers or {}, n=i), message_id=f"m{i}",
                                     content_type="text/plain",
                                     delivery_mode=2 if persistent else None)
        ch.basic_publish(exchange, queue, body, props)
    ch.close()


def declare_ok(conn, queue):
    """The queue's declare-ok (message and consumer counts); None while it does not exist."""
    ch = conn.channel()
    try:
        ok = ch.queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404, e
        return None
    ch.close()
    return ok


def count(conn, queue):
    ok = declare_ok(conn, queue)
    return 0 if ok is None else ok.message_count


def wait_count(conn, queue, n, timeout=10):
    def check():
        got = count(conn, queue)
        assert got == n, f"{queue} has {got}, want {n}"
        return True
    eventually(check, timeout=timeout)


def take(conn, queue):
    """Every message of ``queue`` as (method, properties, body), acknowledged."""
    ch = conn.channel()
    out = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((method, props, body))
    ch.close()
    return out


def declare(conn, queue, durable=True):
    ch = conn.channel()
    ch.queue_declare(queue, durable=durable)
    ch.close()


def test_queue_to_queue_moves_messages_in_order_with_their_properties(api, vhost, conn):
    declare(conn, "src")
    bodies = [f"body-{i}".encode() for i in range(20)]
    publish(conn, "src", bodies, headers={"kind": "order"})
    put_shovel(api, vhost, "mover", {"src-uri": here(vhost), "src-queue": "src",
                                     "dest-uri": here(vhost), "dest-queue": "dst"})
    row = running(api, vhost, "mover")
    assert (row["type"], row["vhost"], row["src_queue"], row["dest_queue"]) == ("dynamic", vhost, "src", "dst")
    assert (row["src_uri"], row["dest_uri"]) == (here(vhost), here(vhost))
    wait_count(conn, "dst", 20)
    assert count(conn, "src") == 0
    got = take(conn, "dst")
    assert [b for _, _, b in got] == bodies
    method, props, _ = got[3]
    assert (method.exchange, method.routing_key) == ("", "dst")
    assert (props.message_id, props.content_type, props.headers) == ("m3", "text/plain", {"kind": "order", "n": 3})
    # The destination queue was declared durable; the parameter is listed.
    assert api.ok(f"/api/queues/{q(vhost)}/dst")["durable"] is True
    param = api.ok(shovel_path(vhost, "mover"))
    assert (param["component"], param["name"], param["vhost"]) == ("shovel", "mover", vhost)
    assert param["value"]["src-queue"] == "src"
    assert [p["name"] for p in api.ok(f"/api/parameters/shovel/{q(vhost)}")] == ["mover"]
    # Later messages follow.
    publish(conn, "src", [b"late"])
    wait_count(conn, "dst", 1)


def test_a_bad_definition_is_refused_with_rabbitmqs_reason(api, vhost):
    base = {"src-uri": here(vhost), "src-queue": "a", "dest-uri": here(vhost), "dest-queue": "b"}
    cases = [
        ({"src-uri": here(vhost), "dest-uri": here(vhost)}, "Must specify 'src-exchange' or 'src-queue'"),
        (dict(base, **{"src-exchange": "x"}), "Cannot specify 'src-exchange' and 'src-queue'"),
        (dict(base, **{"dest-exchange": "x"}), "Cannot specify 'dest-exchange' and 'dest-queue'"),
        ({k: v for k, v in base.items() if k != "src-uri"}, 'Key "src-uri" not found in bad'),
        (dict(base, **{"src-uri": "http://x"}), '"http://x" not a valid URI'),
        (dict(base, **{"ack-mode": "sometimes"}), "ack-mode should be one of"),
        (dict(base, **{"src-delete-after": "later"}),
         'src-delete-after should be a number greater than or equal to 0, "never" or "queue-length"'),
        (dict(base, **{"src-prefetch-count": "many"}), "src-prefetch-count should be a number"),
    ]
    for value, reason in cases:
        reply = api.put(shovel_path(vhost, "bad"), {"value": value})
        assert reply.status == 400, (value, reply)
        assert reply.json["error"] == "bad_request", reply
        assert reply.json["reason"].startswith("Validation failed\n\n"), reply.json
        assert reason in reply.json["reason"], (value, reply.json)
    assert api.get(shovel_path(vhost, "bad")).status == 404
    assert api.ok(f"/api/shovels/{q(vhost)}") == []


def test_src_delete_after_queue_length_moves_what_was_there_then_deletes_itself(api, vhost, conn):
    declare(conn, "backlog")
    publish(conn, "backlog", [b"1", b"2", b"3"])
    put_shovel(api, vhost, "once", {"src-uri": here(vhost), "src-queue": "backlog", "dest-uri": here(vhost),
                                    "dest-queue": "drained", "src-delete-after": "queue-length"})
    eventually(lambda: api.get(shovel_path(vhost, "once")).status == 404, timeout=15)
    assert [b for _, _, b in take(conn, "drained")] == [b"1", b"2", b"3"]
    publish(conn, "backlog", [b"after"])
    assert count(conn, "backlog") == 1
    assert api.ok(f"/api/shovels/{q(vhost)}") == []


def test_src_delete_after_a_count_moves_that_many(api, vhost, conn):
    declare(conn, "many")
    publish(conn, "many", [str(i).encode() for i in range(5)])
    put_shovel(api, vhost, "two", {"src-uri": here(vhost), "src-queue": "many", "dest-uri": here(vhost),
                                   "dest-queue": "two", "src-delete-after": 2})
    eventually(lambda: api.get(shovel_path(vhost, "two")).status == 404, timeout=15)
    assert [b for _, _, b in take(conn, "two")] == [b"0", b"1"]
    wait_count(conn, "many", 3)
    assert [b for _, _, b in take(conn, "many")] == [b"2", b"3", b"4"]


def test_forward_and_timestamp_headers(api, vhost, conn):
    declare(conn, "fsrc")
    put_shovel(api, vhost, "stamp", {"src-uri": here(vhost), "src-queue": "fsrc", "dest-uri": here(vhost),
                                     "dest-queue": "fdst", "dest-add-forward-headers": True,
                                     "dest-add-timestamp-header": True})
    running(api, vhost, "stamp")
    publish(conn, "fsrc", [b"x"], headers={"a": 1})
    wait_count(conn, "fdst", 1)
    (_, props, body), = take(conn, "fdst")
    assert body == b"x"
    h = props.headers
    assert h["a"] == 1
    assert h["x-shovelled"] == [{
        "shovel-name": "stamp", "shovel-type": "dynamic", "shovel-vhost": vhost,
        "shovelled-by": h["x-shovelled"][0]["shovelled-by"],
        "src-uri": here(vhost), "src-queue": "fsrc", "dest-uri": here(vhost), "dest-queue": "fdst",
    }]
    assert isinstance(h["x-shovelled-timestamp"], int) and h["x-shovelled-timestamp"] > 1_600_000_000


def test_exchange_to_exchange_keeps_the_routing_key(api, vhost, conn):
    ch = conn.channel()
    ch.exchange_declare("events.in", "topic")
    ch.exchange_declare("events.out", "direct")
    ch.queue_declare("billing")
    ch.queue_bind("billing", "events.out", "order.paid")
    ch.close()
    put_shovel(api, vhost, "bridge", {"src-uri": here(vhost), "src-exchange": "events.in",
                                      "src-exchange-key": "order.*", "dest-uri": here(vhost),
                                      "dest-exchange": "events.out"})
    row = running(api, vhost, "bridge")
    assert (row["src_exchange"], row["dest_exchange"]) == ("events.in", "events.out")
    publish(conn, "order.paid", [b"paid"], exchange="events.in")
    publish(conn, "user.created", [b"ignored"], exchange="events.in")
    wait_count(conn, "billing", 1)
    (method, _, body), = take(conn, "billing")
    assert (method.exchange, method.routing_key, body) == ("events.out", "order.paid", b"paid")


def test_ack_modes_on_publish_and_no_ack_move_messages(api, vhost, conn):
    for mode in ("on-publish", "no-ack"):
        declare(conn, f"src-{mode}")
        publish(conn, f"src-{mode}", [b"a", b"b", b"c"])
        put_shovel(api, vhost, mode, {"src-uri": here(vhost), "src-queue": f"src-{mode}", "dest-uri": here(vhost),
                                      "dest-queue": f"dst-{mode}", "ack-mode": mode})
        wait_count(conn, f"dst-{mode}", 3)
        wait_count(conn, f"src-{mode}", 0)


def test_deleting_the_shovel_stops_it_and_restart_resumes(api, vhost, conn):
    declare(conn, "stop-src")
    put_shovel(api, vhost, "s", {"src-uri": here(vhost), "src-queue": "stop-src", "dest-uri": here(vhost),
                                 "dest-queue": "stop-dst"})
    running(api, vhost, "s")
    put_shovel(api, vhost, "s", {"src-uri": here(vhost), "src-queue": "stop-src", "dest-uri": here(vhost),
                                 "dest-queue": "stop-dst", "ack-mode": "on-publish"}, status=204)
    assert api.delete(f"/api/shovels/vhost/{q(vhost)}/s/restart").status == 204
    running(api, vhost, "s")
    publish(conn, "stop-src", [b"moved"])
    wait_count(conn, "stop-dst", 1)
    assert api.delete(shovel_path(vhost, "s")).status == 204
    assert api.delete(shovel_path(vhost, "s")).status == 404
    # Its consumer goes with it; what is published next stays.
    eventually(lambda: declare_ok(conn, "stop-src").consumer_count == 0, timeout=10)
    publish(conn, "stop-src", [b"stays"])
    assert count(conn, "stop-src") == 1
    assert count(conn, "stop-dst") == 1


def test_shovels_are_parameters_in_the_definitions(api, vhost, conn):
    declare(conn, "def-src")
    value = {"src-uri": here(vhost), "src-queue": "def-src", "dest-uri": here(vhost), "dest-queue": "def-dst"}
    put_shovel(api, vhost, "exported", value)
    params = api.ok(f"/api/definitions/{q(vhost)}")["parameters"]
    assert {"component": "shovel", "name": "exported", "value": value} in [
        {k: p[k] for k in ("component", "name", "value")} for p in params]
    assert api.delete(shovel_path(vhost, "exported")).status == 204
    body = {"parameters": [{"vhost": vhost, "component": "shovel", "name": "imported", "value": value}]}
    assert api.post("/api/definitions", body).status in (200, 201, 204)
    running(api, vhost, "imported")
    publish(conn, "def-src", [b"via import"])
    wait_count(conn, "def-dst", 1)


def test_the_shovels_of_a_deleted_vhost_stop(api, broker):
    name = f"shovels-gone-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/vhosts/{q(name)}", {}).status == 201
    api.put(f"/api/permissions/{q(name)}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    put_shovel(api, name, "s", {"src-uri": here(name), "src-queue": "a", "dest-uri": here(name), "dest-queue": "b"})
    running(api, name, "s")
    assert api.delete(f"/api/vhosts/{q(name)}").status == 204
    assert [r for r in api.ok("/api/shovels") if r["vhost"] == name] == []
    assert [p for p in api.ok("/api/parameters") if p["vhost"] == name] == []


# ---- Warren only -------------------------------------------------------------------------------


@pytest.fixture
def remote():
    """A second Warren: the other broker a shovel moves messages to or from."""
    p = WarrenProcess(warren_binary())
    p.wait_ready()
    yield p
    p.terminate()


def remote_conn(p):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=p.port, credentials=pika.PlainCredentials("guest", "guest")))


@warren_only
def test_to_another_broker_and_reconnect_after_its_connection_is_closed(api, vhost, conn, remote):
    declare(conn, "outbox")
    uri = f"amqp://guest:guest@127.0.0.1:{remote.port}/%2F"
    put_shovel(api, vhost, "export", {"src-uri": here(vhost), "src-queue": "outbox", "dest-uri": uri,
                                      "dest-queue": "inbox", "reconnect-delay": 0.2})
    row = running(api, vhost, "export")
    assert row["dest_uri"] == f"amqp://guest@127.0.0.1:{remote.port}/%2F", row
    publish(conn, "outbox", [b"1", b"2"])
    rc = remote_conn(remote)
    try:
        wait_count(rc, "inbox", 2)
        # The remote broker closes the shovel's connection: the shovel reports it, reconnects and
        # moves on; nothing published meanwhile is lost.
        rapi = Api(remote.http_port)
        conns = eventually(lambda: [c for c in rapi.ok("/api/connections")
                                    if c["client_properties"].get("connection_name") == "Shovel export"])
        assert rapi.delete(f"/api/connections/{q(conns[0]['name'])}").status == 204
        publish(conn, "outbox", [b"3", b"4"])
        wait_count(rc, "inbox", 4, timeout=15)
        assert [b for _, _, b in take(rc, "inbox")] == [b"1", b"2", b"3", b"4"]
        running(api, vhost, "export")
    finally:
        close_all([rc])


@warren_only
def test_a_wrong_password_is_reported_in_the_status(api, vhost, remote):
    uri = f"amqp://guest:wrong@127.0.0.1:{remote.port}"
    put_shovel(api, vhost, "denied", {"src-uri": here(vhost), "src-queue": "a", "dest-uri": uri, "dest-queue": "b"})

    def terminated():
        rows = api.ok(f"/api/shovels/{q(vhost)}")
        assert rows[0]["state"] == "terminated" and "ACCESS_REFUSED" in rows[0]["reason"], rows
        assert "wrong" not in json.dumps(rows), rows
        return True
    eventually(terminated, timeout=10)


@warren_only
def test_a_durable_shovel_survives_a_restart_and_kill_9_loses_nothing(tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    first = WarrenProcess(warren_binary(), data_dir=data)
    first.wait_ready()
    papi = Api(first.http_port)
    c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=first.port))
    declare(c, "durable-src")
    n = 3000
    bodies = [f"{i:05}".encode() for i in range(n)]
    publish(c, "durable-src", bodies, persistent=True)
    put_shovel(papi, "/", "keeper", {"src-uri": "amqp://", "src-queue": "durable-src",
                                     "dest-uri": "amqp://", "dest-queue": "durable-dst", "src-prefetch-count": 50})
    # Killed while moving: what was confirmed at the source stays until the destination confirmed it.
    eventually(lambda: count(c, "durable-dst") > 0, timeout=10)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    close_all([c])
    second = WarrenProcess(warren_binary(), data_dir=data)
    try:
        second.wait_ready()
        sapi = Api(second.http_port)
        running(sapi, "/", "keeper")
        c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=second.port))
        wait_count(c, "durable-src", 0, timeout=20)
        got = {b for _, _, b in take(c, "durable-dst")}
        assert got == set(bodies), f"missing {len(set(bodies) - got)}"
        close_all([c])
    finally:
        second.terminate()


@warren_only
def test_rabbitmqctl_parameters_and_shovel_status(broker, vhost, conn):
    def ctl(*args):
        return subprocess.run([str(warren_binary()), "ctl", "--port", str(broker.process.http_port), *args],
                              capture_output=True, text=True, timeout=30)
    declare(conn, "ctl-src")
    value = json.dumps({"src-uri": here(vhost), "src-queue": "ctl-src", "dest-uri": here(vhost), "dest-queue": "ctl-dst"})
    r = ctl("set_parameter", "-p", vhost, "shovel", "by-cli", value)
    assert r.returncode == 0, r.stderr
    assert f'Setting runtime parameter "by-cli" for component "shovel" to "{value}" in vhost "{vhost}" ...' in r.stdout
    publish(conn, "ctl-src", [b"cli"])
    wait_count(conn, "ctl-dst", 1)
    r = ctl("list_parameters", "-p", vhost)
    assert r.returncode == 0 and "shovel\tby-cli\t" in r.stdout, r.stdout + r.stderr
    r = ctl("shovel_status")
    assert r.returncode == 0 and "by-cli" in r.stdout and "running" in r.stdout, r.stdout + r.stderr
    r = ctl("set_parameter", "-p", vhost, "shovel", "broken", '{"src-uri": "amqp://"}')
    assert r.returncode != 0 and "Must specify 'src-exchange' or 'src-queue'" in r.stderr, r.stderr
    r = ctl("clear_parameter", "-p", vhost, "shovel", "by-cli")
    assert r.returncode == 0, r.stderr
    r = ctl("clear_parameter", "-p", vhost, "shovel", "by-cli")
    assert r.returncode != 0 and "Parameter does not exist" in r.stderr, r.stderr


@warren_only
def test_to_another_broker_over_tls(api, vhost, conn, pki):
    """amqps:// with the CA to verify the server against (``cacertfile``), and with
    ``verify=verify_none``."""
    tls = start_broker(*_tls_args(pki), tls=True)
    try:
        declare(conn, "secure-out")
        uris = {
            "verified": f"amqps://guest:guest@localhost:{tls.tls_port}/%2F?cacertfile={q(pki.ca)}",
            "unverified": f"amqps://guest:guest@127.0.0.1:{tls.tls_port}/%2F?verify=verify_none",
        }
        for name, uri in uris.items():
            put_shovel(api, vhost, name, {"src-uri": here(vhost), "src-queue": "secure-out", "dest-uri": uri,
                                          "dest-queue": f"secure-in-{name}"})
            running(api, vhost, name)
        publish(conn, "secure-out", [b"a", b"b", b"c", b"d"])
        rc = remote_conn(tls)
        try:
            eventually(lambda: count(rc, "secure-in-verified") + count(rc, "secure-in-unverified") == 4, timeout=10)
        finally:
            close_all([rc])
        # A server certificate that does not verify keeps the shovel from starting, with the reason.
        put_shovel(api, vhost, "rogue", {"src-uri": here(vhost), "src-queue": "secure-out",
                                         "dest-uri": f"amqps://guest:guest@localhost:{tls.tls_port}/%2F?cacertfile={q(pki.rogue_ca)}",
                                         "dest-queue": "never"})

        def refused():
            row = [r for r in api.ok(f"/api/shovels/{q(vhost)}") if r["name"] == "rogue"][0]
            assert row["state"] == "terminated" and "TLS" in row["reason"], row
            return True
        eventually(refused, timeout=10)
    finally:
        tls.terminate()
