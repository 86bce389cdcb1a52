"""RabbitMQ's stream protocol (the rabbitmq_stream plugin, port 5552), differential tests.

Driven through rstream (the Python stream client), and through ``RawStream`` (a bare-socket
client in this file) where rstream has no call for a command or hides the response code.
They pass against RabbitMQ 3.10; Warren must pass them too.

Covered:
* connecting: peer properties, SASL PLAIN, tune (frame_max 1048576, heartbeat 60), open with
  the advertised host/port, close; a wrong password is refused (AUTHENTICATION_FAILURE 8), so is an
  unknown mechanism (SASL_MECHANISM_NOT_SUPPORTED 7) and an unknown vhost
  (VIRTUAL_HOST_ACCESS_FAILURE 12), each followed by the server closing the socket;
* streams: create with max-length-bytes / max-age / stream-max-segment-size-bytes (the management
  API shows them as x- queue arguments), create an existing one (STREAM_ALREADY_EXISTS 5 with the
  same arguments, PRECONDITION_FAILED 17 with others), delete, delete a missing one
  (STREAM_DOES_NOT_EXIST 2); Metadata of a stream (leader = the advertised host/port) and of a
  missing one (code 2, leader 0xFFFF); a subscriber is told of a deletion (MetadataUpdate, 6);
* publishing with confirms (send_wait, send_batch, send): every publishing id confirmed, then read
  from FIRST in order with offsets 0..n-1; AMQP 1.0 properties and application properties survive;
* consuming: two consumers each get everything; OffsetType OFFSET n, LAST (the last chunk), NEXT,
  TIMESTAMP (the first chunk at or after it); credit flow (3000 messages, initial credit 1);
* deduplication by a named producer (publisher reference): resent publishing ids are confirmed but
  not stored; QueryPublisherSequence gives the last publishing id (0 for an unknown reference);
* server-side offset tracking: StoreOffset / QueryOffset (NO_OFFSET 19 for a fresh reference),
  kept after the connection closes;
* per-command errors: subscription id in use (3) / unknown (4), publisher id in use (17) /
  unknown (18, also as a PublishError), Credit for an unknown subscription (CreditResponse 4);
* AMQP 0-9-1 interoperability: a stream declared with pika (x-queue-type: stream) gets what rstream
  publishes, read by a pika consumer (basic.qos, x-stream-offset: first, the x-stream-offset
  header) with properties mapped; and the reverse (pika publishes, rstream reads it as AMQP 1.0);
* a super stream declared over AMQP 0-9-1 (a direct exchange with x-super-stream: true, partition
  streams bound with x-stream-partition-order): Partitions and Route;
* the management API: /api/stream/connections, /api/stream/publishers, /api/stream/consumers (and
  closing a stream connection with DELETE).

Warren-only (skipped with AMQP_URL set: RabbitMQ 3.10 lacks them): ExchangeCommandVersions and
StreamStats (3.11), CreateSuperStream / DeleteSuperStream (3.13), SuperStreamProducer /
SuperStreamConsumer (rstream needs the response bit on Route / Partitions replies, which 3.10
leaves out), single active consumer with ConsumerUpdate (3.11), filtering (3.13).

Where the stream port is: with AMQP_URL set, ``STREAM_URL``
(rabbitmq-stream://user:password@host:port/vhost) or AMQP_URL's host on port 5552; otherwise the
session Warren's ``--stream-port 0`` listener (``broker.process.stream_port``).

Producers and consumers run in rstream's ``load_balancer_mode``: they always dial the address they
were given, and keep a connection only when the node there advertises (Open's advertised_host /
advertised_port) the host and port that Metadata names as the stream's leader.  So Metadata and the
advertised address are exercised, while the tests still work where the advertised name (RabbitMQ's
node host name) does not resolve.

Each test runs its asyncio code through ``run`` (asyncio.run under a timeout) and waits by polling
(``wait_until``), never by sleeping.
"""

import asyncio
import contextlib
import os
import socket
import struct
import time
import urllib.parse
from collections import namedtuple

import mmh3
import pika
import pika.exceptions
import pytest
from rstream import (
    AMQPMessage,
    Consumer,
    ConsumerOffsetSpecification,
    FilterConfiguration,
    OffsetSpecification,
    OffsetType,
    Producer,
    Properties,
    RawMessage,
    RouteType,
    SuperStreamConsumer,
    SuperStreamCreationOption,
    SuperStreamProducer,
    amqp_decoder,
    schema,
)
from rstream import exceptions as rexc
from rstream.client import Client
from rstream.recovery import BackOffRecoveryStrategy

from conftest import amqp_mode_is_external, eventually
from http_fixtures import api  # noqa: F401 (fixture)

# Response codes (deps/rabbitmq_stream/docs/PROTOCOL.adoc).
OK = 1
STREAM_DOES_NOT_EXIST = 2
SUBSCRIPTION_ID_ALREADY_EXISTS = 3
SUBSCRIPTION_ID_DOES_NOT_EXIST = 4
STREAM_ALREADY_EXISTS = 5
STREAM_NOT_AVAILABLE = 6
SASL_MECHANISM_NOT_SUPPORTED = 7
AUTHENTICATION_FAILURE = 8
VIRTUAL_HOST_ACCESS_FAILURE = 12
PRECONDITION_FAILED = 17
PUBLISHER_DOES_NOT_EXIST = 18
NO_OFFSET = 19

# Command keys (a response has the top bit set: 0x8000 | key).
K_DECLARE_PUBLISHER = 0x01
K_QUERY_PUBLISHER_SEQUENCE = 0x05
K_METADATA = 0x0F
K_PEER_PROPERTIES = 0x11
K_SASL_HANDSHAKE = 0x12
K_SASL_AUTHENTICATE = 0x13
K_TUNE = 0x14
K_OPEN = 0x15
K_CLOSE = 0x16
K_ROUTE = 0x18
K_PARTITIONS = 0x19
K_EXCHANGE_COMMAND_VERSIONS = 0x1B
K_STREAM_STATS = 0x1C
RESPONSE = 0x8000

# RabbitMQ's defaults, offered in the server's Tune.
DEFAULT_FRAME_MAX = 1048576
DEFAULT_HEARTBEAT = 60

TEST_TIMEOUT = 25.0     # one test's asyncio part; the conftest watchdog stops at 30 s

StreamAddr = namedtuple("StreamAddr", "host port vhost user password")



def warren_only(reason):
    """Skipped against an external broker (RabbitMQ 3.10 here): ``reason`` says what it lacks."""
    return pytest.mark.skipif(amqp_mode_is_external(), reason=reason)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture
def stream_addr(broker):
    """(host, port, vhost, user, password) of the broker's stream listener."""
    if amqp_mode_is_external():
        url = os.environ.get("STREAM_URL")
        if url:
            u = urllib.parse.urlparse(url)
            vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
            return StreamAddr(u.hostname, u.port or 5552, vhost,
                              urllib.parse.unquote(u.username or broker.username),
                              urllib.parse.unquote(u.password or broker.password))
        return StreamAddr(broker.host, 5552, broker.vhost, broker.username, broker.password)
    port = broker.process.stream_port
    if port is None:
        pytest.fail("Warren printed no 'Listening for streams on HOST:PORT' line "
                    "(it is started with --stream-port 0)", pytrace=False)
    return StreamAddr(broker.process.host, port, broker.vhost, broker.username, broker.password)


@pytest.fixture
def stream_name(unique_name):
    """Factory of fresh stream names; conftest deletes them (queue.delete) after the test."""
    return lambda kind="s": unique_name(kind)


@pytest.fixture
def mgmt_api(request):
    """The management API (``http_fixtures.api``); skipped against an external broker
    without MGMT_URL."""
    if amqp_mode_is_external() and not os.environ.get("MGMT_URL"):
        pytest.skip("MGMT_URL is not set")
    return request.getfixturevalue("api")


# --------------------------------------------------------------------------
# asyncio helpers
# --------------------------------------------------------------------------

def run(coro, timeout=TEST_TIMEOUT):
    """Run a test's coroutine to completion, failing it after ``timeout`` seconds."""
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the test's stream-protocol part took over {timeout}s") from None
    return asyncio.run(bounded())


async def wait_until(predicate, timeout=10.0, what="condition", interval=0.01):
    """Poll ``predicate`` until it returns something truthy (returned)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(interval)


async def open_client(addr, *, user=None, password=None, vhost=None, name="warren-pytest-stream"):
    """rstream's low-level Client, connected and opened (peer properties, SASL, tune, open)."""
    client = Client(addr.host, addr.port, frame_max=DEFAULT_FRAME_MAX,
                    heartbeat=DEFAULT_HEARTBEAT, connection_name=name)
    try:
        await asyncio.wait_for(client.start(), 5)
        await asyncio.wait_for(client.authenticate(
            vhost if vhost is not None else addr.vhost,
            user if user is not None else addr.user,
            password if password is not None else addr.password), 10)
    except BaseException:
        await client.close()
        raise
    return client


@contextlib.asynccontextmanager
async def admin(addr, **kw):
    client = await open_client(addr, **kw)
    try:
        yield client
    finally:
        await client.close()


def make_producer(addr, **kw):
    kw.setdefault("recovery_strategy", BackOffRecoveryStrategy(False))
    return Producer(addr.host, addr.port, vhost=addr.vhost, username=addr.user,
                    password=addr.password, load_balancer_mode=True, **kw)


def make_consumer(addr, **kw):
    kw.setdefault("recovery_strategy", BackOffRecoveryStrategy(False))
    return Consumer(addr.host, addr.port, vhost=addr.vhost, username=addr.user,
                    password=addr.password, load_balancer_mode=True, **kw)


Delivery = namedtuple("Delivery", "body offset timestamp stream message")


class Inbox:
    """A subscription callback recording every message with its context."""

    def __init__(self):
        self.items = []

    def __call__(self, message, ctx):
        if isinstance(message, (bytes, bytearray, memoryview)):
            body = bytes(message)
        else:
            body = message.body
        self.items.append(Delivery(body, ctx.offset, ctx.timestamp, ctx.stream, message))

    def __len__(self):
        return len(self.items)

    @property
    def bodies(self):
        return [d.body for d in self.items]

    @property
    def offsets(self):
        return [d.offset for d in self.items]


class Confirms:
    """An on_publish_confirm callback."""

    def __init__(self):
        self.confirmed = []
        self.failed = []

    def __call__(self, status):
        (self.confirmed if status.is_confirmed else self.failed).append(status)

    @property
    def ids(self):
        return sorted(s.message_id for s in self.confirmed)

    async def wait(self, count, timeout=10.0):
        await wait_until(lambda: len(self.confirmed) + len(self.failed) >= count, timeout,
                         f"{count} publish confirms")
        assert not self.failed, self.failed


def spec(offset_type, offset=None):
    return ConsumerOffsetSpecification(offset_type, offset)


async def publish(addr, stream, bodies, batch=100):
    """Publish ``bodies`` (send_batch, ``batch`` per frame) and wait for every confirm."""
    confirms = Confirms()
    async with make_producer(addr) as producer:
        for i in range(0, len(bodies), batch):
            await producer.send_batch(stream, bodies[i:i + batch], on_publish_confirm=confirms)
        await confirms.wait(len(bodies))
    return confirms


async def read(addr, stream, count, offset_spec=None, decoder=None, timeout=10.0, **subscribe):
    """Subscribe, wait for ``count`` messages, unsubscribe; the Inbox."""
    inbox = Inbox()
    async with make_consumer(addr) as consumer:
        await consumer.subscribe(stream, inbox, decoder=decoder,
                                 offset_specification=offset_spec or spec(OffsetType.FIRST),
                                 **subscribe)
        await wait_until(lambda: len(inbox) >= count, timeout,
                         f"{count} messages from {stream} (got {len(inbox)})")
    return inbox


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# A bare-socket stream-protocol client
# --------------------------------------------------------------------------

def _string(value):
    data = value.encode() if isinstance(value, str) else value
    return struct.pack(">h", len(data)) + data


def _bytes(data):
    return struct.pack(">i", len(data)) + data


def _strings(values):
    return struct.pack(">i", len(values)) + b"".join(_string(v) for v in values)


def _properties(props):
    return struct.pack(">i", len(props)) + b"".join(
        _string(k) + _string(v) for k, v in props.items())


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, n):
        assert self.pos + n <= len(self.data), f"frame too short: {self.data!r}"
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = struct.unpack(">h", self.take(2))[0]
        return None if n < 0 else self.take(n).decode()

    def strings(self):
        return [self.string() for _ in range(self.i32())]

    def properties(self):
        return dict((self.string(), self.string()) for _ in range(self.i32()))

    def rest(self):
        return self.data[self.pos:]


class RawStream:
    """One stream-protocol connection over a plain socket (5 s timeouts)."""

    def __init__(self, addr):
        self.addr = addr
        self.sock = socket.create_connection((addr.host, addr.port), timeout=5)
        self.buf = b""
        self.correlation = 0
        self.pending = []           # frames read while waiting for another one

    def close(self):
        self.sock.close()

    def send(self, key, body=b"", version=1):
        frame = struct.pack(">HH", key, version) + body
        self.sock.sendall(struct.pack(">I", len(frame)) + frame)

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the stream connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next frame: (key, version, Reader of the rest)."""
        if self.pending:
            return self.pending.pop(0)
        size = struct.unpack(">I", self._exact(4))[0]
        frame = self._exact(size)
        key, version = struct.unpack(">HH", frame[:4])
        return key, version, Reader(frame[4:])

    def request(self, key, body=b"", version=1):
        """Send a request; (response key, response code, Reader after the code).

        The reply is matched on the command (key without the response bit: RabbitMQ 3.10
        answers Route and Partitions without it) and on the correlation id."""
        self.correlation += 1
        corr = self.correlation
        self.send(key, struct.pack(">I", corr) + body, version)
        skipped = []
        try:
            while True:
                size = struct.unpack(">I", self._exact(4))[0]
                frame = self._exact(size)
                rkey, rversion = struct.unpack(">HH", frame[:4])
                reader = Reader(frame[4:])
                if rkey & 0x7FFF == key and len(frame) >= 8 and \
                        struct.unpack(">I", frame[4:8])[0] == corr:
                    reader.u32()
                    return rkey, reader.u16(), reader
                if rkey == K_CLOSE:
                    reader.u32()
                    raise AssertionError(
                        f"the server closed the connection: code {reader.u16()}, "
                        f"{reader.string()!r}")
                skipped.append((rkey, rversion, reader))
        finally:
            self.pending.extend(skipped)

    # -- the opening sequence, step by step ---------------------------------

    def peer_properties(self, props):
        _, code, r = self.request(K_PEER_PROPERTIES, _properties(props))
        return code, r.properties()

    def sasl_handshake(self):
        _, code, r = self.request(K_SASL_HANDSHAKE)
        return code, r.strings()

    def sasl_authenticate(self, mechanism, data):
        _, code, _ = self.request(K_SASL_AUTHENTICATE, _string(mechanism) + _bytes(data))
        return code

    def read_tune(self):
        key, _, r = self.recv()
        assert key == K_TUNE, f"expected the server's Tune, got key {key:#06x}"
        return r.u32(), r.u32()

    def tune(self, frame_max, heartbeat):
        self.send(K_TUNE, struct.pack(">II", frame_max, heartbeat))

    def open(self, vhost):
        _, code, r = self.request(K_OPEN, _string(vhost))
        return code, (r.properties() if code == OK else {})

    def connect(self):
        """The whole opening sequence as the addr's user; the Open properties."""
        assert self.peer_properties({"product": "warren-pytest"})[0] == OK
        assert self.sasl_handshake()[0] == OK
        auth = b"\0" + self.addr.user.encode() + b"\0" + self.addr.password.encode()
        assert self.sasl_authenticate("PLAIN", auth) == OK
        frame_max, heartbeat = self.read_tune()
        self.tune(frame_max, heartbeat)
        code, props = self.open(self.addr.vhost)
        assert code == OK
        return props

    # -- commands -------------------------------------------------------------

    def metadata(self, streams):
        """(brokers {ref: (host, port)}, {stream: (code, leader_ref, [replica refs])})."""
        self.correlation += 1
        corr = self.correlation
        self.send(K_METADATA, struct.pack(">I", corr) + _strings(streams))
        while True:
            key, _, r = self.recv()
            if key == RESPONSE | K_METADATA and r.u32() == corr:
                break
        brokers = {}
        for _ in range(r.i32()):
            ref = r.u16()
            brokers[ref] = (r.string(), r.u32())
        result = {}
        for _ in range(r.i32()):
            name, code, leader = r.string(), r.u16(), r.u16()
            replicas = [r.u16() for _ in range(r.i32())]
            result[name] = (code, leader, replicas)
        return brokers, result

    def partitions(self, super_stream):
        key, code, r = self.request(K_PARTITIONS, _string(super_stream))
        return key, code, r.strings()

    def route(self, routing_key, super_stream):
        key, code, r = self.request(K_ROUTE, _string(routing_key) + _string(super_stream))
        return key, code, r.strings()

    def query_publisher_sequence(self, reference, stream):
        _, code, r = self.request(K_QUERY_PUBLISHER_SEQUENCE, _string(reference) + _string(stream))
        return code, struct.unpack(">Q", r.take(8))[0]

    def stream_stats(self, stream):
        _, code, r = self.request(K_STREAM_STATS, _string(stream))
        stats = {}
        for _ in range(r.i32()):
            name = r.string()
            stats[name] = r.i64()
        return code, stats

    def exchange_command_versions(self, commands):
        body = struct.pack(">i", len(commands)) + b"".join(
            struct.pack(">HHH", *c) for c in commands)
        key, code, r = self.request(K_EXCHANGE_COMMAND_VERSIONS, body)
        return key, code, [(r.u16(), r.u16(), r.u16()) for _ in range(r.i32())]

    def close_connection(self):
        _, code, _ = self.request(K_CLOSE, struct.pack(">H", OK) + _string("bye"))
        return code

    def closed_by_server(self):
        """True once the server has closed the socket (read until EOF)."""
        try:
            while True:
                self.recv()
        except EOFError:
            return True


@contextlib.contextmanager
def raw_connection(addr, opened=True):
    raw = RawStream(addr)
    try:
        if opened:
            raw.connect()
        yield raw
    finally:
        raw.close()


# ==========================================================================
# Connecting
# ==========================================================================

def test_handshake_peer_properties_sasl_tune_open_close(stream_addr):
    with raw_connection(stream_addr, opened=False) as raw:
        code, server = raw.peer_properties({"product": "warren-pytest", "connection_name": "hs"})
        assert code == OK
        assert server["product"] == "RabbitMQ"
        assert server["version"]
        assert {"cluster_name", "platform", "copyright", "information"} <= server.keys(), server

        code, mechanisms = raw.sasl_handshake()
        assert code == OK
        assert "PLAIN" in mechanisms

        auth = b"\0" + stream_addr.user.encode() + b"\0" + stream_addr.password.encode()
        assert raw.sasl_authenticate("PLAIN", auth) == OK
        # The server proposes its limits; the client answers with what it agrees to.
        assert raw.read_tune() == (DEFAULT_FRAME_MAX, DEFAULT_HEARTBEAT)
        raw.tune(DEFAULT_FRAME_MAX, 0)

        code, props = raw.open(stream_addr.vhost)
        assert code == OK
        assert props["advertised_port"] == str(stream_addr.port)
        assert props["advertised_host"]

        assert raw.close_connection() == OK


def test_rstream_client_sees_server_and_open_properties(stream_addr):
    async def scenario():
        async with admin(stream_addr) as client:
            props = client.server_properties
            assert props["product"] == "RabbitMQ"
            assert props["advertised_port"] == str(stream_addr.port)
            assert client.frame_max == DEFAULT_FRAME_MAX
    run(scenario())


def test_wrong_password_is_refused(stream_addr):
    async def scenario():
        with pytest.raises(rexc.AuthenticationFailure) as info:
            await open_client(stream_addr, password="not-" + stream_addr.password)
        assert info.value.code == AUTHENTICATION_FAILURE
        with pytest.raises(rexc.AuthenticationFailure):
            await open_client(stream_addr, user="no-such-user-warren-pytest", password="x")
    run(scenario())

    # On the wire: the code, then the server closes the socket.
    with raw_connection(stream_addr, opened=False) as raw:
        raw.peer_properties({})
        raw.sasl_handshake()
        auth = b"\0" + stream_addr.user.encode() + b"\0not-the-password"
        assert raw.sasl_authenticate("PLAIN", auth) == AUTHENTICATION_FAILURE
        assert raw.closed_by_server()


def test_unknown_sasl_mechanism_is_refused(stream_addr):
    with raw_connection(stream_addr, opened=False) as raw:
        raw.peer_properties({})
        raw.sasl_handshake()
        assert raw.sasl_authenticate("NO-SUCH-MECHANISM", b"\0guest\0guest") == \
            SASL_MECHANISM_NOT_SUPPORTED
        assert raw.closed_by_server()


def test_unknown_vhost_is_refused(stream_addr):
    async def scenario():
        with pytest.raises(rexc.VirtualHostAccessFailure) as info:
            await open_client(stream_addr, vhost="no-such-vhost-warren-pytest")
        assert info.value.code == VIRTUAL_HOST_ACCESS_FAILURE
    run(scenario())

    with raw_connection(stream_addr, opened=False) as raw:
        raw.peer_properties({})
        raw.sasl_handshake()
        auth = b"\0" + stream_addr.user.encode() + b"\0" + stream_addr.password.encode()
        assert raw.sasl_authenticate("PLAIN", auth) == OK
        raw.tune(*raw.read_tune())
        assert raw.open("no-such-vhost-warren-pytest") == (VIRTUAL_HOST_ACCESS_FAILURE, {})
        assert raw.closed_by_server()


# ==========================================================================
# Creating, deleting, metadata
# ==========================================================================

STREAM_ARGUMENTS = {"max-length-bytes": 1000000, "max-age": "1h",
                    "stream-max-segment-size-bytes": 500000}


def test_create_existing_delete_missing(stream_addr, stream_name, connect):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name, STREAM_ARGUMENTS)
            assert await client.stream_exists(name)
            # The same stream again: STREAM_ALREADY_EXISTS; with other arguments: a
            # PRECONDITION_FAILED (the queue.declare equivalence check).
            with pytest.raises(rexc.StreamAlreadyExists) as info:
                await client.create_stream(name, STREAM_ARGUMENTS)
            assert info.value.code == STREAM_ALREADY_EXISTS
            with pytest.raises(rexc.PreconditionFailed) as info:
                await client.create_stream(name, {"max-age": "2h"})
            assert info.value.code == PRECONDITION_FAILED
            with pytest.raises(rexc.PreconditionFailed):
                await client.create_stream(name)
    run(scenario())

    # The stream is a queue for AMQP 0-9-1 too.
    ch = connect().channel()
    ch.queue_declare(name, passive=True)

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
            assert not await client.stream_exists(name)
            with pytest.raises(rexc.StreamDoesNotExist) as info:
                await client.delete_stream(name)
            assert info.value.code == STREAM_DOES_NOT_EXIST
    run(delete())

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(name, passive=True)
    assert info.value.reply_code == 404


def test_stream_arguments_in_management(stream_addr, stream_name, mgmt_api):
    name = stream_name()

    async def create():
        async with admin(stream_addr) as client:
            await client.create_stream(name, STREAM_ARGUMENTS)
    run(create())

    queue = mgmt_api.ok(f"/api/queues/{urllib.parse.quote(stream_addr.vhost, safe='')}/"
                        f"{urllib.parse.quote(name, safe='')}")
    assert queue["type"] == "stream"
    assert queue["durable"] is True
    assert queue["auto_delete"] is False
    assert queue["exclusive"] is False
    assert queue["arguments"] == {"x-queue-type": "stream", "x-max-length-bytes": 1000000,
                                  "x-max-age": "1h",
                                  "x-stream-max-segment-size-bytes": 500000}

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(delete())


def test_metadata_of_a_stream_and_of_a_missing_one(stream_addr, stream_name):
    name = stream_name()
    missing = stream_name("missing")

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
            leader, replicas = await client.query_leader_and_replicas(name)
            # The leader is the node the client is on, by its advertised address.
            assert (leader.host, str(leader.port)) == (
                client.server_properties["advertised_host"],
                client.server_properties["advertised_port"])
            assert replicas == []
            assert not await client.stream_exists(missing)
    run(scenario())

    with raw_connection(stream_addr, opened=False) as raw:
        props = raw.connect()
        brokers, streams = raw.metadata([name, missing])
        # One node; the stream's leader is it, at the address Open advertised.
        assert len(brokers) == 1
        code, leader, replicas = streams[name]
        assert (code, replicas) == (OK, [])
        assert brokers[leader] == (props["advertised_host"], int(props["advertised_port"]))
        # A missing stream: its code, and no leader (0xFFFF).
        assert streams[missing] == (STREAM_DOES_NOT_EXIST, 0xFFFF, [])

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(delete())


def test_subscriber_is_told_when_the_stream_is_deleted(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        updates = []
        async with admin(stream_addr) as other:
            await other.create_stream(name)
            async with admin(stream_addr) as subscriber:
                subscriber.add_handler(schema.MetadataUpdate, updates.append, name="updates")
                await subscriber.subscribe(name, subscription_id=1)
                await other.delete_stream(name)
                await wait_until(lambda: updates, 5, "a MetadataUpdate")
                info = updates[0].metadata_info
                assert (info.code, info.stream) == (STREAM_NOT_AVAILABLE, name)
    run(scenario())


# ==========================================================================
# Publishing and consuming
# ==========================================================================

def test_publish_with_confirms_then_read_from_first(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        confirms = Confirms()
        async with make_producer(stream_addr) as producer:
            # send_wait: one message, waits for its confirm; publishing ids count from 1.
            ids = [await producer.send_wait(name, b"wait-%d" % i) for i in range(3)]
            assert ids == [1, 2, 3]
            # send_batch: one Publish frame.
            ids = await producer.send_batch(name, [b"batch-%d" % i for i in range(10)],
                                            on_publish_confirm=confirms)
            assert sorted(ids) == list(range(4, 14))
            # send: buffered by the client, flushed in the background.
            for i in range(10):
                await producer.send(name, b"send-%d" % i, on_publish_confirm=confirms)
            await confirms.wait(20)
        assert confirms.ids == list(range(4, 24))
        assert all(s.response_code == 0 for s in confirms.confirmed)

        expected = ([b"wait-%d" % i for i in range(3)] + [b"batch-%d" % i for i in range(10)]
                    + [b"send-%d" % i for i in range(10)])
        inbox = await read(stream_addr, name, len(expected))
        assert inbox.bodies == expected
        assert inbox.offsets == list(range(len(expected)))
        assert {d.stream for d in inbox.items} == {name}
        # Chunk timestamps are milliseconds since the epoch.
        assert all(abs(d.timestamp - now_ms()) < 600_000 for d in inbox.items)

        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_amqp_properties_and_application_properties_round_trip(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        message = AMQPMessage(
            body=b"hello",
            properties=Properties(message_id="m-1", correlation_id="c-1",
                                  content_type="text/plain", subject="subj", reply_to="rt"),
            application_properties={"k": "v", "n": 5, "flag": True})
        async with make_producer(stream_addr) as producer:
            await producer.send_wait(name, message)
        inbox = await read(stream_addr, name, 1, decoder=amqp_decoder)
        got = inbox.items[0].message
        assert got.body == b"hello"
        assert got.properties.message_id == b"m-1"
        assert got.properties.correlation_id == b"c-1"
        assert got.properties.content_type == b"text/plain"
        assert got.properties.subject == b"subj"
        assert got.properties.reply_to == b"rt"
        assert got.application_properties == {b"k": b"v", b"n": 5, b"flag": True}
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_two_consumers_each_get_everything(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        before = [b"before-%d" % i for i in range(20)]
        after = [b"after-%d" % i for i in range(5)]
        await publish(stream_addr, name, before)
        first, second = Inbox(), Inbox()
        async with make_consumer(stream_addr) as c1, make_consumer(stream_addr) as c2:
            await c1.subscribe(name, first)
            await c2.subscribe(name, second)
            await publish(stream_addr, name, after)
            for inbox in (first, second):
                await wait_until(lambda inbox=inbox: len(inbox) >= 25, 10, "25 messages")
        # Reading a stream takes nothing away from the other readers.
        assert first.bodies == second.bodies == before + after
        assert first.offsets == second.offsets == list(range(25))
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_subscribe_from_an_offset(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        await publish(stream_addr, name, [b"m-%d" % i for i in range(10)])
        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, inbox, offset_specification=spec(OffsetType.OFFSET, 7))
            await wait_until(lambda: len(inbox) >= 3, 10, "offsets 7..9")
            # ...and it goes on with what is published next.
            await publish(stream_addr, name, [b"m-10", b"m-11"])
            await wait_until(lambda: len(inbox) >= 5, 10, "offsets 10, 11")
        assert inbox.offsets == [7, 8, 9, 10, 11]
        assert inbox.bodies == [b"m-%d" % i for i in range(7, 12)]
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_subscribe_last_starts_at_the_last_chunk(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        first = [b"a-%d" % i for i in range(5)]
        last = [b"b-%d" % i for i in range(5)]
        # Two Publish frames, the second sent once the first is confirmed: two chunks at least.
        await publish(stream_addr, name, first)
        await publish(stream_addr, name, last)
        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, inbox, offset_specification=spec(OffsetType.LAST))
            await wait_until(lambda: inbox.bodies[-1:] == [last[-1]], 10, "the last message")
            await publish(stream_addr, name, [b"c-0"])
            await wait_until(lambda: inbox.bodies[-1:] == [b"c-0"], 10, "the next message")
        got = inbox.bodies[:-1]
        # RabbitMQ starts at the last chunk: the whole second frame (offsets 5..9).
        assert got and got == last[len(last) - len(got):], inbox.bodies
        assert inbox.offsets == list(range(10 - len(got), 11))
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_subscribe_next_gets_only_new_messages(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        await publish(stream_addr, name, [b"old-%d" % i for i in range(3)])
        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, inbox, offset_specification=spec(OffsetType.NEXT))
            async with make_producer(stream_addr) as producer:
                for i in range(3):
                    await producer.send_wait(name, b"new-%d" % i)
            await wait_until(lambda: len(inbox) >= 3, 10, "the new messages")
        assert inbox.bodies == [b"new-0", b"new-1", b"new-2"]
        assert inbox.offsets == [3, 4, 5]
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_subscribe_from_a_timestamp(stream_addr, stream_name):
    name = stream_name()

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        early = [b"early-%d" % i for i in range(3)]
        late = [b"late-%d" % i for i in range(3)]
        watcher = Inbox()       # reads everything, for the chunk timestamps
        async with make_producer(stream_addr) as producer, \
                make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, watcher)
            confirms = Confirms()
            await producer.send_batch(name, early, on_publish_confirm=confirms)
            await confirms.wait(3)
            await wait_until(lambda: len(watcher) >= 3, 10, "the early messages")
            early_ts = max(d.timestamp for d in watcher.items)
            # The later chunk must carry a later millisecond (broker and tests share the clock).
            await wait_until(lambda: now_ms() > early_ts + 1, 5, "the clock to move on")
            confirms = Confirms()
            await producer.send_batch(name, late, on_publish_confirm=confirms)
            await confirms.wait(3)
            await wait_until(lambda: len(watcher) >= 6, 10, "the late messages")
        late_ts = min(d.timestamp for d in watcher.items[3:])
        assert late_ts > early_ts

        # The first chunk whose timestamp is >= the one asked for.
        inbox = await read(stream_addr, name, 3, spec(OffsetType.TIMESTAMP, late_ts))
        assert inbox.bodies == late
        assert inbox.offsets == [3, 4, 5]
        inbox = await read(stream_addr, name, 3, spec(OffsetType.TIMESTAMP, early_ts + 1))
        assert inbox.bodies == late
        # Before the first chunk: everything.
        inbox = await read(stream_addr, name, 6, spec(OffsetType.TIMESTAMP, 0))
        assert inbox.bodies == early + late

        # After the last chunk: nothing until something new comes (like NEXT).
        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, inbox, offset_specification=spec(
                OffsetType.TIMESTAMP, now_ms() + 3_600_000))
            await publish(stream_addr, name, [b"newest"])
            await wait_until(lambda: len(inbox) >= 1, 10, "the newest message")
        assert inbox.bodies == [b"newest"]
        assert inbox.offsets == [6]
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_credit_flow_delivers_thousands_of_messages(stream_addr, stream_name):
    name = stream_name()
    count = 3000

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        bodies = [b"msg-%05d" % i for i in range(count)]
        await publish(stream_addr, name, bodies, batch=250)
        # One chunk of credit at a time: the client grants one more per chunk received.
        inbox = await read(stream_addr, name, count, initial_credit=1, timeout=15)
        assert inbox.bodies == bodies
        assert inbox.offsets == list(range(count))
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


# ==========================================================================
# Deduplication, publisher sequence
# ==========================================================================

def test_deduplication_by_a_named_producer(stream_addr, stream_name):
    name = stream_name()
    ref = "warren-pytest-dedup"

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
            async with make_producer(stream_addr) as producer:
                for i in (1, 2, 3):
                    await producer.send_wait(name, RawMessage(b"d%d" % i, publishing_id=i),
                                             publisher_name=ref)
                assert await client.query_publisher_sequence(name, ref) == 3
                # A publishing id at or below the last one is a duplicate: confirmed, not stored.
                confirms = Confirms()
                await producer.send_batch(name, [RawMessage(b"dup-2", publishing_id=2),
                                                 RawMessage(b"d4", publishing_id=4)],
                                          publisher_name=ref, on_publish_confirm=confirms)
                await confirms.wait(2)
                assert confirms.ids == [2, 4]
                assert await client.query_publisher_sequence(name, ref) == 4
                # Gaps are fine; going back is a duplicate again.
                await producer.send_wait(name, RawMessage(b"d10", publishing_id=10),
                                         publisher_name=ref)
                await producer.send_wait(name, RawMessage(b"dup-5", publishing_id=5),
                                         publisher_name=ref)
                assert await client.query_publisher_sequence(name, ref) == 10
            # A new producer with the same name continues after the stored sequence.
            async with make_producer(stream_addr) as producer:
                assert await producer.send_wait(name, b"d11", publisher_name=ref) == 11
            # Without a name there is no deduplication.
            async with make_producer(stream_addr) as producer:
                await producer.send_wait(name, RawMessage(b"anon", publishing_id=1))
                await producer.send_wait(name, RawMessage(b"anon-again", publishing_id=1))

        # Read up to the last message published: a stored duplicate would show before it.
        inbox = await read(stream_addr, name, 8)
        assert inbox.bodies == [b"d1", b"d2", b"d3", b"d4", b"d10", b"d11", b"anon",
                                b"anon-again"]
        assert inbox.offsets == list(range(8))
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_query_publisher_sequence(stream_addr, stream_name):
    name = stream_name()
    missing = stream_name("missing")
    ref = "warren-pytest-seq"

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
            assert await client.query_publisher_sequence(name, ref) == 0
            async with make_producer(stream_addr) as producer:
                for i in range(5):
                    await producer.send_wait(name, b"m-%d" % i, publisher_name=ref)
        # From another connection, after the producer is gone.
        async with admin(stream_addr) as client:
            assert await client.query_publisher_sequence(name, ref) == 5
            assert await client.query_publisher_sequence(name, ref + "-other") == 0
    run(scenario())

    with raw_connection(stream_addr) as raw:
        assert raw.query_publisher_sequence(ref, name) == (OK, 5)
        assert raw.query_publisher_sequence("nobody", name) == (OK, 0)
        assert raw.query_publisher_sequence(ref, missing) == (STREAM_DOES_NOT_EXIST, 0)

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(delete())


# ==========================================================================
# Server-side offset tracking
# ==========================================================================

def test_store_and_query_offset(stream_addr, stream_name):
    name = stream_name()
    missing = stream_name("missing")
    ref = "warren-pytest-app"

    async def stored(client, expected):
        async def attempt():
            try:
                return await client.query_offset(name, ref)
            except rexc.OffsetNotFound:
                return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            value = await attempt()
            if value == expected:
                return
            assert loop.time() < deadline, f"stored offset {value}, expected {expected}"
            await asyncio.sleep(0.01)

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        await publish(stream_addr, name, [b"m-%d" % i for i in range(10)])
        async with admin(stream_addr) as client:
            with pytest.raises(rexc.OffsetNotFound) as info:
                await client.query_offset(name, ref)
            assert info.value.code == NO_OFFSET
            with pytest.raises(rexc.StreamDoesNotExist):
                await client.query_offset(missing, ref)
            # StoreOffset has no reply: poll QueryOffset.
            await client.store_offset(name, ref, 6)
            await stored(client, 6)
            await client.store_offset(name, ref, 3)     # it may go back
            await stored(client, 3)
        # Kept by the server, not by the connection.
        async with admin(stream_addr) as client:
            assert await client.query_offset(name, ref) == 3
            with pytest.raises(rexc.OffsetNotFound):
                await client.query_offset(name, ref + "-other")
        # Through the Consumer API, resuming after the stored offset.
        async with make_consumer(stream_addr) as consumer:
            assert await consumer.query_offset(name, ref) == 3
            inbox = Inbox()
            await consumer.subscribe(name, inbox, subscriber_name=ref,
                                     offset_specification=spec(OffsetType.OFFSET, 4))
            await wait_until(lambda: len(inbox) >= 6, 10, "offsets 4..9")
            await consumer.store_offset(name, ref, inbox.offsets[-1])
        assert inbox.offsets == list(range(4, 10))
        assert inbox.bodies == [b"m-%d" % i for i in range(4, 10)]
        async with admin(stream_addr) as client:
            await stored(client, 9)
            await client.delete_stream(name)
    run(scenario())


# ==========================================================================
# Per-command errors
# ==========================================================================

def test_command_error_codes(stream_addr, stream_name):
    name = stream_name()
    missing = stream_name("missing")

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
            with pytest.raises(rexc.StreamDoesNotExist):
                await client.declare_publisher(missing, None, 1)
            with pytest.raises(rexc.StreamDoesNotExist):
                await client.subscribe(missing, subscription_id=1)

            await client.subscribe(name, subscription_id=1)
            with pytest.raises(rexc.SubscriptionIDAlreadyExists) as info:
                await client.subscribe(name, subscription_id=1)
            assert info.value.code == SUBSCRIPTION_ID_ALREADY_EXISTS
            await client.unsubscribe(1)
            with pytest.raises(rexc.SubscriptionIDDoesNotExist) as info:
                await client.unsubscribe(1)
            assert info.value.code == SUBSCRIPTION_ID_DOES_NOT_EXIST

            await client.declare_publisher(name, None, 2)
            with pytest.raises(rexc.PreconditionFailed):
                await client.declare_publisher(name, None, 2)
            # Two publishers may not share a reference on a stream.
            await client.declare_publisher(name, "warren-pytest-ref", 3)
            with pytest.raises(rexc.PreconditionFailed):
                await client.declare_publisher(name, "warren-pytest-ref", 4)
            await client.delete_publisher(2)
            with pytest.raises(rexc.PublisherDoesNotExist) as info:
                await client.delete_publisher(2)
            assert info.value.code == PUBLISHER_DOES_NOT_EXIST

            # Commands without a reply report through their own frames.
            errors, credit_errors, confirms = [], [], []
            client.add_handler(schema.PublishError, errors.append, name="errors")
            client.add_handler(schema.CreditResponse, credit_errors.append, name="credit")
            client.add_handler(schema.PublishConfirm, confirms.append, name="confirms")
            await client.publish([schema.Message(1, None, b"nobody")], publisher_id=77)
            await wait_until(lambda: errors, 5, "a PublishError")
            assert errors[0].publisher_id == 77
            assert [(e.publishing_id, e.response_code) for e in errors[0].errors] == \
                [(1, PUBLISHER_DOES_NOT_EXIST)]
            await client.credit(42, 5)
            await wait_until(lambda: credit_errors, 5, "a CreditResponse")
            assert (credit_errors[0].response_code, credit_errors[0].subscription_id) == \
                (SUBSCRIPTION_ID_DOES_NOT_EXIST, 42)
            # The connection is still usable.
            await client.publish([schema.Message(7, None, b"fine")], publisher_id=3)
            await wait_until(lambda: confirms, 5, "a PublishConfirm")
            assert (confirms[0].publisher_id, confirms[0].publishing_ids) == (3, [7])
            await client.delete_stream(name)
    run(scenario())


# ==========================================================================
# AMQP 0-9-1 interoperability
# ==========================================================================

def declare_stream(channel, name):
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})


def test_amqp_consumer_reads_what_rstream_published(stream_addr, stream_name, connect):
    name = stream_name()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, name)

    async def produce():
        async with make_producer(stream_addr) as producer:
            await producer.send_wait(name, AMQPMessage(
                body=b"first",
                properties=Properties(message_id="m-1", correlation_id="c-1",
                                      content_type="text/plain", reply_to="rt"),
                application_properties={"k": "v", "n": 5, "flag": True}))
            confirms = Confirms()
            await producer.send_batch(name, [AMQPMessage(body=b"plain-%d" % i) for i in range(3)],
                                      on_publish_confirm=confirms)
            await confirms.wait(3)
    run(produce())

    # A stream consumer needs a prefetch and acks; x-stream-offset says where to start.
    ch.basic_qos(prefetch_count=10)
    got = []
    ch.basic_consume(name, lambda c, m, p, b: got.append((m, p, b)),
                     arguments={"x-stream-offset": "first"})
    eventually(lambda: len(got) >= 4, connection=conn)
    for method, _, _ in got:
        ch.basic_ack(method.delivery_tag)
    assert [b for _, _, b in got] == [b"first", b"plain-0", b"plain-1", b"plain-2"]
    assert [p.headers["x-stream-offset"] for _, p, _ in got] == [0, 1, 2, 3]
    method, props, _ = got[0]
    assert (method.exchange, method.routing_key, method.redelivered) == ("", name, False)
    assert props.message_id == "m-1"
    assert props.correlation_id == "c-1"
    assert props.content_type == "text/plain"
    assert props.reply_to == "rt"
    # Application properties become headers.
    assert props.headers == {"k": "v", "n": 5, "flag": True, "x-stream-offset": 0}
    assert got[1][1].headers == {"x-stream-offset": 1}
    ch.close()

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(delete())


def test_rstream_reads_what_amqp_published(stream_addr, stream_name, connect):
    name = stream_name()
    ch = connect().channel()
    declare_stream(ch, name)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"from-pika", pika.BasicProperties(
        headers={"h1": "x", "h2": 7}, content_type="application/json", message_id="pm-1",
        correlation_id="pc-1", reply_to="prt", delivery_mode=2, priority=3,
        timestamp=1700000000, type="t", app_id="app", expiration="60000"))
    ch.basic_publish("", name, b"bare")

    async def scenario():
        inbox = await read(stream_addr, name, 2, decoder=amqp_decoder)
        assert inbox.bodies == [b"from-pika", b"bare"]
        assert inbox.offsets == [0, 1]
        message = inbox.items[0].message
        p = message.properties
        assert (p.message_id, p.correlation_id, p.content_type, p.reply_to) == (
            b"pm-1", b"pc-1", b"application/json", b"prt")
        assert p.creation_time == 1700000000 * 1000
        # Headers become application properties; type and app-id too (as x-basic-*).
        assert message.application_properties == {
            b"h1": b"x", b"h2": 7, b"x-basic-type": b"t", b"x-basic-app-id": b"app"}
        # Exchange, routing key and the other basic properties are message annotations.
        assert message.message_annotations == {
            b"x-exchange": b"", b"x-routing-key": name.encode(), b"x-basic-priority": 3,
            b"x-basic-delivery-mode": 2, b"x-basic-expiration": b"60000"}
        bare = inbox.items[1].message
        assert bare.application_properties is None
        assert bare.message_annotations == {b"x-exchange": b"",
                                            b"x-routing-key": name.encode()}
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


def test_super_stream_declared_over_amqp_partitions_and_route(
        stream_addr, unique_name, _created_names, connect):
    """What `rabbitmq-streams add_super_stream` declares in RabbitMQ 3.10: a direct exchange
    (x-super-stream: true) and one stream per partition, bound with the routing key and
    the x-stream-partition-order binding argument; Partitions lists them in that order."""
    super_stream = unique_name("super")
    partitions = [f"{super_stream}-{i}" for i in range(3)]
    _created_names.extend(partitions)
    ch = connect().channel()
    ch.exchange_declare(super_stream, "direct", durable=True,
                        arguments={"x-super-stream": True})
    for name in partitions:
        declare_stream(ch, name)
    for i in reversed(range(3)):        # bound out of order on purpose
        ch.queue_bind(partitions[i], super_stream, str(i),
                      arguments={"x-stream-partition-order": i})

    with raw_connection(stream_addr) as raw:
        def checked(reply, command):
            key, code, streams = reply
            # RabbitMQ 3.10 answers without the response bit; Warren sets it (as 3.11+ do,
            # and as rstream requires).
            assert key & 0x7FFF == command
            if not amqp_mode_is_external():
                assert key == RESPONSE | command
            return code, streams

        assert checked(raw.partitions(super_stream), K_PARTITIONS) == (OK, partitions)
        assert checked(raw.route("1", super_stream), K_ROUTE) == (OK, [partitions[1]])
        assert checked(raw.route("no-such-key", super_stream), K_ROUTE) == (OK, [])
        assert checked(raw.partitions(super_stream + "-missing"), K_PARTITIONS) == \
            (STREAM_DOES_NOT_EXIST, [])
        assert checked(raw.route("1", super_stream + "-missing"), K_ROUTE) == \
            (STREAM_DOES_NOT_EXIST, [])

    # Publishing to the exchange routes to a partition, readable with the stream protocol.
    ch.confirm_delivery()
    ch.basic_publish(super_stream, "2", b"to-partition-2")

    async def scenario():
        inbox = await read(stream_addr, partitions[2], 1, decoder=amqp_decoder)
        assert inbox.bodies == [b"to-partition-2"]
        assert inbox.items[0].message.message_annotations[b"x-exchange"] == \
            super_stream.encode()
    run(scenario())


# ==========================================================================
# Management API
# ==========================================================================

def test_management_lists_stream_connections_publishers_consumers(
        stream_addr, stream_name, mgmt_api):
    name = stream_name()
    tag = name.rsplit(".", 1)[-1]
    producer_name, consumer_name = f"pytest-producer-{tag}", f"pytest-consumer-{tag}"
    reference = f"pytest-ref-{tag}"
    vhost = urllib.parse.quote(stream_addr.vhost, safe="")

    def connections_named(conn_name):
        return [c for c in mgmt_api.ok("/api/stream/connections")
                if c.get("client_properties", {}).get("connection_name") == conn_name]

    def of_stream(path):
        return [x for x in mgmt_api.ok(path) if x["queue"]["name"] == name]

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        inbox = Inbox()
        async with make_producer(stream_addr, connection_name=producer_name) as producer, \
                make_consumer(stream_addr, connection_name=consumer_name) as consumer:
            for i in range(3):
                await producer.send_wait(name, b"m-%d" % i, publisher_name=reference)
            await consumer.subscribe(name, inbox, subscriber_name="pytest-sub",
                                     properties={"foo": "bar"})
            await wait_until(lambda: len(inbox) >= 3, 10, "3 messages")

            # Listings are fed by statistics events: poll (RabbitMQ: ~5 s).
            async def listed(fn, what):
                return await wait_until(fn, 12, f"{what} listed", interval=0.2)

            conns = await listed(lambda: connections_named(producer_name), "producer connection")
            assert len(conns) == 1
            conn = conns[0]
            assert conn["protocol"] == "stream"
            assert conn["user"] == stream_addr.user
            assert conn["vhost"] == stream_addr.vhost
            assert conn["auth_mechanism"] == "PLAIN"
            assert conn["port"] == stream_addr.port
            assert conn["peer_host"] == "127.0.0.1"
            assert conn["frame_max"] == DEFAULT_FRAME_MAX
            assert conn["timeout"] == DEFAULT_HEARTBEAT
            assert conn["user_provided_name"] == producer_name
            assert conn["client_properties"]["product"] == "RabbitMQ Stream"
            assert conn["name"] == f"{conn['peer_host']}:{conn['peer_port']} -> " \
                                   f"{conn['host']}:{conn['port']}"
            assert isinstance(conn["connected_at"], int)
            # The consumer has its own connection (and a locator one).
            assert len(await listed(lambda: connections_named(consumer_name),
                                    "consumer connection")) == 1

            detail = mgmt_api.ok(f"/api/stream/connections/{vhost}/"
                                 f"{urllib.parse.quote(conn['name'], safe='')}")
            assert detail["name"] == conn["name"]
            assert detail["client_properties"]["connection_name"] == producer_name

            pubs = await listed(lambda: [p for p in of_stream("/api/stream/publishers")
                                         if p["confirmed"] == 3], "the publisher's 3 confirms")
            assert len(pubs) == 1
            pub = pubs[0]
            assert pub["reference"] == reference
            assert pub["published"] == 3
            assert pub["errored"] == 0
            assert pub["queue"] == {"name": name, "vhost": stream_addr.vhost}
            assert isinstance(pub["publisher_id"], int)
            assert pub["connection_details"]["name"] == conn["name"]
            assert pub["connection_details"]["user"] == stream_addr.user
            assert pub["connection_details"]["peer_port"] == conn["peer_port"]

            cons = await listed(lambda: [c for c in of_stream("/api/stream/consumers")
                                         if c["consumed"] == 3], "the consumer's 3 messages")
            assert len(cons) == 1
            con = cons[0]
            assert con["queue"] == {"name": name, "vhost": stream_addr.vhost}
            assert con["properties"] == {"foo": "bar"}
            assert con["offset_lag"] == 0
            assert isinstance(con["subscription_id"], int)
            assert isinstance(con["credits"], int)
            assert con["connection_details"]["user"] == stream_addr.user

            per_conn = mgmt_api.ok(f"/api/stream/connections/{vhost}/"
                                   f"{urllib.parse.quote(conn['name'], safe='')}/publishers")
            assert [p["reference"] for p in per_conn] == [reference]
            assert [p["queue"]["name"] for p in mgmt_api.ok(
                f"/api/stream/publishers/{vhost}/{urllib.parse.quote(name, safe='')}")] == [name]

        # Closed: gone from the listings.
        await wait_until(lambda: not connections_named(producer_name), 10,
                         "the producer connection to leave the listing", interval=0.2)
        await wait_until(lambda: not of_stream("/api/stream/publishers"), 10,
                         "the publisher to leave the listing", interval=0.2)
        await wait_until(lambda: not of_stream("/api/stream/consumers"), 10,
                         "the consumer to leave the listing", interval=0.2)

        # DELETE closes a stream connection.
        closing = "pytest-closed-" + tag
        client = await open_client(stream_addr, name=closing)
        try:
            conns = await wait_until(lambda: connections_named(closing), 12, "the connection",
                                     interval=0.2)
            reply = mgmt_api.delete(f"/api/stream/connections/{vhost}/"
                                    f"{urllib.parse.quote(conns[0]['name'], safe='')}")
            assert reply.status == 204
            await wait_until(lambda: not client.is_connection_alive(), 10,
                             "the connection to close")
        finally:
            await client.close()
        assert mgmt_api.get(f"/api/stream/connections/{vhost}/no-such-connection").status == 404

        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario(), timeout=28)


# ==========================================================================
# Warren-only: RabbitMQ 3.11+ commands
# ==========================================================================

@warren_only("RabbitMQ 3.10 lacks ExchangeCommandVersions (3.11+): it closes the "
              "connection, code 13 unknown frame")
def test_exchange_command_versions(stream_addr):
    with raw_connection(stream_addr) as raw:
        # The client's own versions (Publish up to v2) for the server's.
        key, code, versions = raw.exchange_command_versions([(0x02, 1, 2)])
        assert key == RESPONSE | K_EXCHANGE_COMMAND_VERSIONS
        assert code == OK
        # The commands the server accepts, in key order from DeclarePublisher: rstream reads
        # the entry at index key - 1 (Publish at [1]).
        assert versions[0] == (K_DECLARE_PUBLISHER, 1, 1)
        assert versions[1] == (0x02, 1, 2)      # Publish v2 carries filter values
        keys = [k for k, _, _ in versions]
        assert keys == sorted(set(keys))
        assert {0x05, 0x06, 0x07, 0x0A, 0x0B, 0x0D, 0x0E, 0x0F, 0x18, 0x19, 0x1C} <= set(keys)
        assert all(lo == 1 and hi >= lo for _, lo, hi in versions)


@warren_only("RabbitMQ 3.10 lacks StreamStats (3.11+)")
def test_stream_stats(stream_addr, stream_name):
    name = stream_name()
    missing = stream_name("missing")

    async def fill():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        async with make_producer(stream_addr) as producer:
            # Each confirmed before the next is sent: two chunks, ids 0 and 1.
            await producer.send_wait(name, b"one")
            await producer.send_wait(name, b"two")
    run(fill())

    with raw_connection(stream_addr) as raw:
        code, stats = raw.stream_stats(name)
        assert code == OK
        assert stats["first_chunk_id"] == 0
        assert stats["committed_chunk_id"] == 1
        # RabbitMQ 4.x adds these two.
        assert stats.get("last_chunk_id", 1) == 1
        assert stats.get("committed_offset", 1) == 1
        assert raw.stream_stats(missing) == (STREAM_DOES_NOT_EXIST, {})

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(delete())


@warren_only("RabbitMQ 3.10 lacks CreateSuperStream / DeleteSuperStream (3.13+)")
def test_super_stream_create_partitions_route_delete(
        stream_addr, unique_name, _created_names, connect):
    super_stream = unique_name("super")
    partitions = [f"{super_stream}-{k}" for k in ("eu", "us", "ap")]
    _created_names.extend(partitions)

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_super_stream(super_stream, partitions, ["eu", "us", "ap"],
                                             {"max-age": "1h"})
            with pytest.raises(rexc.StreamAlreadyExists):
                await client.create_super_stream(super_stream, partitions, ["eu", "us", "ap"])
            assert await client.partitions(super_stream) == partitions
            assert await client.route("us", super_stream) == [partitions[1]]
            assert await client.route("nowhere", super_stream) == []
            for name in partitions:
                assert await client.stream_exists(name)
    run(scenario())

    ch = connect().channel()
    ch.exchange_declare(super_stream, passive=True)
    ch.queue_declare(partitions[0], passive=True)

    async def delete():
        async with admin(stream_addr) as client:
            await client.delete_super_stream(super_stream)
            for name in partitions:
                assert not await client.stream_exists(name)
            with pytest.raises(rexc.StreamDoesNotExist):
                await client.delete_super_stream(super_stream)
    run(delete())

    with raw_connection(stream_addr) as raw:
        assert raw.partitions(super_stream) == (RESPONSE | K_PARTITIONS, STREAM_DOES_NOT_EXIST, [])
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare(super_stream, passive=True)
    assert info.value.reply_code == 404


def hash_partition(key, count):
    """rstream's RouteType.Hash (murmur3 of the UTF-16 key, as the Java client)."""
    digest = mmh3.hash_bytes(bytes(key, "UTF-16"), 104729)
    return int.from_bytes(digest, "little", signed=False) % count


@warren_only("RabbitMQ 3.10 lacks CreateSuperStream (3.13+) and answers Route / Partitions "
              "without the response bit, which rstream cannot read")
def test_super_stream_producer_and_consumer(stream_addr, unique_name, _created_names):
    super_stream = unique_name("super")
    partitions = [f"{super_stream}-{i}" for i in range(3)]
    _created_names.extend(partitions)
    count = 30

    async def routing_key(message):
        return message.application_properties["id"]

    async def scenario():
        confirms = Confirms()
        async with SuperStreamProducer(
                stream_addr.host, stream_addr.port, vhost=stream_addr.vhost,
                username=stream_addr.user, password=stream_addr.password,
                super_stream=super_stream, routing_extractor=routing_key,
                routing=RouteType.Hash, load_balancer_mode=True,
                super_stream_creation_option=SuperStreamCreationOption(n_partitions=3),
                recovery_strategy=BackOffRecoveryStrategy(False)) as producer:
            for i in range(count):
                await producer.send(AMQPMessage(body=b"m-%d" % i,
                                                application_properties={"id": str(i)}),
                                    on_publish_confirm=confirms)
            await confirms.wait(count)

        inbox = Inbox()
        consumer = SuperStreamConsumer(
            stream_addr.host, stream_addr.port, vhost=stream_addr.vhost,
            username=stream_addr.user, password=stream_addr.password,
            super_stream=super_stream, load_balancer_mode=True,
            recovery_strategy=BackOffRecoveryStrategy(False))
        try:
            await consumer.start()
            await consumer.subscribe(inbox, decoder=amqp_decoder,
                                     offset_specification=spec(OffsetType.FIRST))
            await wait_until(lambda: len(inbox) >= count, 10, f"{count} messages")
        finally:
            await consumer.close()

        # Each message is in the partition the client's hash chose (Partitions gives the
        # order), and within a partition in publishing order.
        by_partition = {}
        for d in inbox.items:
            ident = int(d.message.application_properties[b"id"])
            assert d.stream == partitions[hash_partition(str(ident), 3)], (ident, d.stream)
            by_partition.setdefault(d.stream, []).append(ident)
        assert sorted(by_partition) == partitions
        for idents in by_partition.values():
            assert idents == sorted(idents)
        assert sorted(i for idents in by_partition.values() for i in idents) == list(range(count))

        async with admin(stream_addr) as client:
            await client.delete_super_stream(super_stream)
    run(scenario())


@warren_only("RabbitMQ 3.10 lacks single active consumer for streams (3.11+)")
def test_single_active_consumer(stream_addr, stream_name):
    name = stream_name()
    group = "warren-pytest-group"
    properties = {"single-active-consumer": "true", "name": group}

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        await publish(stream_addr, name, [b"early-%d" % i for i in range(10)])

        first_events, second_events = [], []

        async def first_listener(is_active, ctx):
            first_events.append(is_active)
            # The offset given here wins over the subscription's (NEXT).
            return OffsetSpecification(OffsetType.FIRST, 0)

        async def second_listener(is_active, ctx):
            second_events.append(is_active)
            return OffsetSpecification(OffsetType.NEXT, 0)

        first_inbox, second_inbox = Inbox(), Inbox()
        first = make_consumer(stream_addr, connection_name="pytest-sac-1")
        second = make_consumer(stream_addr, connection_name="pytest-sac-2")
        try:
            await first.start()
            await first.subscribe(name, first_inbox, subscriber_name=group,
                                  properties=dict(properties),
                                  offset_specification=spec(OffsetType.NEXT),
                                  consumer_update_listener=first_listener)
            await wait_until(lambda: len(first_inbox) >= 10, 10, "the active consumer's reads")
            assert first_events == [True]

            await second.start()
            await second.subscribe(name, second_inbox, subscriber_name=group,
                                   properties=dict(properties),
                                   offset_specification=spec(OffsetType.FIRST),
                                   consumer_update_listener=second_listener)
            await publish(stream_addr, name, [b"middle-%d" % i for i in range(5)])
            await wait_until(lambda: len(first_inbox) >= 15, 10, "the middle messages")
            # Only one consumer of the group reads.
            assert len(second_inbox) == 0
            assert True not in second_events

            # The active one leaves: the other is told it is active and starts where it says.
            await first.close()
            await wait_until(lambda: True in second_events, 10, "the consumer update")
            async with make_producer(stream_addr) as producer:
                published = []
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not second_inbox.items:
                    assert loop.time() < deadline, "the new active consumer got nothing"
                    body = b"late-%d" % len(published)
                    await producer.send_wait(name, body)
                    published.append(body)
                    await asyncio.sleep(0.05)
                await wait_until(lambda: second_inbox.bodies[-1:] == published[-1:], 10,
                                 "the last late message")
        finally:
            await second.close()
            await first.close()
        assert first_inbox.bodies == [b"early-%d" % i for i in range(10)] + \
            [b"middle-%d" % i for i in range(5)]
        got = second_inbox.bodies
        assert got == published[len(published) - len(got):], got
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())


@warren_only("RabbitMQ 3.10 lacks stream filtering (3.13+)")
def test_filtering(stream_addr, stream_name):
    name = stream_name()

    async def region(message):
        return message.application_properties["region"]

    def message(i, where):
        return AMQPMessage(body=b"%s-%d" % (where.encode(), i),
                           application_properties={"region": where})

    async def scenario():
        async with admin(stream_addr) as client:
            await client.create_stream(name)
        async with make_producer(stream_addr, filter_value_extractor=region) as producer:
            # Chunks of one region each: the ones of the other region can be skipped whole.
            confirms = Confirms()
            await producer.send_batch(name, [message(i, "eu") for i in range(5)],
                                      on_publish_confirm=confirms)
            await confirms.wait(5)
            for i in range(5):
                await producer.send_wait(name, message(i, "us"))
            confirms = Confirms()
            await producer.send_batch(name, [message(i, "eu") for i in range(5, 10)],
                                      on_publish_confirm=confirms)
            await confirms.wait(5)

        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(name, inbox, decoder=amqp_decoder,
                                     filter_input=FilterConfiguration(values_to_filter=["eu"]))
            await wait_until(lambda: b"eu-9" in inbox.bodies, 10, "the eu messages")
        eu = [b for b in inbox.bodies if b.startswith(b"eu-")]
        us = [b for b in inbox.bodies if b.startswith(b"us-")]
        assert eu == [b"eu-%d" % i for i in range(10)]
        # The server filters chunks (a Bloom filter: it may let a few through).
        assert len(us) < 5, inbox.bodies

        # A client-side predicate on top makes it exact.
        inbox = Inbox()
        async with make_consumer(stream_addr) as consumer:
            await consumer.subscribe(
                name, inbox, decoder=amqp_decoder, filter_input=FilterConfiguration(
                    values_to_filter=["us"],
                    predicate=lambda m: m.application_properties[b"region"] == b"us"))
            await wait_until(lambda: len(inbox) >= 5, 10, "the us messages")
        assert inbox.bodies == [b"us-%d" % i for i in range(5)]
        async with admin(stream_addr) as client:
            await client.delete_stream(name)
    run(scenario())
