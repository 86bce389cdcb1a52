'use strict';
// Connection-level behaviour: handshake properties, authentication,
// heartbeats, channel multiplexing and orderly shutdown.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const {
  useBroker,
  usingExternalBroker,
  spawnWarren,
  uniqueName,
  deferred,
  withTimeout,
  channelClosed,
  getMessage,
} = require('../helpers/broker');

const broker = useBroker();

// Capabilities a RabbitMQ-compatible broker must announce in connection.start.
const REQUIRED_CAPABILITIES = [
  'publisher_confirms',
  'exchange_exchange_bindings',
  'basic.nack',
  'consumer_cancel_notify',
  'connection.blocked',
  'consumer_priorities',
  'authentication_failure_close',
  'per_consumer_qos',
  'direct_reply_to',
];

test('connection.start carries the server properties and capabilities clients rely on', async () => {
  const conn = await broker.connect();
  const props = conn.connection.serverProperties;
  assert.ok(props, 'no server properties received');

  for (const key of ['product', 'version', 'platform', 'copyright', 'information']) {
    const value = props[key];
    assert.ok(value !== undefined && value !== null, `server property "${key}" is missing`);
    assert.ok(String(value).length > 0, `server property "${key}" is empty`);
  }

  const caps = props.capabilities;
  assert.equal(typeof caps, 'object', 'capabilities must be a field table');
  for (const cap of REQUIRED_CAPABILITIES) {
    assert.equal(caps[cap], true, `capability "${cap}" must be present and true`);
  }
});

test('a wrong password is refused with ACCESS_REFUSED', async () => {
  const url = new URL(broker.url);
  url.username = 'guest';
  url.password = 'definitely-not-the-password';
  // amqplib advertises authentication_failure_close, so the server must answer
  // with connection.close 403 instead of silently dropping the socket.
  await assert.rejects(amqp.connect(url.toString()), (err) => {
    assert.match(err.message, /403/);
    assert.match(err.message, /ACCESS[-_]REFUSED/);
    return true;
  });
});

test('an unknown user is refused with ACCESS_REFUSED', async () => {
  const url = new URL(broker.url);
  url.username = uniqueName('nobody');
  url.password = 'guest';
  await assert.rejects(amqp.connect(url.toString()), /403 \(ACCESS-REFUSED\)/);
});

test('opening an unknown virtual host is answered with connection.close', async () => {
  const url = new URL(broker.url);
  url.pathname = `/${uniqueName('no-such-vhost')}`;
  // RabbitMQ replies 530 NOT_ALLOWED; amqplib only reports that a close came
  // back where connection.open-ok was expected, so that is what we check.
  await assert.rejects(amqp.connect(url.toString()), /Expected ConnectionOpenOk; got <ConnectionClose/);
});

test('a 1 s heartbeat is negotiated and keeps an idle connection alive', async () => {
  const conn = await broker.connect(broker.urlWith({ heartbeat: 1 }));
  // The client asked for 1 s; the server suggests its own value and the
  // lower non-zero one wins.
  assert.equal(conn.connection.heartbeat, 1, 'negotiated heartbeat interval');

  let closed = false;
  conn.on('close', () => {
    closed = true;
  });

  // Stay completely idle for three heartbeat intervals. amqplib declares the
  // server dead after two intervals without any frame from it, so this only
  // survives if the server is sending heartbeats, and the server only keeps
  // us if it accepts ours. Waiting is the point of this test, so it is a
  // deliberate timer rather than a poll.
  await new Promise((resolve) => setTimeout(resolve, 3200));

  assert.deepEqual(conn.recordedErrors, [], 'connection reported errors while idle');
  assert.equal(closed, false, 'connection was closed while idle');

  // And it is still fully usable.
  const ch = await broker.channel(conn);
  const { queue } = await ch.assertQueue('', { exclusive: true });
  assert.match(queue, /^amq\.gen-/);
});

test('many channels can be used concurrently on one connection', async () => {
  const conn = await broker.connect();
  const COUNT = 64;
  const channels = await Promise.all(Array.from({ length: COUNT }, () => broker.channel(conn)));

  const numbers = new Set(channels.map((ch) => ch.ch));
  assert.equal(numbers.size, COUNT, 'every channel must get its own channel number');

  // Each channel owns a private queue; send one message through each and read
  // it back on the same channel, so cross-talk between channels would show.
  await Promise.all(
    channels.map(async (ch, i) => {
      const { queue } = await ch.assertQueue('', { exclusive: true });
      ch.sendToQueue(queue, Buffer.from(`channel ${i}`));
      const msg = await getMessage(ch, queue);
      assert.equal(msg.content.toString(), `channel ${i}`);
    }),
  );

  // Closing half of them leaves the others intact.
  await Promise.all(channels.slice(0, COUNT / 2).map((ch) => ch.close()));
  await Promise.all(
    channels.slice(COUNT / 2).map(async (ch) => {
      const { queue } = await ch.assertQueue('', { exclusive: true });
      assert.match(queue, /^amq\.gen-/);
    }),
  );
});

test('a channel closed by the client is closed cleanly', async () => {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  await ch.close();
  assert.equal(await channelClosed(ch), null, 'a client-initiated close must not be an error');
  // The connection itself stays open and usable.
  const ch2 = await broker.channel(conn);
  await ch2.assertQueue('', { exclusive: true });
});

test('a connection closes cleanly at the client\'s request', async () => {
  const conn = await amqp.connect(broker.url);
  const errors = [];
  conn.on('error', (err) => errors.push(err));
  const closeEvent = deferred();
  conn.on('close', (err) => closeEvent.resolve(err));

  const ch = await conn.createChannel();
  await ch.assertQueue('', { exclusive: true });

  // close() resolves only once the server has answered connection.close-ok.
  await withTimeout(conn.close(), 5000, 'connection.close-ok');
  const reason = await withTimeout(closeEvent.promise, 5000, 'the close event');
  assert.equal(reason, undefined, 'a clean close carries no error');
  assert.deepEqual(errors, []);

  await assert.rejects(conn.createChannel(), 'no channels can be opened after close');
});

test('close right after a burst of unconfirmed publishes still gets close-ok', async () => {
  // RabbitMQ answers connection.close with close-ok and keeps reading (and discarding) until the
  // client closes the socket; closing at once with publishes still unread makes the kernel reset
  // the connection, and the client never sees close-ok.
  const conn = await amqp.connect(broker.url);
  const errors = [];
  conn.on('error', (err) => errors.push(err));
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const body = Buffer.alloc(2048, 'x');
  for (let i = 0; i < 2000; i++) {
    ch.sendToQueue(queue, body);
  }
  await withTimeout(conn.close(), 10_000, 'connection.close-ok after a publish burst');
  assert.deepEqual(errors, []);
});

test('SIGTERM closes client connections with 320 CONNECTION_FORCED and exits 0 (Warren only)', async (t) => {
  if (usingExternalBroker()) {
    t.skip('needs a broker this suite spawns itself (AMQP_URL is set)');
    return;
  }
  // Use a private broker instance: the shared one must survive this test.
  const own = await spawnWarren();
  try {
    const conn = await amqp.connect(own.url);
    const closed = deferred();
    const errors = [];
    conn.on('error', (err) => errors.push(err));
    conn.on('close', (err) => closed.resolve(err));
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    await ch.assertQueue('', { exclusive: true });

    own.process.kill('SIGTERM');

    const err = await withTimeout(closed.promise, 10_000, 'the server to close the connection');
    assert.ok(err, 'the connection must be closed with an error');
    assert.equal(err.code, 320, `expected 320 CONNECTION_FORCED, got: ${err.message}`);
    assert.match(err.message, /CONNECTION[-_]FORCED/);

    const { code, signal } = await withTimeout(own.exited, 10_000, 'warren to exit');
    assert.equal(signal, null, 'warren must exit on its own, not die of the signal');
    assert.equal(code, 0, 'warren must exit with status 0 after SIGTERM');
  } finally {
    await own.stop();
  }
});
