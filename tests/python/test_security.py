"""Security features, each on a Warren started with its own flags:

* AMQPS (``--tls-cert/--tls-key``, ``--tls-ca``, ``--tls-fail-if-no-peer-cert``):
  a full pika session over TLS, server certificate verification by the
  client, client certificates required or checked when presented.  The
  certificates (a CA, a server certificate for ``localhost``/127.0.0.1, a
  client certificate, and a second, untrusted CA with its own client
  certificate) are generated per module in a temporary directory.
* Permissions (``--load-definitions``): every channel operation checked
  against the user's configure/write/read expressions, with RabbitMQ's
  channel.close 403 texts; refused logins (403) and vhost access (530); no
  default user when definitions are loaded.
* ``--max-message-size``: channel.close 406 above the limit.

Every broker here is a Warren owned by this module, so the module is skipped
when AMQP_URL points the suite at an external broker.
"""

import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import struct
import uuid
from types import SimpleNamespace

import pika
import pika.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import (Collector, WarrenProcess, amqp_mode_is_external, channel_error,
                      eventually, get_message, warren_binary)

pytestmark = pytest.mark.skipif(
    amqp_mode_is_external(),
    reason="needs Warren processes started with TLS, definitions and size-limit "
           "flags (AMQP_URL is set: an external broker's configuration cannot be "
           "chosen from a test)")

AMQPS_RE = re.compile(r"Listening for AMQPS on 127\.0\.0\.1:(\d+)")
MAX_SIZE = 1024
LARGE_BODY = 200 * 1024          # more than one frame at the default frame_max


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------

def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "warren-pytest"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(common_name, issuer=None, *, ca=False, sans=(), usage=None):
    """An EC P-256 key and a certificate for it, signed by ``issuer``
    (``(cert, key)``) or self-signed.  Returns ``(cert, key)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name))
               .issuer_name(issuer_cert.subject if issuer_cert else _name(common_name))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = (builder
                   .add_extension(
                       x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write_pem(directory, stem, cert, key=None):
    cert_path = directory / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return str(cert_path), None
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM files: ``ca``, ``server_cert``/``server_key`` (signed by ca, for DNS
    localhost and IP 127.0.0.1), ``client_cert``/``client_key`` (signed by ca),
    ``rogue_ca`` (an unrelated CA) and ``rogue_client_cert``/``_key`` (signed
    by the rogue CA, with the same subject as the real client's)."""
    directory = tmp_path_factory.mktemp("pki")
    ca = _certificate("warren-pytest CA", ca=True)
    server = _certificate("localhost", ca, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          sans=[x509.DNSName("localhost"),
                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _certificate("app-client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_ca = _certificate("warren-pytest rogue CA", ca=True)
    rogue_client = _certificate("app-client", rogue_ca,
                                usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = SimpleNamespace()
    files.ca, _ = _write_pem(directory, "ca", ca[0])
    files.server_cert, files.server_key = _write_pem(directory, "server", *server)
    files.client_cert, files.client_key = _write_pem(directory, "client", *client)
    files.rogue_ca, _ = _write_pem(directory, "rogue-ca", rogue_ca[0])
    files.rogue_client_cert, files.rogue_client_key = _write_pem(
        directory, "rogue-client", *rogue_client)
    return files


def client_context(cafile, certfile=None, keyfile=None):
    """A client SSLContext that verifies the server (chain and host name)
    against ``cafile`` and optionally presents a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


# --------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------

class SecureWarren(WarrenProcess):
    """A Warren with extra flags; ``tls_port`` is read from its ``Listening
    for AMQPS on 127.0.0.1:PORT`` line (None without TLS)."""

    tls_port = None

    def wait_ready(self, *args, **kwargs):
        super().wait_ready(*args, **kwargs)
        # The listening lines precede the ready line, which wait_ready saw.
        for line in self.lines:
            match = AMQPS_RE.search(line)
            if match:
                self.tls_port = int(match.group(1))
        return self

    def alive(self):
        return self.proc.poll() is None


def start_broker(*extra_args, tls=False):
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(f"Warren binary not found at {binary}", pytrace=False)
    proc = SecureWarren(binary, extra_args=[str(a) for a in extra_args])
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if tls and proc.tls_port is None:
        proc.terminate()
        pytest.fail("Warren started with --tls-cert/--tls-key printed no "
                    "'Listening for AMQPS on 127.0.0.1:PORT' line; output:\n"
                    + proc.output(), pytrace=False)
    return proc


def _tls_args(pki, *more):
    return ("--tls-cert", pki.server_cert, "--tls-key", pki.server_key,
            "--tls-port", "0", *more)


@pytest.fixture(scope="module")
def tls_broker(pki):
    """AMQPS without client certificates."""
    proc = start_broker(*_tls_args(pki), tls=True)
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def mtls_broker(pki):
    """AMQPS that requires a client certificate signed by the CA."""
    proc = start_broker(*_tls_args(pki, "--tls-ca", pki.ca, "--tls-fail-if-no-peer-cert"),
                        tls=True)
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def verify_peer_broker(pki):
    """AMQPS that checks a client certificate when one is presented."""
    proc = start_broker(*_tls_args(pki, "--tls-ca", pki.ca), tls=True)
    yield proc
    proc.terminate()


DEFINITIONS = {
    "users": [
        {"name": "guest", "password": "guest", "tags": ["administrator"]},
        {"name": "app", "password": "pw", "tags": []},
    ],
    "vhosts": [{"name": "/"}, {"name": "/team"}],
    "permissions": [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "guest", "vhost": "/team", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "app", "vhost": "/", "configure": "^app\\.", "write": "^app\\.",
         "read": "^app\\."},
    ],
}


@pytest.fixture(scope="module")
def perms_broker(tmp_path_factory):
    path = tmp_path_factory.mktemp("definitions") / "definitions.json"
    path.write_text(json.dumps(DEFINITIONS))
    proc = start_broker("--load-definitions", path)
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def size_broker():
    proc = start_broker("--max-message-size", MAX_SIZE)
    yield proc
    proc.terminate()


def params(proc, user="guest", password="guest", vhost="/", ssl_options=None):
    """Connection parameters for ``proc``: its AMQPS port with ``ssl_options``,
    else its AMQP port."""
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=proc.tls_port if ssl_options else proc.port,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        ssl_options=ssl_options,
        connection_attempts=1, socket_timeout=5, stack_timeout=10)


def tls_options(context, hostname="localhost"):
    return pika.SSLOptions(context, server_hostname=hostname)


@pytest.fixture
def connect(open_connection):
    """Factory: ``connect(parameters)`` opens a BlockingConnection; all are
    closed (errors ignored) after the test."""
    return open_connection


def suffix():
    return uuid.uuid4().hex[:10]


def round_trip(conn, body=b"ping"):
    """Publish (confirmed) to a fresh exclusive queue and get the body back."""
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", queue, body)
    _, _, got = get_message(ch, queue, auto_ack=True)
    ch.close()
    return got


def assert_still_serving(proc, parameters):
    """The broker is alive and completes a session with ``parameters``."""
    assert proc.alive(), f"Warren exited ({proc.proc.returncode}); output:\n{proc.output()}"
    conn = pika.BlockingConnection(parameters)
    try:
        assert round_trip(conn, b"still serving") == b"still serving"
    finally:
        conn.close()


# --------------------------------------------------------------------------
# AMQPS
# --------------------------------------------------------------------------

def test_amqps_full_session_with_large_body(tls_broker, pki, connect):
    conn = connect(params(tls_broker, ssl_options=tls_options(client_context(pki.ca))))
    ch = conn.channel()
    queue = f"tls.q.{suffix()}"
    ch.queue_declare(queue, auto_delete=False)
    body = os.urandom(LARGE_BODY)
    ch.confirm_delivery()
    ch.basic_publish("", queue, body,
                     pika.BasicProperties(message_id="tls-1", content_type="application/octet-stream"))
    method, props, got = get_message(ch, queue)
    assert len(got) == len(body)
    assert got == body
    assert props.message_id == "tls-1"
    assert props.content_type == "application/octet-stream"
    ch.basic_ack(method.delivery_tag)
    assert ch.queue_delete(queue).method.message_count == 0


def test_plain_and_tls_listeners_serve_side_by_side(tls_broker, pki, connect):
    assert tls_broker.tls_port != tls_broker.port
    plain = connect(params(tls_broker))
    secure = connect(params(tls_broker, ssl_options=tls_options(client_context(pki.ca))))
    queue = f"tls.shared.{suffix()}"
    plain_ch = plain.channel()
    plain_ch.queue_declare(queue, auto_delete=False)
    plain_ch.confirm_delivery()
    plain_ch.basic_publish("", queue, b"from plain to tls")
    secure_ch = secure.channel()
    _, _, body = get_message(secure_ch, queue, auto_ack=True)
    assert body == b"from plain to tls"
    secure_ch.queue_delete(queue)


def test_tls_handshake_presents_server_certificate_then_speaks_amqp(tls_broker, pki):
    context = client_context(pki.ca)
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
            subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
            assert subject["commonName"] == "localhost"
            tls.sendall(b"AMQP\x00\x00\x09\x01")
            data = b""
            while len(data) < 11:
                chunk = tls.recv(4096)
                assert chunk, "broker closed the TLS connection instead of connection.start"
                data += chunk
            frame_type, channel, _size = struct.unpack(">BHL", data[:7])
            class_id, method_id = struct.unpack(">HH", data[7:11])
            assert (frame_type, channel, class_id, method_id) == (1, 0, 10, 10), data[:11]


def test_plain_amqp_on_the_tls_port_gets_no_amqp(tls_broker):
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        raw.sendall(b"AMQP\x00\x00\x09\x01")
        received = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    # At most a TLS alert record (content type 21), never AMQP frames.
    assert received == b"" or received[0] == 21, received[:16]
    assert b"AMQP" not in received and b"PLAIN" not in received


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-hostname"])
def test_client_refuses_server_it_cannot_verify(tls_broker, pki, case):
    context = client_context(pki.rogue_ca if case == "untrusted-ca" else pki.ca)
    hostname = "localhost" if case == "untrusted-ca" else "not-the-broker.example"
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            context.wrap_socket(raw, server_hostname=hostname)
    # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY / X509_V_ERR_HOSTNAME_MISMATCH
    assert info.value.verify_code == (20 if case == "untrusted-ca" else 62), info.value
    # The broker keeps serving clients that trust it.
    assert_still_serving(tls_broker, params(tls_broker,
                                            ssl_options=tls_options(client_context(pki.ca))))


def test_pika_fails_handshake_with_untrusted_ca_and_broker_keeps_serving(tls_broker, pki,
                                                                          connect):
    good = connect(params(tls_broker, ssl_options=tls_options(client_context(pki.ca))))
    # pika 1.4 re-raises the transport's own error.
    with pytest.raises((ssl.SSLCertVerificationError,
                        pika.exceptions.AMQPConnectionError)) as info:
        pika.BlockingConnection(
            params(tls_broker, ssl_options=tls_options(client_context(pki.rogue_ca))))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(info.value), repr(info.value)
    # A connection opened before, and a new one, both still work.
    assert round_trip(good, b"before") == b"before"
    assert_still_serving(tls_broker, params(tls_broker,
                                            ssl_options=tls_options(client_context(pki.ca))))


def test_required_client_certificate_missing_is_refused(mtls_broker, pki):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        pika.BlockingConnection(
            params(mtls_broker, ssl_options=tls_options(client_context(pki.ca))))
    # Refused in TLS (TLS 1.3: the server's alert arrives after the client's
    # side of the handshake), before any AMQP.
    assert "certificate required" in str(info.value).lower(), repr(info.value)
    assert_still_serving(mtls_broker, params(mtls_broker, ssl_options=tls_options(
        client_context(pki.ca, pki.client_cert, pki.client_key))))


def test_required_client_certificate_from_other_ca_is_refused(mtls_broker, pki):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        pika.BlockingConnection(params(mtls_broker, ssl_options=tls_options(
            client_context(pki.ca, pki.rogue_client_cert, pki.rogue_client_key))))
    assert "alert unknown ca" in str(info.value).lower(), repr(info.value)
    assert mtls_broker.alive()


def test_required_client_certificate_presented_opens_session(mtls_broker, pki, connect):
    conn = connect(params(mtls_broker, ssl_options=tls_options(
        client_context(pki.ca, pki.client_cert, pki.client_key))))
    body = os.urandom(LARGE_BODY)
    assert round_trip(conn, body) == body


def test_plain_port_is_unaffected_by_client_certificate_requirement(mtls_broker, connect):
    assert round_trip(connect(params(mtls_broker))) == b"ping"


@pytest.mark.parametrize("client", ["no-certificate", "certificate-from-ca"])
def test_optional_client_certificate_accepted(verify_peer_broker, pki, connect, client):
    cert = (pki.client_cert, pki.client_key) if client == "certificate-from-ca" else (None, None)
    conn = connect(params(verify_peer_broker,
                          ssl_options=tls_options(client_context(pki.ca, *cert))))
    assert round_trip(conn) == b"ping"


def test_optional_client_certificate_from_other_ca_is_refused(verify_peer_broker, pki):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        pika.BlockingConnection(params(verify_peer_broker, ssl_options=tls_options(
            client_context(pki.ca, pki.rogue_client_cert, pki.rogue_client_key))))
    assert "alert unknown ca" in str(info.value).lower(), repr(info.value)
    assert_still_serving(verify_peer_broker, params(
        verify_peer_broker, ssl_options=tls_options(client_context(pki.ca))))


# --------------------------------------------------------------------------
# Permissions
# --------------------------------------------------------------------------

def exchange_exists(conn, name):
    ch = conn.channel()
    try:
        ch.exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, repr(exc)
        return False
    ch.close()
    return True


def queue_count(conn, name):
    """Ready messages in ``name``, or None if it does not exist."""
    ch = conn.channel()
    try:
        count = ch.queue_declare(name, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, repr(exc)
        return None
    ch.close()
    return count


class Op:
    """One permission-checked operation run by user ``app``.

    ``target``: which resource the checked permission is about (``"q"`` or
    ``"x"``; its name gets the prefix ``other.`` when the operation must be
    refused, ``app.`` when granted; the other resource is always ``app.``).
    ``access``/``kind``: the words of the expected refusal.  ``absent``: the
    target is not created beforehand (declarations).  ``action(ch, q, x)``
    runs the operation; ``verify(ctx, granted)`` checks the broker's state
    afterwards through the admin connection.
    """

    def __init__(self, op_id, target, access, action, verify, absent=False,
                 shown_name=None, refusable_only=False):
        self.id = op_id
        self.target = target
        self.access = access
        self.kind = "queue" if target == "q" else "exchange"
        self.action = action
        self.verify = verify
        self.absent = absent
        self.shown_name = shown_name
        self.refusable_only = refusable_only


def _consume(ch, q, x):
    collector = Collector()
    ch.basic_consume(q, collector)
    return collector


def _exchange_created(ctx, granted):
    assert exchange_exists(ctx.admin, ctx.x) is granted


def _exchange_deleted(ctx, granted):
    assert exchange_exists(ctx.admin, ctx.x) is not granted


def _queue_created(ctx, granted):
    assert queue_count(ctx.admin, ctx.q) == (0 if granted else None)


def _queue_deleted(ctx, granted):
    assert queue_count(ctx.admin, ctx.q) == (None if granted else 1)


def _queue_purged(ctx, granted):
    assert queue_count(ctx.admin, ctx.q) == (0 if granted else 1)


def _message_published(ctx, granted):
    if granted:
        eventually(lambda: queue_count(ctx.admin, ctx.q) == 2)
    else:
        assert queue_count(ctx.admin, ctx.q) == 1


def _queue_bound(ctx, granted):
    ch = ctx.admin.channel()
    ch.confirm_delivery()
    ch.basic_publish(ctx.x, "bound", b"via new binding")
    ch.close()
    assert queue_count(ctx.admin, ctx.q) == (2 if granted else 1)


def _message_got(ctx, granted):
    if granted:
        method, _, body = ctx.result
        assert method is not None and body == b"seed"
    assert queue_count(ctx.admin, ctx.q) == (0 if granted else 1)


def _message_consumed(ctx, granted):
    if granted:
        eventually(lambda: ctx.result.bodies == [b"seed"], connection=ctx.app)
    else:
        assert queue_count(ctx.admin, ctx.q) == 1


OPS = [
    Op("exchange.declare", "x", "configure",
       lambda ch, q, x: ch.exchange_declare(x, "direct"), _exchange_created, absent=True),
    Op("exchange.delete", "x", "configure",
       lambda ch, q, x: ch.exchange_delete(x), _exchange_deleted),
    Op("queue.declare", "q", "configure",
       lambda ch, q, x: ch.queue_declare(q), _queue_created, absent=True),
    Op("queue.delete", "q", "configure",
       lambda ch, q, x: ch.queue_delete(q), _queue_deleted),
    Op("queue.bind/queue", "q", "write",
       lambda ch, q, x: ch.queue_bind(q, x, "bound"), _queue_bound),
    Op("queue.bind/exchange", "x", "read",
       lambda ch, q, x: ch.queue_bind(q, x, "bound"), _queue_bound),
    Op("queue.purge", "q", "read",
       lambda ch, q, x: ch.queue_purge(q), _queue_purged),
    Op("basic.get", "q", "read",
       lambda ch, q, x: ch.basic_get(q, auto_ack=True), _message_got),
    Op("basic.consume", "q", "read", _consume, _message_consumed),
    Op("basic.publish", "x", "write",
       lambda ch, q, x: ch.basic_publish(x, "k", b"published"), _message_published),
    # The default exchange is checked as amq.default, which app may not write.
    Op("basic.publish/default-exchange", "x", "write",
       lambda ch, q, x: ch.basic_publish("", q, b"published"), _message_published,
       shown_name="amq.default", refusable_only=True),
]


def _prepare(perms_broker, connect, op, granted):
    """Admin (guest) creates exchange ``x`` and queue ``q`` (except an
    ``absent`` target), binds q to x with key ``k`` and routes one message
    ``seed`` to q; returns the context with ``app`` connected."""
    s = suffix()
    q_prefix = "other" if (op.target == "q" and not granted) else "app"
    x_prefix = "other" if (op.target == "x" and not granted) else "app"
    ctx = SimpleNamespace(q=f"{q_prefix}.q.{s}", x=f"{x_prefix}.x.{s}", result=None)
    ctx.admin = connect(params(perms_broker))
    ch = ctx.admin.channel()
    make_q = not (op.absent and op.target == "q")
    make_x = not (op.absent and op.target == "x")
    if make_x:
        ch.exchange_declare(ctx.x, "direct")
    if make_q:
        ch.queue_declare(ctx.q)
    if make_q and make_x:
        ch.queue_bind(ctx.q, ctx.x, "k")
        ch.confirm_delivery()
        ch.basic_publish(ctx.x, "k", b"seed")
        assert queue_count(ctx.admin, ctx.q) == 1
    ch.close()
    ctx.app = connect(params(perms_broker, "app", "pw"))
    return ctx


@pytest.mark.parametrize("op", OPS, ids=[op.id for op in OPS])
def test_operation_refused_without_permission(perms_broker, connect, op):
    ctx = _prepare(perms_broker, connect, op, granted=False)
    ch = ctx.app.channel()
    error = channel_error(ch, lambda: op.action(ch, ctx.q, ctx.x))
    name = op.shown_name or (ctx.q if op.target == "q" else ctx.x)
    assert error.reply_code == 403, repr(error)
    assert error.reply_text == (f"ACCESS_REFUSED - {op.access} access to {op.kind} '{name}' "
                                f"in vhost '/' refused for user 'app'")
    op.verify(ctx, granted=False)
    # Only the channel is closed: the connection goes on.
    assert ctx.app.is_open
    other = ctx.app.channel()
    other.basic_qos(prefetch_count=1)
    assert other.is_open


GRANTABLE = [op for op in OPS if not op.refusable_only]


@pytest.mark.parametrize("op", GRANTABLE, ids=[op.id for op in GRANTABLE])
def test_operation_granted_by_permission(perms_broker, connect, op):
    ctx = _prepare(perms_broker, connect, op, granted=True)
    ch = ctx.app.channel()
    ctx.result = op.action(ch, ctx.q, ctx.x)
    ch.basic_qos(prefetch_count=0)        # a round trip: the operation is done
    assert ch.is_open
    op.verify(ctx, granted=True)


def test_granted_end_to_end_flow(perms_broker, connect):
    s = suffix()
    exchange, queue = f"app.x.{s}", f"app.q.{s}"
    conn = connect(params(perms_broker, "app", "pw"))
    ch = conn.channel()
    ch.exchange_declare(exchange, "direct")
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange, "orders")
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish(exchange, "orders", f"order-{i}".encode(), mandatory=True)
    collector = Collector()
    ch.basic_consume(queue, collector)
    eventually(lambda: len(collector.deliveries) == 3, connection=conn)
    assert collector.bodies == [b"order-0", b"order-1", b"order-2"]
    ch.basic_ack(collector.tags[-1], multiple=True)
    ch.basic_cancel(collector.deliveries[0][0].consumer_tag)
    assert ch.queue_delete(queue).method.message_count == 0
    ch.exchange_delete(exchange)
    admin = connect(params(perms_broker))
    assert queue_count(admin, queue) is None
    assert not exchange_exists(admin, exchange)


def test_permissions_are_per_user(perms_broker, connect):
    """guest (full permissions) may do what app is refused."""
    s = suffix()
    conn = connect(params(perms_broker))
    ch = conn.channel()
    ch.queue_declare(f"other.q.{s}")
    ch.confirm_delivery()
    ch.basic_publish("", f"other.q.{s}", b"by guest")
    _, _, body = get_message(ch, f"other.q.{s}", auto_ack=True)
    assert body == b"by guest"
    ch.queue_delete(f"other.q.{s}")


# --------------------------------------------------------------------------
# Refused logins
# --------------------------------------------------------------------------

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                 "PLAIN. For details see the broker logfile.")


@pytest.mark.parametrize("user,password", [("app", "wrong"), ("nobody", "pw"), ("app", "")],
                         ids=["wrong-password", "unknown-user", "empty-password"])
def test_login_refused(perms_broker, user, password):
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError)) as info:
        pika.BlockingConnection(params(perms_broker, user, password))
    message = str(info.value)
    assert "403" in message and LOGIN_REFUSED in message, message


def test_vhost_without_permissions_is_not_allowed(perms_broker, connect):
    with pytest.raises((pika.exceptions.ProbableAccessDeniedError,
                        pika.exceptions.ConnectionClosedByBroker)) as info:
        pika.BlockingConnection(params(perms_broker, "app", "pw", vhost="/team"))
    message = str(info.value)
    assert "530" in message, message
    assert "NOT_ALLOWED - access to vhost '/team' refused for user 'app'" in message, message
    # The vhost exists and serves a user who has permissions on it.
    assert round_trip(connect(params(perms_broker, vhost="/team"))) == b"ping"


def test_loaded_definitions_replace_the_default_user(tmp_path, connect):
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps({
        "users": [{"name": "admin", "password": "s3cret", "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "admin", "vhost": "/", "configure": ".*",
                         "write": ".*", "read": ".*"}],
    }))
    proc = start_broker("--load-definitions", path)
    try:
        with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                            pika.exceptions.AuthenticationError)) as info:
            pika.BlockingConnection(params(proc, "guest", "guest"))
        assert LOGIN_REFUSED in str(info.value), str(info.value)
        conn = connect(params(proc, "admin", "s3cret"))
        assert round_trip(conn) == b"ping"
        conn.close()
    finally:
        proc.terminate()


# --------------------------------------------------------------------------
# --max-message-size
# --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [MAX_SIZE + 1, LARGE_BODY])
def test_message_above_max_size_closes_channel(size_broker, connect, size):
    conn = connect(params(size_broker))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    error = channel_error(ch, lambda: ch.basic_publish("", queue, b"x" * size))
    assert error.reply_code == 406, repr(error)
    assert error.reply_text == (f"PRECONDITION_FAILED - message size {size} is larger than "
                                f"configured max size {MAX_SIZE}")
    # Nothing was enqueued, and the connection (whose remaining body frames
    # were discarded) still works.
    assert queue_count(conn, queue) == 0
    assert round_trip(conn, b"y" * MAX_SIZE) == b"y" * MAX_SIZE


def test_message_at_max_size_is_accepted(size_broker, connect):
    conn = connect(params(size_broker))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    body = os.urandom(MAX_SIZE)
    ch.basic_publish("", queue, body)
    _, _, got = get_message(ch, queue, auto_ack=True)
    assert got == body
    assert ch.is_open
