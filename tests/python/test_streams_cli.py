"""``rabbitmq-streams``: Warren's binary called by that name (as the container links it) runs
RabbitMQ's everyday stream commands over the management API.

* ``add_super_stream NAME --partitions N`` makes what RabbitMQ's stream manager makes: a durable
  direct exchange NAME with ``x-super-stream: true``, durable stream queues NAME-0..N-1, each bound
  with its index as the routing key and ``x-stream-partition-order: i`` (the stream protocol's
  Partitions lists them in that order); ``--binding-keys a,b`` names the partitions NAME-a,
  NAME-b and binds them with those keys; the stream options become the partitions' queue arguments
  (``--max-length-bytes 20mb`` -> ``x-max-length-bytes: 20000000``, ``--max-age PT1H`` ->
  ``x-max-age: "3600s"``).  Adding one that exists fails (exit 70) and creates nothing; bad
  options are usage errors (exit 64).
* ``delete_super_stream NAME`` deletes the partitions bound to the exchange, then the exchange;
  deleting a missing one fails (exit 70).
* ``list_stream_connections`` / ``list_stream_publishers`` / ``list_stream_consumers`` print
  ``Listing stream ... ...``, a tab-separated header and one row per connection, publisher or
  consumer of the vhost (``-p``), with RabbitMQ's column names; ``--formatter json`` prints a JSON
  array; ``-q`` drops the banner; an unknown column is a usage error.
* ``stream_status STREAM``: the writer's row (offsets, readers, segments).
* ``warren ctl`` answers the same commands.

Warren-only: runs Warren's own CLI against a Warren started by this module.
"""

import asyncio
import json
import os
import subprocess
import tempfile
import urllib.parse
import uuid

import pytest

from conftest import WarrenProcess, amqp_mode_is_external, warren_binary
from test_management import Api
from test_stream_protocol import (Confirms, Inbox, OffsetType, StreamAddr, make_consumer,
                                  make_producer, open_client, run, spec, wait_until)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="runs Warren's own rabbitmq-streams and broker (AMQP_URL is set)")

# RabbitMQ's exit codes for these commands.
EX_OK, EX_USAGE, EX_SOFTWARE = 0, 64, 70


def q(name):
    return urllib.parse.quote(name, safe="")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = WarrenProcess(warren_binary(), tmp_path_factory.mktemp("warren-streams-cli") / "warren.log")
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not (proc.http_port and proc.stream_port):
        proc.terminate()
        pytest.fail("Warren printed no 'Listening for HTTP / streams' line; output:\n" + proc.output(),
                    pytrace=False)
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def api(warren):
    return Api(warren.http_port)


@pytest.fixture(scope="module")
def addr(warren):
    return StreamAddr(warren.host, warren.stream_port, "/", "guest", "guest")


@pytest.fixture(scope="module")
def streams(warren):
    """``rabbitmq-streams ARGS`` (a symlink of that name to Warren's binary) against this module's
    Warren; returns the CompletedProcess."""
    with tempfile.TemporaryDirectory(prefix="warren-streams-cli-") as d:
        link = os.path.join(d, "rabbitmq-streams")
        os.symlink(warren_binary(), link)

        def cli(*args):
            return subprocess.run([link, "--port", str(warren.http_port), *args],
                                  capture_output=True, text=True, timeout=20)
        yield cli


@pytest.fixture
def vhost(api):
    name = uniq("streams-cli")
    assert api.put(f"/api/vhosts/{q(name)}").status in (201, 204)
    assert api.put(f"/api/permissions/{q(name)}/guest",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status in (201, 204)
    yield name
    api.delete(f"/api/vhosts/{q(name)}")


def rows(stdout):
    """The tab-separated table of a listing: (header, rows), banner lines dropped."""
    lines = [line.split("\t") for line in stdout.splitlines() if not line.endswith(" ...")]
    return lines[0], lines[1:]


def source_bindings(api, vhost, exchange):
    return sorted(api.ok(f"/api/exchanges/{q(vhost)}/{q(exchange)}/bindings/source"),
                  key=lambda b: b["arguments"].get("x-stream-partition-order", -1))


# --------------------------------------------------------------------------
# Super streams
# --------------------------------------------------------------------------

def test_add_super_stream_with_partitions_then_delete_it(streams, api, addr):
    name = uniq("invoices")
    r = streams("add_super_stream", name, "--partitions", "3")
    assert r.returncode == EX_OK, r.stderr
    assert r.stdout.splitlines() == ["Adding a super stream ...", f"Super stream {name} has been created"]

    x = api.ok(f"/api/exchanges/%2F/{q(name)}")
    assert (x["type"], x["durable"], x["auto_delete"], x["internal"], x["arguments"]) == \
        ("direct", True, False, False, {"x-super-stream": True})
    partitions = [f"{name}-{i}" for i in range(3)]
    for p in partitions:
        queue = api.ok(f"/api/queues/%2F/{q(p)}")
        assert (queue["type"], queue["durable"], queue["auto_delete"]) == ("stream", True, False), queue
        assert queue["arguments"] == {"x-queue-type": "stream"}
    assert [(b["destination"], b["destination_type"], b["routing_key"], b["arguments"])
            for b in source_bindings(api, "/", name)] == \
        [(p, "queue", str(i), {"x-stream-partition-order": i}) for i, p in enumerate(partitions)]

    # What the stream protocol's clients see: the partitions, in order, and the routes.
    async def protocol_view():
        client = await open_client(addr)
        try:
            return await client.partitions(name), await client.route("1", name)
        finally:
            await client.close()
    assert run(protocol_view()) == (partitions, [partitions[1]])

    # Adding it again fails and changes nothing (RabbitMQ: exit_software).
    r = streams("add_super_stream", name, "--partitions", "5")
    assert r.returncode == EX_SOFTWARE, (r.stdout, r.stderr)
    assert f"there is already an exchange named {name}" in r.stderr
    assert api.get(f"/api/queues/%2F/{q(name)}-4").status == 404

    r = streams("delete_super_stream", name)
    assert r.returncode == EX_OK, r.stderr
    assert r.stdout.splitlines() == ["Deleting a super stream ...", f"Super stream {name} has been deleted"]
    assert api.get(f"/api/exchanges/%2F/{q(name)}").status == 404
    for p in partitions:
        assert api.get(f"/api/queues/%2F/{q(p)}").status == 404

    r = streams("delete_super_stream", name)
    assert r.returncode == EX_SOFTWARE and f"super stream {name} does not exist" in r.stderr, r.stderr


def test_add_super_stream_with_binding_keys_and_stream_options_in_a_vhost(streams, api, vhost):
    name = uniq("orders")
    r = streams("add_super_stream", name, "--binding-keys", "amer, emea,apac", "-p", vhost,
                "--max-length-bytes", "20mb", "--max-age", "PT1H", "--stream-max-segment-size-bytes", "1MiB")
    assert r.returncode == EX_OK, r.stderr
    keys = ["amer", "emea", "apac"]
    for k in keys:
        queue = api.ok(f"/api/queues/{q(vhost)}/{q(f'{name}-{k}')}")
        assert queue["type"] == "stream"
        assert queue["arguments"] == {"x-queue-type": "stream", "x-max-length-bytes": 20_000_000,
                                      "x-max-age": "3600s", "x-stream-max-segment-size-bytes": 1024 * 1024}
    assert [(b["destination"], b["routing_key"], b["arguments"]) for b in source_bindings(api, vhost, name)] == \
        [(f"{name}-{k}", k, {"x-stream-partition-order": i}) for i, k in enumerate(keys)]
    # Nothing in the default vhost.
    assert api.get(f"/api/exchanges/%2F/{q(name)}").status == 404

    r = streams("--vhost", vhost, "delete_super_stream", name)
    assert r.returncode == EX_OK, r.stderr
    assert api.get(f"/api/exchanges/{q(vhost)}/{q(name)}").status == 404
    assert [x["name"] for x in api.ok(f"/api/queues/{q(vhost)}")] == []


def test_add_super_stream_usage_errors_create_nothing(streams, api):
    name = uniq("bad")
    for args, text in [
        ((), "not enough arguments"),
        ((name, "--partitions", "0"), "The partition number must be greater than 0"),
        ((name, "--partitions", "2", "--binding-keys", "a,b"), "not both"),
        ((name, "--max-age", "10m"), "Invalid value for --max-age"),
        ((name, "--max-length-bytes", "lots"), "Invalid value for --max-length-bytes"),
        ((name, "--leader-locator", "nearest"), "Invalid value for --leader-locator"),
        ((name, "--no-such-option"), "unknown option --no-such-option"),
    ]:
        r = streams("add_super_stream", *args)
        assert r.returncode == EX_USAGE, (args, r.stdout, r.stderr)
        assert text in r.stderr, (args, r.stderr)
    assert api.get(f"/api/exchanges/%2F/{q(name)}").status == 404


# --------------------------------------------------------------------------
# Listings and status
# --------------------------------------------------------------------------

def test_list_stream_connections_publishers_consumers_and_stream_status(streams, api, addr, warren):
    stream = uniq("cli-stream")
    conn_name = uniq("cli-client")

    async def scenario():
        client = await open_client(addr, name=conn_name)
        try:
            await client.create_stream(stream)
            mine = await wait_until(
                lambda: [c for c in api.ok("/api/stream/connections")
                         if c["client_properties"].get("connection_name") == conn_name],
                what="the client's connection in /api/stream/connections")
            name = mine[0]["name"]

            r = await asyncio.to_thread(streams, "list_stream_connections")
            assert r.returncode == EX_OK, r.stderr
            assert r.stdout.splitlines()[0] == "Listing stream connections ..."
            header, table = rows(r.stdout)
            assert header == ["conn_name"] and [name] in table, r.stdout

            r = await asyncio.to_thread(streams, "-q", "list_stream_connections", "conn_name", "user", "vhost",
                                        "peer_host", "connection_state", "ssl", "subscriptions")
            assert r.returncode == EX_OK, r.stderr
            header, table = rows(r.stdout)
            assert header == ["conn_name", "user", "vhost", "peer_host", "connection_state", "ssl",
                              "subscriptions"]
            assert [name, "guest", "/", "127.0.0.1", "running", "false", "0"] in table, r.stdout
            assert "Listing" not in r.stdout

            # Another vhost has none of them.
            r = await asyncio.to_thread(streams, "list_stream_connections", "-p", uniq("elsewhere"))
            assert name not in r.stdout

            # A publisher and a consumer on the stream.
            confirms, inbox = Confirms(), Inbox()
            async with make_producer(addr) as producer, make_consumer(addr) as consumer:
                for i in range(5):
                    await producer.send(stream, f"m{i}".encode(), on_publish_confirm=confirms)
                await confirms.wait(5)
                await consumer.subscribe(stream, inbox, offset_specification=spec(OffsetType.FIRST))
                await wait_until(lambda: len(inbox) >= 5, what="5 messages")
                await wait_until(lambda: any(p["confirmed"] == 5 for p in api.ok("/api/stream/publishers")),
                                 what="the publisher's 5 confirms in the API")
                await wait_until(lambda: any(c["consumed"] == 5 for c in api.ok("/api/stream/consumers")),
                                 what="the consumer's 5 messages in the API")

                r = await asyncio.to_thread(streams, "list_stream_publishers")
                assert r.returncode == EX_OK, r.stderr
                assert r.stdout.splitlines()[0] == "Listing stream publishers ..."
                header, table = rows(r.stdout)
                assert header == ["publisher_id", "stream", "reference", "messages_published",
                                  "messages_confirmed", "messages_errored"]
                assert [row[1:2] + row[3:] for row in table if row[1] == stream] == [[stream, "5", "5", "0"]]

                r = await asyncio.to_thread(streams, "list_stream_consumers")
                assert r.returncode == EX_OK, r.stderr
                header, table = rows(r.stdout)
                assert header == ["subscription_id", "stream", "messages_consumed", "offset", "offset_lag",
                                  "credits", "active", "activity_status", "properties"]
                row = [row for row in table if row[1] == stream]
                assert len(row) == 1 and row[0][2] == "5" and row[0][4] == "0" and row[0][7] == "up", r.stdout

                r = await asyncio.to_thread(streams, "--formatter", "json", "list_stream_consumers",
                                            "stream", "connection_pid", "messages_consumed")
                assert r.returncode == EX_OK, r.stderr
                got = [c for c in json.loads(r.stdout) if c["stream"] == stream]
                api_consumer = [c for c in api.ok("/api/stream/consumers") if c["queue"]["name"] == stream][0]
                assert got == [{"stream": stream, "messages_consumed": 5,
                                "connection_pid": api_consumer["connection_details"]["name"]}]

                # The connections' subscriptions.
                r = await asyncio.to_thread(streams, "--formatter", "json", "list_stream_connections",
                                            "conn_name", "subscriptions")
                subscribed = {c["conn_name"]: c["subscriptions"] for c in json.loads(r.stdout)}
                assert subscribed[api_consumer["connection_details"]["name"]] == 1 and subscribed[name] == 0

                r = await asyncio.to_thread(streams, "stream_status", stream)
                assert r.returncode == EX_OK, r.stderr
                lines = r.stdout.splitlines()
                assert lines[0].startswith(f"Status of stream {stream} on node ")
                assert lines[1].split("\t") == ["role", "node", "epoch", "offset", "committed_offset",
                                                "first_offset", "readers", "segments"]
                status = dict(zip(lines[1].split("\t"), lines[2].split("\t")))
                assert (status["role"], status["offset"], status["committed_offset"], status["first_offset"],
                        status["readers"]) == ("writer", "4", "4", "0", "1"), status
                assert int(status["segments"]) >= 1

                # rabbitmqctl (warren ctl) lists them too.
                r = await asyncio.to_thread(
                    subprocess.run, [str(warren_binary()), "ctl", "--port", str(warren.http_port),
                                     "list_stream_publishers", "stream", "messages_confirmed"],
                    capture_output=True, text=True, timeout=20)
                assert r.returncode == EX_OK and [stream, "5"] in rows(r.stdout)[1], r.stdout + r.stderr
        finally:
            await client.close()

        # Closed connections leave the listing.
        async def gone():
            r = await asyncio.to_thread(streams, "list_stream_connections")
            return name not in r.stdout
        deadline = asyncio.get_running_loop().time() + 10
        while not await gone():
            assert asyncio.get_running_loop().time() < deadline, "the closed connection is still listed"
            await asyncio.sleep(0.05)

    run(scenario())
    api.delete(f"/api/queues/%2F/{q(stream)}")


def test_list_and_status_errors(streams, api):
    r = streams("list_stream_consumers", "no_such_column")
    assert r.returncode == EX_USAGE and "Info key(s) no_such_column are not supported" in r.stderr, r.stderr
    missing = uniq("missing")
    r = streams("stream_status", missing)
    assert r.returncode != EX_OK and f"stream {missing} does not exist" in r.stderr, r.stderr
    classic = uniq("classic")
    assert api.put(f"/api/queues/%2F/{q(classic)}", {"durable": False}).status == 201
    try:
        r = streams("stream_status", classic)
        assert r.returncode != EX_OK and "is not a stream" in r.stderr, r.stderr
    finally:
        api.delete(f"/api/queues/%2F/{q(classic)}")
    r = streams("set_stream_retention_policy", "x", "1h")
    assert r.returncode == EX_USAGE and "not supported" in r.stderr, r.stderr
    r = streams("help")
    assert r.returncode == EX_OK and "add_super_stream" in r.stdout
