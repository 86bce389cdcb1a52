"""The HTTP listeners under hostile clients (issue 21, items 6-8), end to end.

Real sockets against real ``warren`` processes started as conftest.py does:

- slow and idle clients: a socket that never finishes its request headers, or
  sits idle on a keep-alive connection, is closed by the broker (the timeouts
  are shortened with the hidden ``--http-timeout`` flag so the test is quick;
  the defaults are 15 s, as RabbitMQ's listeners);
- many clients: with RLIMIT_NOFILE 1024, HTTP connections beyond the cap are
  answered 503 and closed, and AMQP clients still connect;
- cross-site requests: a body that is not declared ``application/json``
  (``text/plain``, a form, no Content-Type) is refused with 415 and changes
  nothing; no CORS header is sent;
- wrong JSON types (``"durable": "yes"``, ``delivery_mode: 300``, ...) are
  refused with 400 and RabbitMQ's error body, and change nothing.

Timing assertions are generous upper bounds; waits poll (``eventually``).
"""

import base64
import http.client
import json
import os
import re
import resource
import select
import socket
import time
import urllib.parse
import uuid

import pika
import pytest

from conftest import WarrenProcess, amqp_mode_is_external, eventually, warren_binary

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="starts its own Warren processes (with hidden flags and a lowered fd limit)")

HTTP_TIMEOUT_MS = 1000      # the shortened header-read / idle timeout of these brokers
CLOSE_BOUND = 10.0          # generous bound for "closed by the broker" (timeout is 1 s)
FD_LIMIT = 1024             # RLIMIT_NOFILE of the capped broker
IDLE_SOCKETS = 1100         # idle HTTP sockets thrown at it (more than the cap)
ROOT = "%2F"

def q(name):
    return urllib.parse.quote(name, safe="")


def uniq(kind):
    return f"http-hardening.{kind}.{uuid.uuid4().hex[:10]}"


def start(tmp_path, extra_args=(), preexec_fn=None):
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(f"Warren binary not found at {binary}: build it (cargo build) or set "
                    "WARREN_BIN", pytrace=False)
    proc = WarrenProcess(binary, tmp_path / f"warren-{uuid.uuid4().hex[:6]}.log",
                         extra_args=extra_args, preexec_fn=preexec_fn)
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    assert proc.http_port, proc.output()
    return proc


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = start(tmp_path_factory.mktemp("warren-http"),
                 extra_args=("--http-timeout", str(HTTP_TIMEOUT_MS)))
    try:
        yield proc
    finally:
        proc.terminate()


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    def __repr__(self):
        return f"<HTTP {self.status} {self.raw[:300]!r}>"


def request(port, method, path, data=None, content_type=None, headers=None):
    """One HTTP request as guest; ``data`` bytes sent as is, with
    ``content_type`` (None: no Content-Type header at all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        hdrs = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def send_json(port, method, path, body):
    return request(port, method, path, json.dumps(body).encode(), "application/json")


def closed_by_peer(sock, received=None):
    """Whether the broker has closed ``sock`` (EOF or reset); never blocks.
    Bytes read on the way are appended to ``received`` (a bytearray)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    while p.poll(0):
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True
        if received is not None:
            received.extend(data)
    return False


def wait_closed(sock, bound=CLOSE_BOUND):
    started = time.monotonic()
    eventually(lambda: closed_by_peer(sock), timeout=bound, interval=0.05)
    return time.monotonic() - started


# --------------------------------------------------------------------------
# Slow and idle clients (item 6)
# --------------------------------------------------------------------------

def test_partial_header_socket_is_closed_by_the_broker(warren):
    with socket.create_connection(("127.0.0.1", warren.http_port)) as s:
        s.sendall(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        elapsed = wait_closed(s)
    print(f"partial-header socket closed after {elapsed:.2f}s (timeout {HTTP_TIMEOUT_MS} ms)")


def test_silent_socket_is_closed_by_the_broker(warren):
    with socket.create_connection(("127.0.0.1", warren.http_port)) as s:
        wait_closed(s)


def test_trickled_headers_do_not_extend_the_header_timeout(warren):
    """One header byte at a time, more often than the timeout, still gets closed."""
    with socket.create_connection(("127.0.0.1", warren.http_port)) as s:
        s.sendall(b"GET /api/overview HTTP/1.1\r\n")
        deadline = time.monotonic() + CLOSE_BOUND
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = closed_by_peer(s)
            if not closed:
                select.select([s], [], [], 0.2)
        assert closed, "a trickling client kept its socket"


def test_idle_keep_alive_connection_is_closed_after_a_request(warren):
    with socket.create_connection(("127.0.0.1", warren.http_port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(5)
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        s.settimeout(None)
        wait_closed(s)


def test_requests_still_work_with_short_timeouts(warren):
    reply = request(warren.http_port, "GET", "/api/overview")
    assert reply.status == 200, reply


def _lower_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_http_connection_cap_keeps_amqp_available(tmp_path):
    """With 1024 descriptors, 1100 idle HTTP sockets: those beyond the cap get
    503 and are closed, and an AMQP client still connects."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE_SOCKETS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test process may open only {hard} descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    proc = start(tmp_path, preexec_fn=_lower_fd_limit)
    socks = []
    try:
        match = re.search(r"HTTP listeners: at most (\d+) connections, (\d+) file descriptors kept",
                          proc.output())
        assert match, proc.output()
        cap = int(match.group(1))
        assert cap < FD_LIMIT, match.group(0)
        for _ in range(IDLE_SOCKETS):
            socks.append(socket.create_connection(("127.0.0.1", proc.http_port), timeout=5))

        # Everything beyond the cap is refused (in any order); the rest is held.
        closed = set()
        received = {s: bytearray() for s in socks}

        def all_beyond_cap_refused():
            for s in socks:
                if s not in closed and closed_by_peer(s, received[s]):
                    closed.add(s)
            return len(closed) >= IDLE_SOCKETS - cap

        eventually(all_beyond_cap_refused, timeout=30, interval=0.1)
        held = IDLE_SOCKETS - len(closed)
        print(f"fd limit {FD_LIMIT}: {held} idle HTTP sockets held, {len(closed)} refused")
        assert held == cap, (held, cap)
        told = [bytes(received[s]) for s in closed if received[s]]
        assert told and all(t.startswith(b"HTTP/1.1 503") for t in told), told[:3]

        # AMQP still connects, and works.
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=proc.port, connection_attempts=1, socket_timeout=5,
            stack_timeout=10, credentials=pika.PlainCredentials("guest", "guest")))
        try:
            ch = conn.channel()
            name = uniq("q")
            ch.queue_declare(name, auto_delete=True)
            ch.basic_publish("", name, b"still here")
            assert ch.basic_get(name, auto_ack=True)[2] == b"still here"
        finally:
            conn.close()

        # Freeing the HTTP sockets frees the slots.
        for s in socks:
            s.close()
        socks.clear()

        def http_works():
            try:
                return request(proc.http_port, "GET", "/api/overview").status == 200
            except OSError:
                return False

        eventually(http_works, timeout=10, interval=0.1)
    finally:
        for s in socks:
            s.close()
        proc.terminate()


def test_descriptor_reserve_refuses_http_before_amqp(tmp_path):
    """With 1024 descriptors mostly taken by AMQP sockets, a new HTTP
    connection is refused (503) while a new AMQP client still connects."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = FD_LIMIT + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test process may open only {hard} descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    proc = start(tmp_path, preexec_fn=_lower_fd_limit)
    socks = []
    try:
        match = re.search(r"(\d+) file descriptors kept for AMQP", proc.output())
        assert match, proc.output()
        reserve = int(match.group(1))
        # AMQP sockets (before their handshake: 10 s to send the header) until fewer than the
        # reserve descriptors are left.
        target = FD_LIMIT - reserve + 20
        for _ in range(target):
            socks.append(socket.create_connection(("127.0.0.1", proc.port), timeout=5))
        fd_dir = f"/proc/{proc.proc.pid}/fd"
        eventually(lambda: len(os.listdir(fd_dir)) >= target, timeout=10, interval=0.05)

        reply = request(proc.http_port, "GET", "/api/overview")
        assert reply.status == 503 and reply.json["error"] == "service_unavailable", reply

        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=proc.port, connection_attempts=1, socket_timeout=5,
            stack_timeout=10, credentials=pika.PlainCredentials("guest", "guest")))
        conn.close()

        for s in socks:
            s.close()
        socks.clear()

        def http_works():
            try:
                return request(proc.http_port, "GET", "/api/overview").status == 200
            except OSError:
                return False

        eventually(http_works, timeout=10, interval=0.1)
    finally:
        for s in socks:
            s.close()
        proc.terminate()


# --------------------------------------------------------------------------
# Cross-site requests (item 7)
# --------------------------------------------------------------------------

FORGED = [
    pytest.param("text/plain", id="text-plain"),
    pytest.param("text/plain;charset=UTF-8", id="text-plain-charset"),
    pytest.param("application/x-www-form-urlencoded", id="form"),
    pytest.param("multipart/form-data; boundary=x", id="multipart"),
    pytest.param(None, id="no-content-type"),
]


def assert_415(reply):
    assert reply.status == 415, reply
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    assert reply.json["error"] == "unsupported_media_type", reply
    assert reply.json["reason"], reply


@pytest.mark.parametrize("ctype", FORGED)
def test_definitions_import_refuses_non_json_bodies(warren, ctype):
    user = uniq("admin")
    defs = {"users": [{"name": user, "password": "pw", "tags": "administrator"}],
            "permissions": [{"user": user, "vhost": "/", "configure": ".*", "write": ".*",
                             "read": ".*"}]}
    assert_415(request(warren.http_port, "POST", "/api/definitions",
                       json.dumps(defs).encode(), ctype))
    assert request(warren.http_port, "GET", f"/api/users/{q(user)}").status == 404
    # The same document as JSON is imported: the check is the content type alone.
    reply = send_json(warren.http_port, "POST", "/api/definitions", defs)
    assert reply.status == 204, reply
    assert request(warren.http_port, "DELETE", f"/api/users/{q(user)}").status == 204


@pytest.mark.parametrize("ctype", FORGED)
def test_queue_put_refuses_non_json_bodies(warren, ctype):
    name = uniq("q")
    assert_415(request(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}",
                       b'{"durable": true}', ctype))
    assert request(warren.http_port, "GET", f"/api/queues/{ROOT}/{q(name)}").status == 404


@pytest.mark.parametrize("ctype", FORGED)
def test_publish_refuses_non_json_bodies(warren, ctype):
    name = uniq("q")
    assert send_json(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}",
                     {"auto_delete": False}).status == 201
    try:
        body = json.dumps({"routing_key": name, "payload": "forged", "payload_encoding": "string",
                           "properties": {}}).encode()
        assert_415(request(warren.http_port, "POST", "/api/exchanges/%2F/amq.default/publish",
                           body, ctype))
        got = send_json(warren.http_port, "POST", f"/api/queues/{ROOT}/{q(name)}/get",
                        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert got.status == 200 and got.json == [], got
    finally:
        request(warren.http_port, "DELETE", f"/api/queues/{ROOT}/{q(name)}")


def test_json_with_parameters_and_bodiless_calls_still_work(warren):
    name = uniq("q")
    reply = request(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}",
                    b'{"durable": false}', "application/json; charset=utf-8")
    assert reply.status == 201, reply
    # No body, no Content-Type: DELETE, and PUT /api/vhosts/x (RabbitMQ takes it empty).
    assert request(warren.http_port, "DELETE", f"/api/queues/{ROOT}/{q(name)}").status == 204
    vhost = uniq("vhost")
    assert request(warren.http_port, "PUT", f"/api/vhosts/{q(vhost)}", b"", None).status == 201
    assert request(warren.http_port, "PUT", f"/api/vhosts/{q(vhost)}", b"",
                   "text/plain").status == 204
    assert request(warren.http_port, "DELETE", f"/api/vhosts/{q(vhost)}").status == 204


def test_no_cors_headers(warren):
    evil = {"Origin": "http://evil.example"}
    for reply in (
        request(warren.http_port, "GET", "/api/overview", headers=evil),
        request(warren.http_port, "GET", "/", headers=evil),
        request(warren.http_port, "OPTIONS", "/api/definitions",
                headers={**evil, "Access-Control-Request-Method": "POST"}),
        request(warren.http_port, "POST", "/api/definitions", b"{}", "text/plain", headers=evil),
    ):
        names = {k.lower() for k in reply.headers.keys()}
        assert not any(n.startswith("access-control-") for n in names), (reply, names)


# --------------------------------------------------------------------------
# Wrong JSON types (item 8)
# --------------------------------------------------------------------------

def assert_400(reply, field):
    assert reply.status == 400, reply
    assert reply.json["error"] == "bad_request", reply
    assert field in reply.json["reason"], reply


@pytest.mark.parametrize("body,field", [
    ({"durable": "yes"}, "durable"),
    ({"auto_delete": 1}, "auto_delete"),
    ({"arguments": "x"}, "arguments"),
    ({"durable": True, "arguments": ["x-max-length", 1]}, "arguments"),
])
def test_queue_put_refuses_wrong_types(warren, body, field):
    name = uniq("q")
    assert_400(send_json(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}", body), field)
    assert request(warren.http_port, "GET", f"/api/queues/{ROOT}/{q(name)}").status == 404


@pytest.mark.parametrize("body,field", [
    ({"type": "fanout", "durable": "yes"}, "durable"),
    ({"type": "fanout", "internal": 0}, "internal"),
    ({"type": 7}, "type"),
    ({"type": "direct", "arguments": "x"}, "arguments"),
])
def test_exchange_put_refuses_wrong_types(warren, body, field):
    name = uniq("x")
    assert_400(send_json(warren.http_port, "PUT", f"/api/exchanges/{ROOT}/{q(name)}", body), field)
    assert request(warren.http_port, "GET", f"/api/exchanges/{ROOT}/{q(name)}").status == 404


@pytest.mark.parametrize("props,field", [
    ({"delivery_mode": 300}, "delivery_mode"),
    ({"delivery_mode": "persistent"}, "delivery_mode"),
    ({"priority": 256}, "priority"),
    ({"headers": "x"}, "headers"),
    ({"content_type": 5}, "content_type"),
])
def test_publish_refuses_wrong_types(warren, props, field):
    name = uniq("q")
    assert send_json(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}", {}).status == 201
    try:
        reply = send_json(warren.http_port, "POST", "/api/exchanges/%2F/amq.default/publish",
                          {"routing_key": name, "payload": "x", "payload_encoding": "string",
                           "properties": props})
        assert_400(reply, field)
        got = send_json(warren.http_port, "POST", f"/api/queues/{ROOT}/{q(name)}/get",
                        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert got.status == 200 and got.json == [], got
    finally:
        request(warren.http_port, "DELETE", f"/api/queues/{ROOT}/{q(name)}")


def test_rabbitmqadmin_string_forms_are_accepted(warren):
    """rabbitmq-compat: RabbitMQ takes "true"/"false" and numeric strings
    (rabbitmqadmin sends them); they mean what they say."""
    name = uniq("q")
    reply = send_json(warren.http_port, "PUT", f"/api/queues/{ROOT}/{q(name)}",
                      {"durable": "true", "auto_delete": "false"})
    assert reply.status == 201, reply
    try:
        info = request(warren.http_port, "GET", f"/api/queues/{ROOT}/{q(name)}").json
        assert info["durable"] is True and info["auto_delete"] is False, info
        reply = send_json(warren.http_port, "POST", "/api/exchanges/%2F/amq.default/publish",
                          {"routing_key": name, "payload": "p", "payload_encoding": "string",
                           "properties": {"delivery_mode": "2"}})
        assert reply.status == 200 and reply.json == {"routed": True}, reply
        got = send_json(warren.http_port, "POST", f"/api/queues/{ROOT}/{q(name)}/get",
                        {"count": "1", "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert got.status == 200 and got.json[0]["properties"]["delivery_mode"] == 2, got
    finally:
        request(warren.http_port, "DELETE", f"/api/queues/{ROOT}/{q(name)}")
