"""Operator policies (RabbitMQ's "policy overrides"): limits an operator imposes on queues next to,
and over, the users' own policies. Set over the HTTP API (``PUT /api/operator-policies/{vhost}/{name}``
with ``{"pattern", "definition", "priority", "apply-to"}``, ``GET`` / ``DELETE``) and with
``rabbitmqctl set_operator_policy`` / ``clear_operator_policy`` / ``list_operator_policies``.

What RabbitMQ 3.10.8 does, and these tests pin:

* Only seven definition keys are allowed: ``expires``, ``message-ttl``, ``max-length``,
  ``max-length-bytes``, ``delivery-limit``, ``max-in-memory-length``, ``max-in-memory-bytes``
  (non-negative integers; ``expires`` at least 1). Anything else (``dead-letter-exchange``,
  ``alternate-exchange``, ``overflow``, ``ha-mode``, ...) is a 400 ``bad_request`` whose reason
  lists the offending pairs in Erlang terms; a bad value is a 400 naming the value.
* ``PUT`` answers 201 when it creates, 204 when it replaces; ``DELETE`` 204, 404 when absent;
  ``priority`` defaults to 0 and ``apply-to`` to ``"all"``. A row is
  ``{"vhost", "name", "pattern", "apply-to", "definition", "priority"}`` (integers stay integers).
* Only administrators change them, or read a single one: any other user (``policymaker``
  included, though it may set ordinary policies) gets 401 ``Not administrator user``; the
  listings are open to management users for the vhosts they may access.
* A queue gets at most one operator policy (the matching one with the highest priority that
  applies to it) and at most one ordinary policy; for every key both define, and against the
  queue's own ``x-`` argument, the *lower* value wins. ``GET /api/queues/{vhost}/{name}`` shows
  ``operator_policy`` (its name, or null) and ``effective_policy_definition`` (the policy merged
  with the operator policy, lower value per key; queue arguments not included; ``{}`` when none).
  A policy holding ``delivery-limit`` does not apply to a classic queue at all, so the next
  matching one does; an operator policy with ``apply-to: exchanges`` never touches a queue.
* They are exported and imported in the definitions as ``parameters`` of component
  ``operator_policy`` (there is no ``operator_policies`` key, and they are not in ``policies``).

Warren applies policies when a queue is declared, so every test sets the operator policy first
and declares the queues after it. Each test uses a fresh vhost (the ``vhost`` fixture), so the file
passes against RabbitMQ 3.10.8 (``AMQP_URL`` and ``MGMT_URL``) and Warren; the ``warren ctl`` test
runs against Warren only. Against RabbitMQ, ``test_queue_shows_operator_policy_and_merged_definition``
waits for the queue's first statistics emission (``collect_statistics_interval``, 5 s): RabbitMQ
only reports a queue's policies with its statistics.
"""

import json
import os
import subprocess
import urllib.parse
import uuid

import pika
import pytest

from conftest import close_all, drain, eventually, ready_count, warren_binary
from http_fixtures import api, vhost  # noqa: F401 (fixtures)

PASSWORD = "operator-policies-pw"
ALL = {"configure": ".*", "write": ".*", "read": ".*"}
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
NOT_ADMIN = {"error": "not_authorised", "reason": "Not administrator user"}


def q(name):
    return urllib.parse.quote(name, safe="")


def canon(value):
    """JSON text with sorted keys: equal only if the types are equal too (2 is not 2.0)."""
    return json.dumps(value, sort_keys=True)


def by_name(rows):
    return sorted(rows, key=lambda row: row["name"])


def op_path(vhost, name=None):
    path = f"/api/operator-policies/{q(vhost)}"
    return path if name is None else f"{path}/{q(name)}"


def set_op(api, vhost, name, pattern, definition, priority=0, apply_to="queues"):
    body = {"pattern": pattern, "definition": definition, "priority": priority, "apply-to": apply_to}
    reply = api.put(op_path(vhost, name), body)
    assert reply.status == 201, reply


def set_policy(api, vhost, name, pattern, definition, priority=0):
    body = {"pattern": pattern, "definition": definition, "priority": priority, "apply-to": "queues"}
    reply = api.put(f"/api/policies/{q(vhost)}/{q(name)}", body)
    assert reply.status == 201, reply


def row(vhost, name, pattern, definition, priority=0, apply_to="queues"):
    return {"vhost": vhost, "name": name, "pattern": pattern, "apply-to": apply_to,
            "definition": definition, "priority": priority}


def bad_request(api, vhost, body, reason, name="refused"):
    """A PUT of ``body`` is refused with 400 ``reason`` and creates nothing."""
    reply = api.put(op_path(vhost, name), body)
    assert (reply.status, reply.json) == (400, {"error": "bad_request", "reason": reason}), (body, reply)
    assert api.get(op_path(vhost, name)).status == 404


@pytest.fixture
def conn(broker, vhost):
    """A connection to the test's vhost (closed before the vhost is deleted)."""
    c = pika.BlockingConnection(broker.params(virtual_host=vhost))
    yield c
    close_all([c])


def declare(conn, name, arguments=None):
    ch = conn.channel()
    ch.queue_declare(name, arguments=arguments)
    ch.close()


def publish_confirmed(conn, queue, count):
    """Publish bodies b"0" .. b"{count-1}" with publisher confirms (each one acked)."""
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(count):
        ch.basic_publish("", queue, str(i).encode())
    ch.close()


def bodies(conn, queue):
    ch = conn.channel()
    got = [body for _, body in drain(ch, queue)]
    ch.close()
    return got


# --------------------------------------------------------------------------
# HTTP API: create, list, update, delete
# --------------------------------------------------------------------------

def test_http_api_create_update_list_and_delete(api, vhost):
    path = op_path(vhost, "limits")
    body = {"pattern": "^op\\.", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"}
    reply = api.put(path, body)
    assert (reply.status, reply.raw) == (201, b""), reply
    expected = row(vhost, "limits", "^op\\.", {"max-length": 2}, priority=1)
    got = api.ok(path)
    assert canon(got) == canon(expected), got
    assert sorted(got) == sorted(["vhost", "name", "pattern", "apply-to", "definition", "priority"])
    # The same again, then changed: 204 both times.
    assert api.put(path, body).status == 204
    body = {"pattern": "^op\\.", "definition": {"max-length": 3, "message-ttl": 60000},
            "priority": 4, "apply-to": "queues"}
    reply = api.put(path, body)
    assert (reply.status, reply.raw) == (204, b""), reply
    expected = row(vhost, "limits", "^op\\.", {"max-length": 3, "message-ttl": 60000}, priority=4)
    assert canon(api.ok(path)) == canon(expected)
    # Only pattern and definition are required: priority 0, apply-to "all".
    assert api.put(op_path(vhost, "bare"), {"pattern": "^b", "definition": {"expires": 1000}}).status == 201
    bare = row(vhost, "bare", "^b", {"expires": 1000}, priority=0, apply_to="all")
    assert canon(api.ok(op_path(vhost, "bare"))) == canon(bare)
    # Listings: per vhost and over all vhosts.
    assert canon(by_name(api.ok(op_path(vhost)))) == canon([bare, expected])
    everywhere = [r for r in api.ok("/api/operator-policies") if r["vhost"] == vhost]
    assert canon(by_name(everywhere)) == canon([bare, expected])
    # They are not ordinary policies.
    assert api.ok(f"/api/policies/{q(vhost)}") == []
    # Delete: 204, then 404; a missing one reads as 404.
    reply = api.delete(path)
    assert (reply.status, reply.raw) == (204, b""), reply
    reply = api.delete(path)
    assert (reply.status, reply.json) == (404, NOT_FOUND)
    reply = api.get(path)
    assert (reply.status, reply.json) == (404, NOT_FOUND)
    assert canon(api.ok(op_path(vhost))) == canon([bare])


def test_http_api_unknown_vhost(api, vhost):
    missing = f"operator-policies-missing-{uuid.uuid4().hex[:8]}"
    reply = api.get(op_path(missing))
    assert (reply.status, reply.json) == (404, NOT_FOUND)
    reply = api.get(op_path(missing, "x"))
    assert (reply.status, reply.json) == (404, NOT_FOUND)
    reply = api.put(op_path(missing, "x"), {"pattern": "^x", "definition": {"max-length": 1}})
    assert (reply.status, reply.json) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    assert [r for r in api.ok("/api/operator-policies") if r["vhost"] == missing] == []


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

ACCEPTED = [
    {"expires": 1000},
    {"message-ttl": 1000},
    {"message-ttl": 0},
    {"max-length": 3},
    {"max-length": 0},
    {"max-length-bytes": 100},
    {"delivery-limit": 3},
    {"max-in-memory-length": 3},
    {"max-in-memory-bytes": 100},
    {"expires": 1000, "message-ttl": 1000, "max-length": 3, "max-length-bytes": 100,
     "delivery-limit": 3, "max-in-memory-length": 3, "max-in-memory-bytes": 100},
]


def test_accepted_definition_keys(api, vhost):
    for definition in ACCEPTED:
        path = op_path(vhost, "accepted")
        assert api.put(path, {"pattern": "^a", "definition": definition, "apply-to": "queues"}).status == 201, \
            definition
        assert canon(api.ok(path)["definition"]) == canon(definition)
        assert api.delete(path).status == 204


def not_recognised(pairs):
    return f"Validation failed\n\n[{pairs}] are not recognised policy settings\n"


def test_keys_not_allowed_in_operator_policies_are_refused(api, vhost):
    cases = [
        ({"dead-letter-exchange": "dlx"}, '{<<"dead-letter-exchange">>,<<"dlx">>}'),
        ({"dead-letter-routing-key": "k"}, '{<<"dead-letter-routing-key">>,<<"k">>}'),
        ({"alternate-exchange": "ae"}, '{<<"alternate-exchange">>,<<"ae">>}'),
        ({"overflow": "reject-publish"}, '{<<"overflow">>,<<"reject-publish">>}'),
        ({"ha-mode": "all"}, '{<<"ha-mode">>,<<"all">>}'),
        ({"queue-mode": "lazy"}, '{<<"queue-mode">>,<<"lazy">>}'),
        ({"queue-version": 2}, '{<<"queue-version">>,2}'),
        ({"no-such-key": 1}, '{<<"no-such-key">>,1}'),
        # One allowed key does not carry the others; all the offenders are listed, sorted.
        ({"max-length": 2, "dead-letter-exchange": "dlx"}, '{<<"dead-letter-exchange">>,<<"dlx">>}'),
        ({"overflow": "drop-head", "alternate-exchange": "ae"},
         '{<<"alternate-exchange">>,<<"ae">>},{<<"overflow">>,<<"drop-head">>}'),
    ]
    for definition, pairs in cases:
        bad_request(api, vhost, {"pattern": "^x", "definition": definition, "apply-to": "queues"},
                    not_recognised(pairs))
    # The same keys are fine in an ordinary policy.
    set_policy(api, vhost, "ordinary", "^x", {"dead-letter-exchange": "dlx", "overflow": "reject-publish"})
    assert api.ok(op_path(vhost)) == []


def test_bad_values_and_bodies_are_refused(api, vhost):
    def invalid(text):
        return f"Validation failed\n\n{text}\n"

    values = [
        ({"expires": 0}, "0 is not a valid queue expiry"),
        ({"expires": -1}, "-1 is not a valid queue expiry"),
        ({"expires": "x"}, '<<"x">> is not a valid queue expiry'),
        ({"expires": True}, "true is not a valid queue expiry"),
        ({"message-ttl": -1}, "-1 is not a valid message TTL"),
        ({"message-ttl": "1000"}, '<<"1000">> is not a valid message TTL'),
        ({"max-length": -1}, "-1 is not a valid maximum length"),
        ({"max-length": 1.5}, "1.5 is not a valid maximum length"),
        ({"max-length": "x"}, '<<"x">> is not a valid maximum length'),
        ({"max-length-bytes": -1}, "-1 is not a valid maximum length in bytes"),
        ({"delivery-limit": -1}, "-1 is not a valid delivery limit"),
        ({"delivery-limit": "x"}, '<<"x">> is not a valid delivery limit'),
        # (sic: RabbitMQ names both in-memory limits "maximum memory in bytes")
        ({"max-in-memory-length": -1}, "-1 is not a valid maximum memory in bytes"),
        ({"max-in-memory-bytes": "x"}, '<<"x">> is not a valid maximum memory in bytes'),
        # A bad value of an allowed key is reported before an unknown key.
        ({"max-length": "x", "no-such-key": 1}, '<<"x">> is not a valid maximum length'),
        ({}, "no policy provided"),
    ]
    for definition, text in values:
        bad_request(api, vhost, {"pattern": "^x", "definition": definition, "apply-to": "queues"}, invalid(text))
    body = {"pattern": "^x", "definition": {"max-length": 1}}
    bad_request(api, vhost, {**body, "apply-to": "bogus"},
                invalid("apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'"))
    bad_request(api, vhost, {**body, "priority": "3"}, invalid('priority should be a number, actually was <<"3">>'))
    bad_request(api, vhost, {"definition": {"max-length": 1}}, "[{key_missing,pattern}]")
    bad_request(api, vhost, {"pattern": "^x"}, "[{key_missing,definition}]")
    reply = api.put(op_path(vhost, "refused"), {**body, "pattern": "("})
    assert reply.status == 400, reply
    assert reply.json["error"] == "bad_request"
    assert reply.json["reason"].startswith(
        "Validation failed\n\npattern should be regular expression but is invalid: "), reply.json
    assert api.ok(op_path(vhost)) == []


# --------------------------------------------------------------------------
# Who may set them
# --------------------------------------------------------------------------

@pytest.fixture
def make_user(api):
    created = []

    def make(tags, vhost=None):
        name = f"oppol-{tags or 'none'}-{uuid.uuid4().hex[:8]}"
        assert api.put(f"/api/users/{name}", {"password": PASSWORD, "tags": tags}).status == 201
        created.append(name)
        if vhost is not None:
            assert api.put(f"/api/permissions/{q(vhost)}/{name}", ALL).status == 201
        return api.as_user(name, PASSWORD)

    yield make
    for name in created:
        api.delete(f"/api/users/{name}")


def test_only_administrators_change_operator_policies(api, vhost, make_user):
    set_op(api, vhost, "limits", "^op\\.", {"max-length": 2})
    listed = [row(vhost, "limits", "^op\\.", {"max-length": 2})]
    body = {"pattern": "^x", "definition": {"max-length": 1}, "apply-to": "queues"}
    for tags in ("policymaker", "management"):
        other = make_user(tags, vhost)
        for reply in (other.put(op_path(vhost, "mine"), body),
                      other.put(op_path(vhost, "limits"), body),
                      other.delete(op_path(vhost, "limits")),
                      other.get(op_path(vhost, "limits"))):
            assert (reply.status, reply.json) == (401, NOT_ADMIN), (tags, reply)
        # They may read the listings of the vhosts they can access.
        assert canon(other.ok(op_path(vhost))) == canon(listed), tags
        assert canon([r for r in other.ok("/api/operator-policies") if r["vhost"] == vhost]) == canon(listed)
    # A policymaker sets ordinary policies, just not operator ones.
    policymaker = make_user("policymaker", vhost)
    assert policymaker.put(f"/api/policies/{q(vhost)}/mine", body).status == 201
    assert policymaker.delete(f"/api/policies/{q(vhost)}/mine").status == 204
    # A management user without access to the vhost sees none of its operator policies.
    outsider = make_user("management")
    reply = outsider.get(op_path(vhost))
    assert (reply.status, reply.json) == (
        401, {"error": "not_authorised", "reason": "User not authorised to access virtual host"})
    assert [r for r in outsider.ok("/api/operator-policies") if r["vhost"] == vhost] == []
    # A user without a management tag may not even list them.
    plain = make_user("", vhost)
    reply = plain.get("/api/operator-policies")
    assert (reply.status, reply.json) == (401, {"error": "not_authorised", "reason": "Not management user"})
    # Nothing changed.
    assert canon(api.ok(op_path(vhost))) == canon(listed)


# --------------------------------------------------------------------------
# Effect on queues declared after the operator policy
# --------------------------------------------------------------------------

def test_max_length_applies_to_matching_queues(api, vhost, conn):
    set_op(api, vhost, "limits", "^op\\.", {"max-length": 2})
    declare(conn, "op.q")
    declare(conn, "plain.q")
    publish_confirmed(conn, "op.q", 5)
    publish_confirmed(conn, "plain.q", 5)
    assert ready_count(conn, "op.q") == 2
    # The default overflow behaviour: the oldest are dropped.
    assert bodies(conn, "op.q") == [b"3", b"4"]
    assert ready_count(conn, "plain.q") == 5


def test_queue_argument_and_operator_policy_the_lower_wins(api, vhost, conn):
    set_op(api, vhost, "limits", "^op\\.", {"max-length": 2})
    declare(conn, "op.arg5", {"x-max-length": 5})
    declare(conn, "op.arg1", {"x-max-length": 1})
    publish_confirmed(conn, "op.arg5", 5)
    publish_confirmed(conn, "op.arg1", 5)
    assert bodies(conn, "op.arg5") == [b"3", b"4"]
    assert bodies(conn, "op.arg1") == [b"4"]


def test_policy_and_operator_policy_the_lower_wins(api, vhost, conn):
    set_op(api, vhost, "limits", "^op\\.", {"max-length": 2})
    set_policy(api, vhost, "generous", "^op\\.high", {"max-length": 4})
    set_policy(api, vhost, "strict", "^op\\.low", {"max-length": 1})
    declare(conn, "op.high")
    declare(conn, "op.low")
    publish_confirmed(conn, "op.high", 5)
    publish_confirmed(conn, "op.low", 5)
    assert bodies(conn, "op.high") == [b"3", b"4"]
    assert bodies(conn, "op.low") == [b"4"]


def test_max_length_bytes_from_an_operator_policy(api, vhost, conn):
    set_op(api, vhost, "bytes", "^op\\.", {"max-length-bytes": 3})
    declare(conn, "op.bytes", {"x-max-length-bytes": 100})
    publish_confirmed(conn, "op.bytes", 5)
    assert bodies(conn, "op.bytes") == [b"2", b"3", b"4"]


def test_message_ttl_from_an_operator_policy_expires_messages(api, vhost, conn):
    set_op(api, vhost, "ttl", "^op\\.", {"message-ttl": 100})
    set_policy(api, vhost, "long-ttl", "^op\\.pol", {"message-ttl": 600000})
    declare(conn, "op.arg", {"x-message-ttl": 600000})
    declare(conn, "op.pol")
    declare(conn, "plain.q")
    for queue in ("op.arg", "op.pol", "plain.q"):
        publish_confirmed(conn, queue, 2)
    # The operator's 100 ms beats both the argument's and the policy's 10 minutes.
    eventually(lambda: ready_count(conn, "op.arg") == 0 and ready_count(conn, "op.pol") == 0,
               timeout=2, interval=0.05)
    assert ready_count(conn, "plain.q") == 2


def test_expires_from_an_operator_policy_deletes_unused_queues(api, vhost, conn):
    set_op(api, vhost, "expiry", "^op\\.", {"expires": 200})
    declare(conn, "op.exp", {"x-expires": 600000})
    declare(conn, "plain.q")
    # Polled over HTTP: a redeclare would renew the queue's lease.
    eventually(lambda: api.get(f"/api/queues/{q(vhost)}/op.exp").status == 404, timeout=2.5, interval=0.1)
    assert api.get(f"/api/queues/{q(vhost)}/plain.q").status == 200


def test_only_the_highest_priority_operator_policy_applies(api, vhost, conn):
    # Operator policies are not merged with each other: "bytes" (priority 2) wins outright,
    # so "length" (priority 1) sets no max-length.
    set_op(api, vhost, "length", "^op\\.", {"max-length": 1}, priority=1)
    set_op(api, vhost, "bytes", "^op\\.", {"max-length-bytes": 3}, priority=2)
    declare(conn, "op.q")
    publish_confirmed(conn, "op.q", 5)
    assert bodies(conn, "op.q") == [b"2", b"3", b"4"]


def test_operator_policies_that_do_not_apply_to_classic_queues_are_skipped(api, vhost, conn):
    set_op(api, vhost, "fallback", "^op\\.", {"max-length": 3}, priority=1)
    # Higher, but for exchanges only.
    set_op(api, vhost, "exchanges", "^op\\.", {"max-length": 1}, priority=9, apply_to="exchanges")
    # Higher, but a delivery limit does not apply to a classic queue: the whole policy is skipped.
    set_op(api, vhost, "quorum-only", "^op\\.", {"delivery-limit": 5, "max-length": 1}, priority=5)
    declare(conn, "op.q")
    publish_confirmed(conn, "op.q", 5)
    assert bodies(conn, "op.q") == [b"2", b"3", b"4"]


# --------------------------------------------------------------------------
# What the management API shows on a queue
# --------------------------------------------------------------------------

def test_queue_shows_operator_policy_and_merged_definition(api, vhost, conn):
    set_op(api, vhost, "ops", "^op\\.", {"max-length": 2, "message-ttl": 600000})
    set_policy(api, vhost, "pol", "^op\\.pol", {"max-length": 4, "dead-letter-exchange": "dlx", "expires": 900000})
    set_policy(api, vhost, "pol-low", "^op\\.low", {"max-length": 1, "message-ttl": 1000000}, priority=3)
    declare(conn, "op.q")
    declare(conn, "op.arg", {"x-max-length": 5})
    declare(conn, "op.pol")
    declare(conn, "op.low")
    declare(conn, "plain.q")
    expected = {
        "op.q": ({}, None, "ops", {"max-length": 2, "message-ttl": 600000}),
        # The queue's own arguments are not part of the effective policy definition.
        "op.arg": ({"x-max-length": 5}, None, "ops", {"max-length": 2, "message-ttl": 600000}),
        # Keys of either; the lower value where both have one.
        "op.pol": ({}, "pol", "ops",
                   {"dead-letter-exchange": "dlx", "expires": 900000, "max-length": 2, "message-ttl": 600000}),
        "op.low": ({}, "pol-low", "ops", {"max-length": 1, "message-ttl": 600000}),
        "plain.q": ({}, None, None, {}),
    }
    fields = ("arguments", "policy", "operator_policy", "effective_policy_definition")

    def shown(info):
        return canon({f: info.get(f, "<absent>") for f in fields})

    def reported():
        for name, values in expected.items():
            info = api.ok(f"/api/queues/{q(vhost)}/{q(name)}")
            assert shown(info) == canon(dict(zip(fields, values))), (name, info)
        return True

    # RabbitMQ reports policies with the queue's first statistics (up to 5 s after the declare).
    eventually(reported, timeout=10, interval=0.1)
    listed = {info["name"]: shown(info) for info in api.ok(f"/api/queues/{q(vhost)}")}
    assert listed == {name: canon(dict(zip(fields, values))) for name, values in expected.items()}


# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------

def test_definitions_carry_operator_policies_as_parameters(api, vhost, conn):
    set_op(api, vhost, "limits", "^op\\.", {"max-length": 2}, priority=3)
    parameter = {"value": {"pattern": "^op\\.", "definition": {"max-length": 2}, "priority": 3, "apply-to": "queues"},
                 "vhost": vhost, "component": "operator_policy", "name": "limits"}
    exported = api.ok("/api/definitions")
    assert "operator_policies" not in exported
    assert [canon(p) for p in exported["parameters"] if p["vhost"] == vhost] == [canon(parameter)]
    assert [p for p in exported["policies"] if p["vhost"] == vhost] == []
    exported = api.ok(f"/api/definitions/{q(vhost)}")
    assert "operator_policies" not in exported
    assert [canon(p) for p in exported["parameters"]] == [canon(parameter)]
    assert exported["policies"] == []
    assert [canon(p) for p in api.ok(f"/api/parameters/operator_policy/{q(vhost)}")] == [canon(parameter)]
    # Imported the same way, and applied to queues declared afterwards.
    imported = {"parameters": [{
        "value": {"pattern": "^imp\\.", "definition": {"max-length": 1}, "priority": 1, "apply-to": "queues"},
        "vhost": vhost, "component": "operator_policy", "name": "imported"}]}
    reply = api.post("/api/definitions", imported)
    assert reply.status in (201, 204), reply
    assert canon(api.ok(op_path(vhost, "imported"))) == canon(
        row(vhost, "imported", "^imp\\.", {"max-length": 1}, priority=1))
    declare(conn, "imp.q")
    publish_confirmed(conn, "imp.q", 3)
    assert bodies(conn, "imp.q") == [b"2"]
    # An import holding a key operator policies do not allow is refused and adds nothing.
    refused = {"parameters": [{
        "value": {"pattern": "^x", "definition": {"dead-letter-exchange": "dlx"}, "priority": 0, "apply-to": "queues"},
        "vhost": vhost, "component": "operator_policy", "name": "refused"}]}
    reply = api.post("/api/definitions", refused)
    assert reply.status == 400, reply
    assert reply.json["error"] == "bad_request"
    assert "are not recognised policy settings" in reply.json["reason"], reply.json
    assert api.get(op_path(vhost, "refused")).status == 404
    # Deleted, it leaves the definitions.
    assert api.delete(op_path(vhost, "limits")).status == 204
    assert "limits" not in [p["name"] for p in api.ok(f"/api/definitions/{q(vhost)}")["parameters"]]


# --------------------------------------------------------------------------
# rabbitmqctl
# --------------------------------------------------------------------------

def test_rabbitmqctl_operator_policies(api, broker, vhost):
    if os.environ.get("MGMT_URL"):
        pytest.skip("runs Warren's own rabbitmqctl against a Warren started here")
    ctl = [str(warren_binary()), "ctl", "--port", str(broker.process.http_port), "-p", vhost]

    def run(*args):
        return subprocess.run(ctl + list(args), capture_output=True, text=True, timeout=30)

    r = run("set_operator_policy", "--priority", "3", "--apply-to", "queues",
            "ctl-limit", "^ctl\\.", '{"max-length": 4}')
    assert r.returncode == 0, r.stderr
    assert (f'Setting operator policy override "ctl-limit" for pattern "^ctl\\." to "{{"max-length": 4}}" '
            f'with priority "3" for vhost "{vhost}" ...') in r.stdout, r.stdout
    assert canon(api.ok(op_path(vhost, "ctl-limit"))) == canon(
        row(vhost, "ctl-limit", "^ctl\\.", {"max-length": 4}, priority=3))
    # Defaults: priority 0, apply-to all.
    r = run("set_operator_policy", "ctl-ttl", "^c2", '{"message-ttl":1000}')
    assert r.returncode == 0, r.stderr
    assert (f'Setting operator policy override "ctl-ttl" for pattern "^c2" to "{{"message-ttl":1000}}" '
            f'with priority "0" for vhost "{vhost}" ...') in r.stdout, r.stdout
    assert canon(api.ok(op_path(vhost, "ctl-ttl"))) == canon(
        row(vhost, "ctl-ttl", "^c2", {"message-ttl": 1000}, priority=0, apply_to="all"))
    # RabbitMQ: a banner, then a tab-separated table (-q: the table only).
    r = run("list_operator_policies")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f'Listing operator policy overrides for vhost "{vhost}" ...'
    r = run("-q", "list_operator_policies")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"
    assert sorted(lines[1:]) == [
        f'{vhost}\tctl-limit\t^ctl\\.\tqueues\t{{"max-length":4}}\t3',
        f'{vhost}\tctl-ttl\t^c2\tall\t{{"message-ttl":1000}}\t0',
    ]
    r = run("clear_operator_policy", "ctl-ttl")
    assert r.returncode == 0, r.stderr
    assert f'Clearing operator policy "ctl-ttl" on vhost "{vhost}" ...' in r.stdout, r.stdout
    assert api.get(op_path(vhost, "ctl-ttl")).status == 404
    assert [p["name"] for p in api.ok(op_path(vhost))] == ["ctl-limit"]
    # Clearing a missing one fails (RabbitMQ: exit 69, "Parameter does not exist").
    r = run("clear_operator_policy", "ctl-ttl")
    assert r.returncode != 0
    # A key operator policies do not allow is refused with the API's reason.
    r = run("set_operator_policy", "ctl-bad", "^x", '{"dead-letter-exchange": "dlx"}')
    assert r.returncode != 0
    assert "are not recognised policy settings" in r.stderr, r.stderr
    assert api.get(op_path(vhost, "ctl-bad")).status == 404
