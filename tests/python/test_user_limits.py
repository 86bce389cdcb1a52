"""Per-user limits (RabbitMQ 3.10's ``user_limits`` feature flag): ``max-connections`` and
``max-channels``, set over the HTTP API (``PUT /api/user-limits/{user}/{name}`` with
``{"value": N}``, ``DELETE`` to clear) and with ``rabbitmqctl set_user_limits``.

What RabbitMQ 3.10.8 does, and these tests pin:

* A connection beyond ``max-connections`` is refused at ``connection.open`` with
  ``530 NOT_ALLOWED - connection refused for user 'U': user connection limit (N) is reached``;
  the user's connections are counted over every vhost, other users are not affected, and what
  is already open stays open (also when the limit is lowered below it).
* A channel beyond ``max-channels`` closes the *connection* that opened it (``connection.close``,
  not ``channel.close``) with ``530 NOT_ALLOWED - number of channels opened for user 'U' has
  reached the maximum allowed user limit of (N)``; the count is per user, over all of the user's
  connections (and vhosts); the user's other connections stay open.
* A negative value means no limit; 0 refuses every connection (every channel).
* ``GET /api/user-limits[/{user}]`` lists ``[{"user": U, "value": {name: N, ...}}]``, only users
  that have a limit; ``GET /api/users/{user}``, ``GET /api/users`` and ``GET /api/definitions``
  (``users[]``) carry a ``limits`` object (``{}`` when none); an imported user's ``limits`` are
  applied; deleting the user deletes its limits.

Every test creates its own user (and removes it), so the file runs against RabbitMQ too
(``AMQP_URL`` and ``MGMT_URL``); the ``warren ctl`` test runs against Warren only.
"""

import json
import os
import subprocess
import urllib.parse
import uuid

import pika
import pika.exceptions
import pytest

from conftest import close_all, eventually, warren_binary
from http_fixtures import api  # noqa: F401 (fixture)

PASSWORD = "user-limits-pw"
ALL = {"configure": ".*", "write": ".*", "read": ".*"}


def q(name):
    return urllib.parse.quote(name, safe="")



def make_user(api, broker, tags=""):
    name = f"ulimits-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/users/{name}", {"password": PASSWORD, "tags": tags}).status in (201, 204)
    assert api.put(f"/api/permissions/{q(broker.vhost)}/{name}", ALL).status in (201, 204)
    return name


@pytest.fixture
def user(api, broker):
    name = make_user(api, broker)
    yield name
    api.delete(f"/api/users/{name}")


@pytest.fixture
def connect_as(broker, user):
    """Factory: a connection as ``user`` (keywords override the parameters); all are closed
    after the test, before the user is deleted."""
    opened = []

    def make(**overrides):
        settings = dict(credentials=pika.PlainCredentials(user, PASSWORD))
        settings.update(overrides)
        conn = pika.BlockingConnection(broker.params(**settings))
        opened.append(conn)
        return conn

    yield make
    close_all(opened)


def connection_refused_text(user, limit):
    return (f"(530) \"NOT_ALLOWED - connection refused for user '{user}': "
            f"user connection limit ({limit}) is reached\"")


def channel_refused_text(user, limit):
    return (f"NOT_ALLOWED - number of channels opened for user '{user}' has reached "
            f"the maximum allowed user limit of ({limit})")


def assert_connection_refused(connect_as, user, limit):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect_as()
    assert connection_refused_text(user, limit) in str(info.value), str(info.value)


def assert_channel_refused(conn, user, limit):
    """Opening one more channel on ``conn`` closes the whole connection with a 530."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel()
    assert (info.value.reply_code, info.value.reply_text) == (530, channel_refused_text(user, limit))
    assert conn.is_closed


def assert_usable(conn):
    """A round trip on a new channel of ``conn``."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    ch.close()


def assert_usable_channel(ch):
    ch.basic_qos(prefetch_count=1)
    assert ch.is_open


def set_limit(api, user, name, value):
    reply = api.put(f"/api/user-limits/{q(user)}/{name}", {"value": value})
    assert reply.status == 204, reply


def eventually_connects(connect_as):
    """A new connection succeeds (polling: a closed connection may be uncounted a moment
    after its close-ok)."""
    def attempt():
        try:
            return connect_as()
        except pika.exceptions.ProbableAccessDeniedError:
            return None
    return eventually(attempt)


# --------------------------------------------------------------------------
# max-connections
# --------------------------------------------------------------------------

def test_connection_limit_refuses_connections_beyond_it(api, broker, user, connect_as):
    set_limit(api, user, "max-connections", 2)
    first, second = connect_as(), connect_as()
    assert_connection_refused(connect_as, user, 2)
    # What is open stays open and usable.
    assert first.is_open and second.is_open
    assert_usable(first)
    assert_usable(second)
    # Only this user is limited.
    guest = pika.BlockingConnection(broker.params())
    guest.close()
    # A place freed by a close is taken again.
    first.close()
    eventually_connects(connect_as)
    assert_connection_refused(connect_as, user, 2)
    # A negative value means no limit.
    set_limit(api, user, "max-connections", -1)
    for _ in range(3):
        connect_as()
    assert second.is_open


def test_connection_limit_counts_the_users_connections_in_every_vhost(api, broker, user, connect_as):
    other = f"ulimits-vhost-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/vhosts/{other}", {}).status in (201, 204)
    try:
        assert api.put(f"/api/permissions/{other}/{q(user)}", ALL).status in (201, 204)
        set_limit(api, user, "max-connections", 1)
        first = connect_as()
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
            connect_as(virtual_host=other)
        assert connection_refused_text(user, 1) in str(info.value), str(info.value)
        first.close()
        conn = eventually(lambda: _try_connect(connect_as, virtual_host=other))
        assert_usable(conn)
        conn.close()
    finally:
        api.delete(f"/api/vhosts/{other}")


def _try_connect(connect_as, **overrides):
    try:
        return connect_as(**overrides)
    except pika.exceptions.ProbableAccessDeniedError:
        return None


def test_connection_limit_zero_refuses_every_connection_and_keeps_open_ones(api, user, connect_as):
    existing = connect_as()
    # Lowered below what is open: nothing is closed, new ones are refused.
    set_limit(api, user, "max-connections", 0)
    assert_connection_refused(connect_as, user, 0)
    assert existing.is_open
    assert_usable(existing)
    existing.close()
    assert_connection_refused(connect_as, user, 0)
    # Cleared: connections are accepted again.
    assert api.delete(f"/api/user-limits/{q(user)}/max-connections").status == 204
    assert_usable(eventually_connects(connect_as))


# --------------------------------------------------------------------------
# max-channels
# --------------------------------------------------------------------------

def test_channel_limit_is_per_user_across_connections_and_closes_the_connection(api, user, connect_as):
    set_limit(api, user, "max-channels", 2)
    a, b = connect_as(), connect_as()
    a1 = a.channel()
    b1 = b.channel()
    # The third channel of the user (the second of ``b``) is refused: connection.close 530.
    assert_channel_refused(b, user, 2)
    # The user's other connection and its channel are untouched.
    assert a.is_open
    assert_usable_channel(a1)
    # ``b``'s channel went with it: a new connection may open one channel again, not two.
    def one_more_channel():
        try:
            c = connect_as()
            return c, c.channel()
        except pika.exceptions.ConnectionClosedByBroker:
            return None
    c, c1 = eventually(one_more_channel)
    assert_usable_channel(c1)
    assert_channel_refused(c, user, 2)
    assert a.is_open and a1.is_open
    # Closing a channel frees its place too (a fresh connection per attempt: a refusal closes it).
    a1.close()
    d, d1 = eventually(one_more_channel)
    assert_usable_channel(d1)
    assert b1.is_closed


def test_channel_limit_counts_the_users_channels_in_every_vhost(api, user, connect_as):
    other = f"ulimits-vhost-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/vhosts/{other}", {}).status in (201, 204)
    try:
        assert api.put(f"/api/permissions/{other}/{q(user)}", ALL).status in (201, 204)
        set_limit(api, user, "max-channels", 1)
        a = connect_as()
        a1 = a.channel()
        b = connect_as(virtual_host=other)   # connections are not limited, channels are
        assert_channel_refused(b, user, 1)
        assert_usable_channel(a1)
        a.close()
    finally:
        api.delete(f"/api/vhosts/{other}")


def test_channel_limit_keeps_open_channels_and_zero_refuses_any(api, user, connect_as):
    conn = connect_as()
    channels = [conn.channel() for _ in range(3)]
    # Lowered below what is open: the open channels stay, a new one is refused.
    set_limit(api, user, "max-channels", 1)
    for ch in channels:
        assert_usable_channel(ch)
    assert_channel_refused(conn, user, 1)
    # 0: a connection is accepted, but not one channel on it.
    set_limit(api, user, "max-channels", 0)
    conn = eventually_connects(connect_as)
    assert_channel_refused(conn, user, 0)
    # Negative: no limit.
    set_limit(api, user, "max-channels", -1)
    conn = eventually_connects(connect_as)
    for ch in [conn.channel() for _ in range(5)]:
        assert_usable_channel(ch)


# --------------------------------------------------------------------------
# HTTP API
# --------------------------------------------------------------------------

def limits_rows(api, path):
    reply = api.get(path)
    assert reply.status == 200, reply
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    return reply.json


def definitions_user(api, user):
    users = api.ok("/api/definitions")["users"]
    found = [u for u in users if u["name"] == user]
    assert len(found) == 1, users
    return found[0]


def test_http_api_lists_limits_on_the_user_and_in_the_definitions(api, broker, user):
    path = f"/api/user-limits/{q(user)}"
    assert limits_rows(api, path) == []
    assert api.ok(f"/api/users/{q(user)}")["limits"] == {}
    assert definitions_user(api, user)["limits"] == {}
    set_limit(api, user, "max-connections", 2)
    set_limit(api, user, "max-channels", 3)
    expected = {"user": user, "value": {"max-channels": 3, "max-connections": 2}}
    assert limits_rows(api, path) == [expected]
    every = limits_rows(api, "/api/user-limits")
    assert [row for row in every if row["user"] == user] == [expected]
    # Only users with a limit are listed.
    assert all(row["value"] for row in every), every
    assert set(every[0]) == {"user", "value"}
    # The user's own objects carry them, and so do the definitions (not as parameters).
    assert api.ok(f"/api/users/{q(user)}")["limits"] == expected["value"]
    assert [u["limits"] for u in api.ok("/api/users") if u["name"] == user] == [expected["value"]]
    assert definitions_user(api, user)["limits"] == expected["value"]
    params = api.ok("/api/definitions")["parameters"]
    assert not [p for p in params if user in json.dumps(p)], params
    # Updating the user (tags, password) keeps its limits.
    assert api.put(f"/api/users/{q(user)}", {"password": PASSWORD, "tags": "monitoring"}).status == 204
    assert limits_rows(api, path) == [expected]
    # Setting one again replaces only that one; deleting one leaves the other.
    set_limit(api, user, "max-connections", 5)
    assert limits_rows(api, path) == [{"user": user, "value": {"max-channels": 3, "max-connections": 5}}]
    assert api.delete(f"{path}/max-channels").status == 204
    assert limits_rows(api, path) == [{"user": user, "value": {"max-connections": 5}}]
    assert api.delete(f"{path}/max-connections").status == 204
    assert limits_rows(api, path) == []
    assert api.ok(f"/api/users/{q(user)}")["limits"] == {}
    # Deleting a limit that is not set is fine.
    assert api.delete(f"{path}/max-connections").status == 204


def test_http_api_errors(api, user):
    missing = f"ulimits-missing-{uuid.uuid4().hex[:8]}"
    reply = api.get(f"/api/user-limits/{missing}")
    assert (reply.status, reply.json) == (404, {"error": "Object Not Found", "reason": "Not Found"})
    reply = api.put(f"/api/user-limits/{missing}/max-connections", {"value": 2})
    assert (reply.status, reply.json) == (400, {"error": "bad_request", "reason": ["no_such_user", missing]})
    path = f"/api/user-limits/{q(user)}"
    cases = [
        ("max-queues", {"value": 2}, 'Unrecognised terms [{<<"max-queues">>,2}] in user-limits'),
        ("max-connections", {"value": "x"}, 'max-connections should be a number, actually was <<"x">>'),
        ("max-channels", {"value": "3"}, 'max-channels should be a number, actually was <<"3">>'),
        ("max-connections", {"value": 1.5}, "max-connections should be a number, actually was 1.5"),
        ("max-connections", {}, "[{key_missing,value}]"),
    ]
    for name, body, reason in cases:
        reply = api.put(f"{path}/{name}", body)
        assert (reply.status, reply.json) == (400, {"error": "bad_request", "reason": reason}), (name, body)
    assert limits_rows(api, path) == []


def test_management_users_read_limits_only_administrators_change_them(api, broker, user):
    set_limit(api, user, "max-channels", 4)
    reader = make_user(api, broker, tags="management")
    try:
        as_reader = api.as_user(reader, PASSWORD)
        expected = [{"user": user, "value": {"max-channels": 4}}]
        assert limits_rows(as_reader, f"/api/user-limits/{q(user)}") == expected
        assert [r for r in limits_rows(as_reader, "/api/user-limits") if r["user"] == user] == expected
        refused = {"error": "not_authorised", "reason": "Not administrator user"}
        reply = as_reader.put(f"/api/user-limits/{q(reader)}/max-channels", {"value": 10})
        assert (reply.status, reply.json) == (401, refused)
        reply = as_reader.delete(f"/api/user-limits/{q(user)}/max-channels")
        assert (reply.status, reply.json) == (401, refused)
        assert limits_rows(api, f"/api/user-limits/{q(user)}") == expected
    finally:
        api.delete(f"/api/users/{reader}")


def test_definitions_import_applies_limits_and_deleting_the_user_drops_them(api):
    name = f"ulimits-imported-{uuid.uuid4().hex[:8]}"
    definitions = {"users": [{
        "name": name, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": [], "limits": {"max-connections": 4, "max-channels": 9}}]}
    try:
        reply = api.post("/api/definitions", definitions)
        assert reply.status in (201, 204), reply
        expected = {"max-channels": 9, "max-connections": 4}
        assert limits_rows(api, f"/api/user-limits/{q(name)}") == [{"user": name, "value": expected}]
        assert api.ok(f"/api/users/{q(name)}")["limits"] == expected
    finally:
        assert api.delete(f"/api/users/{q(name)}").status == 204
    assert [r for r in limits_rows(api, "/api/user-limits") if r["user"] == name] == []
    assert api.get(f"/api/user-limits/{q(name)}").status == 404
    # A user created again under that name starts without limits.
    assert api.put(f"/api/users/{q(name)}", {"password": PASSWORD, "tags": ""}).status == 201
    try:
        assert limits_rows(api, f"/api/user-limits/{q(name)}") == []
    finally:
        api.delete(f"/api/users/{q(name)}")


# --------------------------------------------------------------------------
# rabbitmqctl
# --------------------------------------------------------------------------

def test_rabbitmqctl_set_list_clear_user_limits(api, broker, user):
    if os.environ.get("MGMT_URL"):
        pytest.skip("runs Warren's own rabbitmqctl against a Warren started here")
    ctl = [str(warren_binary()), "ctl", "--port", str(broker.process.http_port)]

    def run(*args):
        return subprocess.run(ctl + list(args), capture_output=True, text=True, timeout=30)

    definition = '{"max-connections": 2, "max-channels": 7}'
    r = run("set_user_limits", user, definition)
    assert r.returncode == 0, r.stderr
    assert f'Setting user limits to "{definition}" for user "{user}" ...' in r.stdout
    assert api.ok(f"/api/user-limits/{q(user)}") == [
        {"user": user, "value": {"max-channels": 7, "max-connections": 2}}]
    # Unlike set_vhost_limits, a definition is merged into the user's limits.
    r = run("set_user_limits", user, '{"max-connections": 5}')
    assert r.returncode == 0, r.stderr
    # RabbitMQ prints a banner then the JSON object; with -q only the object.
    r = run("list_user_limits", "--user", user)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"max-channels": 7, "max-connections": 5}
    r = run("-q", "list_user_limits", "--user", user)
    assert json.loads(r.stdout) == {"max-channels": 7, "max-connections": 5}
    r = run("clear_user_limits", user, "max-channels")
    assert r.returncode == 0, r.stderr
    assert f'Clearing "max-channels" limit for user "{user}" ...' in r.stdout
    assert api.ok(f"/api/user-limits/{q(user)}") == [{"user": user, "value": {"max-connections": 5}}]
    r = run("clear_user_limits", user, "all")
    assert r.returncode == 0, r.stderr
    assert f'Clearing all limits for user "{user}" ...' in r.stdout
    assert api.ok(f"/api/user-limits/{q(user)}") == []
    r = run("-q", "list_user_limits", "--user", user)
    assert json.loads(r.stdout) == {}
    # An unknown user is an error (RabbitMQ: exit 69, "{:no_such_user, \"U\"}" on stderr).
    missing = f"ulimits-missing-{uuid.uuid4().hex[:8]}"
    r = run("set_user_limits", missing, '{"max-connections": 1}')
    assert r.returncode != 0
    assert "no_such_user" in r.stderr and missing in r.stderr, r.stderr
