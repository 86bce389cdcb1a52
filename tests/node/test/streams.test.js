'use strict';
// Stream queues (`x-queue-type: stream`) over AMQP 0-9-1 with amqplib, differential against
// RabbitMQ 3.10.8 (run with AMQP_URL / MGMT_URL to check every expectation against it).
//
// Covered:
//   * declare: a stream must be durable, non-exclusive, non-auto-delete (406 naming the
//     property); classic-only arguments and x-single-active-consumer are refused (406
//     "invalid arg ... of queue type rabbit_stream_queue"); x-max-length-bytes, x-max-age,
//     x-stream-max-segment-size-bytes accepted, bad values refused; inequivalent redeclares;
//     declare-ok messageCount = the log's length (RabbitMQ refreshes it with its statistics,
//     so it is polled), consumerCount always 0.
//   * refusals: consume without a per-consumer prefetch (406), noAck consumers, basic.get,
//     queue.purge, basic.nack / basic.reject with or without requeue (540: the connection is
//     closed, nothing is redelivered), consumer priorities (406).
//   * non-destructive reads: two consumers each read everything in order with an
//     x-stream-offset header 0, 1, 2, ...; prefetch bounds unacked deliveries and acks give
//     credit back; a new consumer from `first` reads everything again.
//   * x-stream-offset: absent / next, first, last (start of the last chunk), a number (also
//     beyond the end), an AMQP timestamp ({'!': 'timestamp', value: seconds}), an interval
//     ('1s'), invalid specs (406).
//   * live messages, properties and headers, the management API's view of a stream.
//   * stream filtering (x-stream-filter-value / x-stream-filter / x-stream-match-unfiltered)
//     arrived in RabbitMQ 3.13: those tests follow its documentation and run against Warren only.
//
// Messages that must be separate chunks (last, prefetch windows, time-based offsets) are
// published one at a time on a confirm channel, waiting for each confirm: RabbitMQ writes one
// chunk per batch of pending messages and hands out whole chunks.

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const {
  useBroker,
  uniqueName,
  eventually,
  withTimeout,
  deferred,
  channelClosed,
  usingExternalBroker,
} = require('../helpers/broker');

const broker = useBroker();
const STREAM = { 'x-queue-type': 'stream' };
const WARREN_ONLY_FILTERING = usingExternalBroker()
  ? 'stream filtering (x-stream-filter-value / x-stream-filter) arrived in RabbitMQ 3.13; '
    + 'RabbitMQ 3.10 lacks stream filtering (it ignores the arguments): Warren only'
  : false;

// Streams created by a test, deleted afterwards on a connection of their own.
let created = [];
afterEach(async () => {
  const names = created;
  created = [];
  if (names.length === 0) return;
  const conn = await amqp.connect(broker.url);
  conn.on('error', () => {});
  for (const name of names) {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    await ch.deleteQueue(name).catch(() => {});
    await ch.close().catch(() => {});
  }
  await conn.close().catch(() => {});
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Proving a negative (nothing more arrives) needs a fixed wait. */
const quietPeriod = () => sleep(300);
const bodies = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

function declareStream(ch, name, args = {}) {
  return ch.assertQueue(name, { durable: true, arguments: { ...STREAM, ...args } });
}

async function newStream(conn, args = {}, prefix = 'stream') {
  const name = uniqueName(prefix);
  created.push(name);
  const ch = await broker.channel(conn);
  await declareStream(ch, name, args);
  await ch.close();
  return name;
}

/** Publish each body and wait for its confirm: each message is its own chunk. */
async function publishEach(ch, queue, list, options = {}) {
  for (const body of list) {
    await new Promise((resolve, reject) => {
      ch.sendToQueue(queue, Buffer.from(body), options, (err) => (err ? reject(err) : resolve()));
    });
  }
}

/** A stream consumer on a new channel; acks each delivery unless `ack` is false. */
async function consume(conn, queue, { offset, prefetch = 100, ack = true, args = {}, exclusive = false } = {}) {
  const ch = await broker.channel(conn);
  await ch.prefetch(prefetch);
  const messages = [];
  const state = { ack };
  const waiters = [];
  const { consumerTag } = await ch.consume(queue, (msg) => {
    messages.push(msg);
    if (state.ack) ch.ack(msg);
    for (const w of waiters.slice()) {
      if (messages.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }, { noAck: false, exclusive, arguments: offset === undefined ? args : { ...args, 'x-stream-offset': offset } });
  return {
    ch,
    consumerTag,
    messages,
    state,
    bodies: () => messages.map((m) => m.content.toString()),
    offsets: () => messages.map((m) => m.properties.headers['x-stream-offset']),
    async waitFor(n, timeoutMs = 5000) {
      if (messages.length >= n) return;
      const d = deferred();
      waiters.push({ n, resolve: d.resolve });
      await withTimeout(d.promise, timeoutMs, `${n} deliveries (got ${messages.length})`);
    },
    /** Wait for exactly `expected`, then make sure nothing else arrives. */
    async expectExactly(expected) {
      await this.waitFor(expected.length);
      await quietPeriod();
      assert.deepEqual(this.bodies(), expected);
    },
  };
}

/** The reply text of a server close, from amqplib's error message. */
function replyText(err) {
  const m = /with message "(.*)"$/s.exec(err.message);
  assert.ok(m, `no server reply text in: ${err.message}`);
  return m[1];
}

/** Resolve with the error a connection was closed with. */
function connectionClosed(conn, timeoutMs = 5000) {
  const closed = new Promise((resolve) => conn.once('close', (err) => resolve(err || conn.recordedErrors[0] || null)));
  return withTimeout(closed, timeoutMs, 'the connection to be closed');
}

/** RabbitMQ's rendering of a queue in error texts (the suite uses vhost "/"). */
const rs = (name) => `queue '${name}' in vhost '/'`;

/** Assert that `promise` is refused with a channel error `code` and text `text`. */
async function refusedOnChannel(ch, promise, code, text) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, err.message);
    assert.equal(replyText(err), text);
    return true;
  });
  const err = await channelClosed(ch);
  assert.equal(err.code, code);
}

/** Assert that `action` makes the broker close the connection with `code` and `text`. */
async function refusedOnConnection(conn, action, code, text) {
  const closed = connectionClosed(conn);
  await Promise.resolve().then(action).catch(() => {}); // its own promise rejects with "Channel ended"
  const err = await closed;
  assert.equal(err?.code, code, `connection close: ${err?.message}`);
  assert.equal(replyText(err), text);
}

// ---------------------------------------------------------------------------
// Declaring
// ---------------------------------------------------------------------------

test('a durable stream is declared and redeclared identically', async () => {
  const { ch } = await broker.connectWithChannel();
  const name = uniqueName('stream');
  created.push(name);
  assert.deepEqual(await declareStream(ch, name), { queue: name, messageCount: 0, consumerCount: 0 });
  assert.equal((await declareStream(ch, name)).queue, name);
  assert.equal((await ch.checkQueue(name)).queue, name);
});

for (const [label, options, prop] of [
  ['a non-durable', { durable: false }, 'non-durable'],
  ['an exclusive', { durable: true, exclusive: true }, 'exclusive-owner'],
  ['an auto-delete', { durable: true, autoDelete: true }, 'auto-delete'],
]) {
  test(`declaring ${label} stream is refused with 406 naming the property`, async () => {
    const { conn, ch } = await broker.connectWithChannel();
    const name = uniqueName('stream');
    created.push(name);
    await refusedOnChannel(ch, ch.assertQueue(name, { ...options, arguments: STREAM }), 406,
      `PRECONDITION_FAILED - invalid property '${prop}' for ${rs(name)}`);
    const check = await broker.channel(conn);
    await assert.rejects(check.checkQueue(name), (err) => err.code === 404);
  });
}

for (const [arg, value] of [
  ['x-max-priority', 10],
  ['x-dead-letter-exchange', 'amq.direct'],
  ['x-message-ttl', 1000],
  ['x-expires', 10000],
  ['x-overflow', 'reject-publish'],
  ['x-max-length', 10],
  ['x-queue-mode', 'lazy'],
  ['x-delivery-limit', 3],
  // Single active consumer on streams came with RabbitMQ 3.11, for the stream protocol only.
  ['x-single-active-consumer', true],
]) {
  test(`${arg} on a stream is refused with 406`, async () => {
    const { ch } = await broker.connectWithChannel();
    const name = uniqueName('stream');
    created.push(name);
    await refusedOnChannel(ch, declareStream(ch, name, { [arg]: value }), 406,
      `PRECONDITION_FAILED - invalid arg '${arg}' for ${rs(name)} of queue type rabbit_stream_queue`);
  });
}

test('stream arguments are accepted and an identical redeclare is fine', async () => {
  const { ch } = await broker.connectWithChannel();
  for (const args of [
    { 'x-max-length-bytes': 1000000 },
    { 'x-max-age': '7D' },
    { 'x-max-age': '1h' },
    { 'x-max-age': '30m' },
    { 'x-stream-max-segment-size-bytes': 500000 },
    { 'x-max-length-bytes': 20000000, 'x-max-age': '7D', 'x-stream-max-segment-size-bytes': 1000000 },
  ]) {
    const name = uniqueName('stream-args');
    created.push(name);
    assert.equal((await declareStream(ch, name, args)).queue, name, JSON.stringify(args));
    assert.equal((await declareStream(ch, name, args)).queue, name, JSON.stringify(args));
  }
});

for (const [arg, value, detail] of [
  ['x-max-age', '10', 'invalid_max_age'],
  ['x-max-age', '0D', 'invalid_max_age'],
  ['x-max-length-bytes', -1, '{value_negative,-1}'],
  ['x-stream-max-segment-size-bytes', -1, '{value_negative,-1}'],
]) {
  test(`${arg}=${JSON.stringify(value)} is refused with 406 ${detail}`, async () => {
    const { ch } = await broker.connectWithChannel();
    const name = uniqueName('stream');
    created.push(name);
    await refusedOnChannel(ch, declareStream(ch, name, { [arg]: value }), 406,
      `PRECONDITION_FAILED - invalid arg '${arg}' for ${rs(name)}: ${detail}`);
  });
}

test('inequivalent redeclares of a stream fail with 406 and RabbitMQ\'s texts', async () => {
  const { conn } = await broker.connectWithChannel();
  const name = await newStream(conn);
  for (const [options, text] of [
    [{ durable: true },
      `inequivalent arg 'x-queue-type' for ${rs(name)}: `
      + 'received none but current is the value \'stream\' of type \'longstr\''],
    [{ durable: true, arguments: { 'x-queue-type': 'classic' } },
      `inequivalent arg 'x-queue-type' for ${rs(name)}: received 'classic' but current is 'stream'`],
    [{ durable: true, arguments: { ...STREAM, 'x-max-age': '1h' } },
      `inequivalent arg 'x-max-age' for ${rs(name)}: received the value '1h' of type 'longstr' but current is none`],
    [{ durable: false, arguments: STREAM },
      `inequivalent arg 'durable' for ${rs(name)}: received 'false' but current is 'true'`],
  ]) {
    const ch = await broker.channel(conn);
    await refusedOnChannel(ch, ch.assertQueue(name, options), 406, `PRECONDITION_FAILED - ${text}`);
  }
});

test('declare-ok counts the messages in the log and reports no consumers', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  await publishEach(await broker.channel(conn, { confirm: true }), name, bodies('m', 5));
  // Reading is non-destructive: after a consumer read and acked all 5, they are all still there.
  const reader = await consume(conn, name, { offset: 'first' });
  await reader.waitFor(5);
  const ch = await broker.channel(conn);
  // RabbitMQ refreshes the count with its statistics (every few seconds); its declare-ok
  // consumer count is always 0 for a stream, even with a consumer attached.
  await eventually(async () => {
    assert.deepEqual(await ch.checkQueue(name), { queue: name, messageCount: 5, consumerCount: 0 });
  }, 10000, 100);
  assert.deepEqual(await declareStream(ch, name), { queue: name, messageCount: 5, consumerCount: 0 });
});

// ---------------------------------------------------------------------------
// What a stream refuses
// ---------------------------------------------------------------------------

test('consuming without a per-consumer prefetch is refused with 406', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const text = `PRECONDITION_FAILED - consumer prefetch count is not set for '${rs(name)}'`;
  const ch = await broker.channel(conn);
  await refusedOnChannel(ch, ch.consume(name, () => {}), 406, text);
  // A global prefetch alone does not count.
  const global = await broker.channel(conn);
  await global.prefetch(10, true);
  await refusedOnChannel(global, global.consume(name, () => {}), 406, text);
});

test('a noAck consumer on a stream closes the connection with 540', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const ch = await broker.channel(conn);
  await ch.prefetch(10);
  await refusedOnConnection(conn, () => ch.consume(name, () => {}, { noAck: true }), 540,
    `NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues ${rs(name)}`);
});

test('basic.get on a stream closes the connection with 540', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const ch = await broker.channel(conn);
  await refusedOnConnection(conn, () => ch.get(name), 540,
    `NOT_IMPLEMENTED - basic.get not supported by stream queues ${rs(name)}`);
});

test('queue.purge on a stream closes the connection with 540', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const ch = await broker.channel(conn);
  await refusedOnConnection(conn, () => ch.purgeQueue(name), 540,
    `NOT_IMPLEMENTED - queue.purge not supported by stream queues ${rs(name)}`);
});

for (const [label, settle] of [
  ['nack requeue=true', (ch, msg) => ch.nack(msg, false, true)],
  ['nack requeue=false', (ch, msg) => ch.nack(msg, false, false)],
  ['reject requeue=true', (ch, msg) => ch.reject(msg, true)],
  ['reject requeue=false', (ch, msg) => ch.reject(msg, false)],
]) {
  test(`${label} on a stream delivery closes the connection with 540 (no redelivery)`, async () => {
    const conn = await broker.connect();
    const name = await newStream(conn);
    await publishEach(await broker.channel(conn, { confirm: true }), name, bodies('m', 3));
    const c = await consume(conn, name, { offset: 'first', ack: false });
    await c.waitFor(3);
    await refusedOnConnection(conn, () => settle(c.ch, c.messages[0]), 540,
      `NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues ${rs(name)}`);
    // The log is untouched.
    const other = await broker.connect();
    const again = await consume(other, name, { offset: 'first' });
    await again.expectExactly(bodies('m', 3));
  });
}

test('a consumer priority on a stream is refused with 406', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const ch = await broker.channel(conn);
  await ch.prefetch(10);
  await refusedOnChannel(ch, ch.consume(name, () => {}, { priority: 5 }), 406,
    `PRECONDITION_FAILED - invalid arg 'x-priority' for ${rs(name)} of queue type rabbit_stream_queue`);
});

// ---------------------------------------------------------------------------
// Non-destructive reading
// ---------------------------------------------------------------------------

test('two consumers each read the whole stream in order, with x-stream-offset headers', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn);
  const expected = bodies('m', 20);
  for (const b of expected) pub.sendToQueue(name, Buffer.from(b)); // batched: chunks do not matter

  const a = await consume(await broker.connect(), name, { offset: 'first', prefetch: 5 });
  const b = await consume(await broker.connect(), name, { offset: 'first', prefetch: 50 });
  for (const c of [a, b]) {
    await c.expectExactly(expected);
    assert.deepEqual(c.offsets(), [...Array(20).keys()]);
    assert.deepEqual(c.messages.map((m) => m.fields.deliveryTag), [...Array(20).keys()].map((i) => i + 1));
    assert.ok(c.messages.every((m) => m.fields.redelivered === false));
  }
});

test('prefetch bounds the unacked deliveries and acks give credit back', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const expected = bodies('m', 100);
  await publishEach(await broker.channel(conn, { confirm: true }), name, expected); // one chunk each

  const c = await consume(conn, name, { offset: 'first', prefetch: 10, ack: false });
  await c.expectExactly(expected.slice(0, 10));
  // Ack what we hold, and from now on ack as we go: all 100 arrive.
  c.state.ack = true;
  c.ch.ack(c.messages[9], true);
  await c.waitFor(100);
  assert.deepEqual(c.bodies(), expected);
  assert.deepEqual(c.offsets(), [...Array(100).keys()]);
});

test('after a cancel, a new consumer from first reads everything again', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const expected = bodies('m', 10);
  await publishEach(await broker.channel(conn, { confirm: true }), name, expected);
  const first = await consume(conn, name, { offset: 'first' });
  await first.expectExactly(expected);
  await first.ch.cancel(first.consumerTag);
  const again = await consume(conn, name, { offset: 'first' });
  await again.expectExactly(expected);
  assert.deepEqual(again.offsets(), [...Array(10).keys()]);
});

// ---------------------------------------------------------------------------
// x-stream-offset
// ---------------------------------------------------------------------------

for (const offset of [undefined, 'next']) {
  test(`x-stream-offset ${offset ?? 'absent'}: only messages published after subscribing`, async () => {
    const conn = await broker.connect();
    const name = await newStream(conn);
    const pub = await broker.channel(conn, { confirm: true });
    await publishEach(pub, name, bodies('old', 3));
    const c = await consume(conn, name, { offset });
    await publishEach(pub, name, bodies('new', 2));
    await c.expectExactly(bodies('new', 2));
    assert.deepEqual(c.offsets(), [3, 4]);
  });
}

test('x-stream-offset first: the whole log, then live messages', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn, { confirm: true });
  await publishEach(pub, name, bodies('before', 3));
  const c = await consume(conn, name, { offset: 'first' });
  await c.waitFor(3);
  await publishEach(pub, name, bodies('live', 2));
  await c.expectExactly([...bodies('before', 3), ...bodies('live', 2)]);
  assert.deepEqual(c.offsets(), [0, 1, 2, 3, 4]);
});

test('x-stream-offset last: starts at the last chunk (here the last message)', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn, { confirm: true });
  await publishEach(pub, name, bodies('m', 5)); // confirmed one by one: one chunk each
  const c = await consume(conn, name, { offset: 'last' });
  await c.expectExactly(['m4']);
  assert.deepEqual(c.offsets(), [4]);
  await publishEach(pub, name, ['live']);
  await c.expectExactly(['m4', 'live']);
});

test('a numeric x-stream-offset starts there; beyond the end it waits for that offset', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn, { confirm: true });
  await publishEach(pub, name, bodies('m', 10));
  const five = await consume(conn, name, { offset: 5 });
  await five.expectExactly(bodies('m', 10).slice(5));
  assert.deepEqual(five.offsets(), [5, 6, 7, 8, 9]);

  const ahead = await consume(conn, name, { offset: 12 });
  await publishEach(pub, name, ['o10', 'o11', 'o12', 'o13']);
  await ahead.expectExactly(['o12', 'o13']);
  assert.deepEqual(ahead.offsets(), [12, 13]);
});

test('timestamp and interval offsets select by publish time', async () => {
  // Chunks are stamped with the broker's clock when written. After batch A, wait (at most
  // ~1.4 s of wall-clock time, which is what these offsets are about) until a whole second Ts
  // lies between A and batch B with 0.2 s of margin, and until A is more than 1 s old. Then
  // the timestamp Ts and the interval '1s' (measured from the subscription) select exactly B.
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn, { confirm: true });
  await publishEach(pub, name, bodies('a', 3));
  const tA = Date.now() / 1000;
  const ts = Math.floor(tA + 0.2) + 1;
  await sleep(Math.max(0, (Math.max(ts + 0.2, tA + 1.3) - Date.now() / 1000) * 1000));
  await publishEach(pub, name, bodies('b', 3));

  const stamp = (seconds) => ({ '!': 'timestamp', value: seconds });
  const byInterval = await consume(conn, name, { offset: '1s' });
  const byTimestamp = await consume(conn, name, { offset: stamp(ts) });
  const older = await consume(conn, name, { offset: stamp(ts - 60) });
  const future = await consume(conn, name, { offset: stamp(ts + 3600) });
  await Promise.all([byInterval.waitFor(3), byTimestamp.waitFor(3), older.waitFor(6)]);
  await quietPeriod();
  assert.deepEqual(byInterval.bodies(), bodies('b', 3));
  assert.deepEqual(byInterval.offsets(), [3, 4, 5]);
  assert.deepEqual(byTimestamp.bodies(), bodies('b', 3));
  assert.deepEqual(older.bodies(), [...bodies('a', 3), ...bodies('b', 3)]);
  assert.deepEqual(future.bodies(), []);
  await publishEach(pub, name, ['later']);
  await future.expectExactly(['later']);
});

for (const offset of ['30', '0s']) {
  test(`x-stream-offset '${offset}' is refused with 406`, async () => {
    const conn = await broker.connect();
    const name = await newStream(conn);
    const ch = await broker.channel(conn);
    await ch.prefetch(10);
    await refusedOnChannel(ch, ch.consume(name, () => {}, { arguments: { 'x-stream-offset': offset } }), 406,
      `PRECONDITION_FAILED - invalid arg 'x-stream-offset' for ${rs(name)}: `
      + `{invalid_stream_offset_arg,{longstr,<<"${offset}">>}}`);
  });
}

// ---------------------------------------------------------------------------
// Publishing into a stream
// ---------------------------------------------------------------------------

test('messages published before and while consuming all arrive, in order', async () => {
  const pubConn = await broker.connect();
  const name = await newStream(pubConn);
  const pub = await broker.channel(pubConn);
  for (const b of bodies('before', 50)) pub.sendToQueue(name, Buffer.from(b));
  const c = await consume(await broker.connect(), name, { offset: 'first', prefetch: 7 });
  await c.waitFor(10);
  for (const b of bodies('during', 50)) pub.sendToQueue(name, Buffer.from(b));
  await c.expectExactly([...bodies('before', 50), ...bodies('during', 50)]);
  assert.deepEqual(c.offsets(), [...Array(100).keys()]);
});

test('message properties and headers survive a stream', async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await broker.channel(conn, { confirm: true });
  await publishEach(pub, name, ['{"k":1}'], {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { h1: 'v', n: 42 },
    deliveryMode: 2,
    priority: 3,
    correlationId: 'corr-1',
    replyTo: 'replies',
    expiration: '60000',
    messageId: 'mid-1',
    timestamp: 1700000000,
    type: 'kind',
    userId: 'guest',
    appId: 'app',
  });
  await publishEach(pub, name, ['plain']);
  const c = await consume(conn, name, { offset: 'first' });
  await c.expectExactly(['{"k":1}', 'plain']);
  const [got, plain] = c.messages.map((m) => m.properties);
  assert.equal(got.contentType, 'application/json');
  assert.equal(got.contentEncoding, 'utf-8');
  assert.deepEqual(got.headers, { h1: 'v', n: 42, 'x-stream-offset': 0 });
  assert.equal(got.deliveryMode, 2);
  assert.equal(got.priority, 3);
  assert.equal(got.correlationId, 'corr-1');
  assert.equal(got.replyTo, 'replies');
  assert.equal(got.expiration, '60000');
  assert.equal(got.messageId, 'mid-1');
  assert.equal(got.timestamp, 1700000000);
  assert.equal(got.type, 'kind');
  assert.equal(got.userId, 'guest');
  assert.equal(got.appId, 'app');
  assert.deepEqual(plain.headers, { 'x-stream-offset': 1 });
  assert.equal(plain.contentType, undefined);
  assert.equal(plain.messageId, undefined);
});

// ---------------------------------------------------------------------------
// Stream filtering (RabbitMQ 3.13 semantics; Warren only)
// ---------------------------------------------------------------------------

/** a0(a) b0(b) n0(-) a1(a) b1(b) n1(-), one chunk each. */
async function publishFiltered(conn, name) {
  const pub = await broker.channel(conn, { confirm: true });
  for (let i = 0; i < 2; i++) {
    for (const value of ['a', 'b', null]) {
      await publishEach(pub, name, [`${value ?? 'n'}${i}`],
        value ? { headers: { 'x-stream-filter-value': value } } : {});
    }
  }
  return pub;
}

const filtering = { skip: WARREN_ONLY_FILTERING };

test('x-stream-filter delivers the matching messages (and Warren exactly those)', filtering, async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  const pub = await publishFiltered(conn, name);
  const c = await consume(conn, name, { offset: 'first', args: { 'x-stream-filter': ['a'] } });
  await c.waitFor(2);
  await quietPeriod();
  // RabbitMQ's Bloom filters may let others through (a superset); Warren filters exactly.
  assert.deepEqual(c.messages.filter((m) => m.properties.headers['x-stream-filter-value'] === 'a')
    .map((m) => m.content.toString()), ['a0', 'a1']);
  if (!usingExternalBroker()) assert.deepEqual(c.bodies(), ['a0', 'a1']);
  assert.equal(c.messages[0].properties.headers['x-stream-filter-value'], 'a');
  // Live messages are filtered as well.
  await publishEach(pub, name, ['b-live'], { headers: { 'x-stream-filter-value': 'b' } });
  await publishEach(pub, name, ['a-live'], { headers: { 'x-stream-filter-value': 'a' } });
  await c.waitFor(3);
  await quietPeriod();
  assert.equal(c.bodies().at(-1), 'a-live');
  if (!usingExternalBroker()) assert.deepEqual(c.bodies(), ['a0', 'a1', 'a-live']);
});

test('x-stream-match-unfiltered also delivers messages without a filter value', filtering, async () => {
  const conn = await broker.connect();
  const name = await newStream(conn);
  await publishFiltered(conn, name);
  const c = await consume(conn, name, {
    offset: 'first',
    args: { 'x-stream-filter': 'a', 'x-stream-match-unfiltered': true },
  });
  await c.waitFor(4);
  await quietPeriod();
  assert.deepEqual(c.bodies().filter((b) => !b.startsWith('b')), ['a0', 'n0', 'a1', 'n1']);
  if (!usingExternalBroker()) assert.deepEqual(c.bodies(), ['a0', 'n0', 'a1', 'n1']);
});

// ---------------------------------------------------------------------------
// Management API
// ---------------------------------------------------------------------------

test('the management API shows the stream, its arguments, messages and consumers', async (t) => {
  if (!broker.mgmtUrl) {
    t.skip('AMQP_URL is set without MGMT_URL: no management API to ask');
    return;
  }
  const conn = await broker.connect();
  const name = await newStream(conn, { 'x-max-age': '7D', 'x-max-length-bytes': 1000000 });
  await publishEach(await broker.channel(conn, { confirm: true }), name, bodies('m', 4));
  const c = await consume(conn, name, { offset: 'first', prefetch: 7 });
  await c.waitFor(4);

  const path = `/api/queues/%2F/${encodeURIComponent(name)}`;
  const { status, json } = await broker.http('GET', path);
  assert.equal(status, 200);
  assert.equal(json.name, name);
  assert.equal(json.type, 'stream');
  assert.equal(json.durable, true);
  assert.equal(json.auto_delete, false);
  assert.equal(json.exclusive, false);
  assert.deepEqual(json.arguments, { 'x-queue-type': 'stream', 'x-max-age': '7D', 'x-max-length-bytes': 1000000 });
  // Counts come with RabbitMQ's statistics (every few seconds): poll.
  await eventually(async () => {
    const q = (await broker.http('GET', path)).json;
    assert.deepEqual([q.messages, q.consumers, q.state], [4, 1, 'running']);
  }, 10000, 100);
});
