'use strict';
// Message and queue lifetime: per-queue and per-message TTL, queue expiry
// (x-expires), length limits and overflow behaviour, priority queues, queue
// argument validation and x-queue-type. Dead-lettering details (x-death) are
// covered by tests/python/test_lifetime.py.
//
// Every expectation here was checked against RabbitMQ 3.10. Timing-based
// behaviour uses short TTLs and polls with eventually(); a fixed wait is only
// used where the point is that something does NOT happen.

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { useBroker, uniqueName, eventually, getMessage, deferred, withTimeout, channelClosed } = require('../helpers/broker');

const broker = useBroker();

// Queues created by the current test; deleted after it from a fresh
// connection (the test's own channels may have been closed by the broker).
let created = [];

function name(prefix) {
  const n = uniqueName(`lifetime-${prefix}`);
  created.push(n);
  return n;
}

afterEach(async () => {
  const names = created;
  created = [];
  if (names.length === 0) return;
  let conn;
  try {
    conn = await amqp.connect(broker.url);
    conn.on('error', () => {});
  } catch {
    return;
  }
  try {
    for (const n of names) {
      // One channel per delete: deleting something missing is harmless in
      // 0-9-1, but a failure must not stop the rest of the cleanup.
      try {
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        await ch.deleteQueue(n);
        await ch.close();
      } catch {
        // ignore
      }
      try {
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        await ch.deleteExchange(n);
        await ch.close();
      } catch {
        // ignore
      }
    }
  } finally {
    await conn.close().catch(() => {});
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Message count of `queue` via a passive declare on its own channel. */
async function messageCount(conn, queue) {
  const ch = await broker.channel(conn);
  const ok = await ch.checkQueue(queue);
  await ch.close();
  return ok.messageCount;
}

/** True if the queue exists, false if a passive declare fails with 404. */
async function queueExists(conn, queue) {
  const ch = await broker.channel(conn);
  try {
    await ch.checkQueue(queue);
    await ch.close();
    return true;
  } catch (err) {
    if (err.code === 404) return false;
    throw err;
  }
}

/** basic.get (no-ack) until the queue is empty; returns the bodies as strings. */
async function drainBodies(ch, queue) {
  const out = [];
  for (;;) {
    const msg = await ch.get(queue, { noAck: true });
    if (!msg) return out;
    out.push(msg.content.toString());
  }
}

/** Wait until `queue` holds exactly `n` messages (publishing is asynchronous). */
function waitForCount(conn, queue, n, timeoutMs = 5000) {
  return eventually(async () => {
    assert.equal(await messageCount(conn, queue), n, `message count of ${queue}`);
  }, timeoutMs);
}

/** Publish on a ConfirmChannel; resolves 'ack' or 'nack'. */
function publishConfirmed(ch, queue, body, options = {}) {
  return new Promise((resolve) => {
    ch.sendToQueue(queue, Buffer.from(body), options, (err) => resolve(err ? 'nack' : 'ack'));
  });
}

/** Assert that declaring `queue` with `args` closes the channel with 406. */
async function assertDeclareRejected(conn, queue, args, options = {}) {
  const ch = await broker.channel(conn);
  await assert.rejects(ch.assertQueue(queue, { ...options, arguments: args }), (err) => {
    assert.equal(err.code, 406, `expected 406 for ${JSON.stringify(args)}, got ${err.code}: ${err.message}`);
    assert.match(err.message, /PRECONDITION[-_]FAILED/);
    return true;
  });
  const closedWith = await channelClosed(ch);
  assert.equal(closedWith?.code, 406);
  return closedWith;
}

// ---------------------------------------------------------------------------
// Per-queue TTL (x-message-ttl)
// ---------------------------------------------------------------------------

test('x-message-ttl: expired messages leave the queue without any consumer and are never delivered', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('qttl');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 200 } });
  for (const b of ['a', 'b', 'c']) ch.sendToQueue(q, Buffer.from(b));

  // No consumer and no basic.get: the broker removes them by itself.
  await waitForCount(conn, q, 0);
  assert.equal(await ch.get(q, { noAck: true }), false, 'an expired message must not be delivered');
});

test('x-message-ttl: a message consumed before its TTL is delivered normally', async () => {
  const { ch } = await broker.connectWithChannel();
  const q = name('qttl-live');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 3000 } });
  ch.sendToQueue(q, Buffer.from('fresh'));
  const msg = await getMessage(ch, q);
  assert.equal(msg.content.toString(), 'fresh');
  // The queue TTL is not exposed as a per-message expiration property.
  assert.equal(msg.properties.expiration, undefined);
});

test('x-message-ttl: a consumer attached after expiry receives nothing', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('qttl-consumer');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 150 } });
  ch.sendToQueue(q, Buffer.from('gone'));
  await waitForCount(conn, q, 0);

  const got = [];
  await ch.consume(q, (msg) => got.push(msg.content.toString()), { noAck: true });
  ch.sendToQueue(q, Buffer.from('live'));
  await eventually(() => assert.deepEqual(got, ['live']));
  await sleep(300);
  assert.deepEqual(got, ['live']);
});

// ---------------------------------------------------------------------------
// Per-message TTL (expiration property)
// ---------------------------------------------------------------------------

test('expiration property: an expired message is dropped, messages without expiration stay', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('msgttl');
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('short'), { expiration: '100' });
  ch.sendToQueue(q, Buffer.from('forever'));

  await waitForCount(conn, q, 1);
  assert.deepEqual(await drainBodies(ch, q), ['forever']);
});

test('expiration property: an expired message behind a live one is never delivered', async () => {
  const { ch } = await broker.connectWithChannel();
  const q = name('msgttl-behind');
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('long'), { expiration: '60000' });
  ch.sendToQueue(q, Buffer.from('short'), { expiration: '50' });
  ch.sendToQueue(q, Buffer.from('plain'));
  // RabbitMQ only removes expired messages from the head eagerly, so the
  // count cannot be polled here; wait well past the short TTL instead.
  await sleep(300);
  const got = [];
  for (;;) {
    const msg = await ch.get(q, { noAck: true });
    if (!msg) break;
    got.push([msg.content.toString(), msg.properties.expiration]);
  }
  assert.deepEqual(got, [
    ['long', '60000'],
    ['plain', undefined],
  ]);
});

test('TTL: the lower of x-message-ttl and expiration applies (message shorter)', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('lower-msg');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 60000 } });
  ch.sendToQueue(q, Buffer.from('m'), { expiration: '100' });
  await waitForCount(conn, q, 0);
  assert.equal(await ch.get(q, { noAck: true }), false);
});

test('TTL: the lower of x-message-ttl and expiration applies (queue shorter)', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('lower-queue');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 150 } });
  ch.sendToQueue(q, Buffer.from('m'), { expiration: '60000' });
  await waitForCount(conn, q, 0);
  assert.equal(await ch.get(q, { noAck: true }), false);
});

// ---------------------------------------------------------------------------
// TTL 0
// ---------------------------------------------------------------------------

test('x-message-ttl 0: delivered when a consumer is ready at publish time', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('ttl0-consumer');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 0 } });
  const got = [];
  await ch.consume(q, (msg) => got.push(msg.content.toString()), { noAck: true });
  const pub = await broker.channel(conn);
  for (const b of ['one', 'two', 'three']) pub.sendToQueue(q, Buffer.from(b));
  await eventually(() => assert.deepEqual(got, ['one', 'two', 'three']));
});

test('x-message-ttl 0: dropped when no consumer is ready at publish time', async () => {
  const { conn, ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('ttl0-none');
  await ch.assertQueue(q, { arguments: { 'x-message-ttl': 0 } });
  assert.equal(await publishConfirmed(ch, q, 'nobody-home'), 'ack');
  await waitForCount(conn, q, 0);
  assert.equal(await ch.get(q, { noAck: true }), false);

  // A consumer that arrives afterwards does not see it either.
  const got = [];
  await ch.consume(q, (msg) => got.push(msg.content.toString()), { noAck: true });
  await sleep(200);
  assert.deepEqual(got, []);
});

test('expiration "0": delivered to a ready consumer, dropped otherwise', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const idle = name('exp0-idle');
  const busy = name('exp0-busy');
  await ch.assertQueue(idle);
  await ch.assertQueue(busy);
  const got = [];
  await ch.consume(busy, (msg) => got.push([msg.content.toString(), msg.properties.expiration]), { noAck: true });

  const pub = await broker.channel(conn);
  pub.sendToQueue(idle, Buffer.from('dropped'), { expiration: '0' });
  pub.sendToQueue(busy, Buffer.from('delivered'), { expiration: '0' });
  await eventually(() => assert.deepEqual(got, [['delivered', '0']]));
  await waitForCount(conn, idle, 0);
  assert.equal(await ch.get(idle, { noAck: true }), false);
});

// ---------------------------------------------------------------------------
// Queue expiry (x-expires)
//
// In RabbitMQ every queue.declare of the queue -- passive ones included --
// renews its lease, as does basic.get. So existence is polled with an
// interval longer than x-expires, otherwise the polling itself would keep the
// queue alive.
// ---------------------------------------------------------------------------

const EXPIRES_MS = 200;
const EXPIRES_POLL_MS = 450;

function eventuallyGone(conn, q) {
  return eventually(
    async () => assert.equal(await queueExists(conn, q), false, `queue ${q} should have expired`),
    6000,
    EXPIRES_POLL_MS,
  );
}

test('x-expires: an unused queue is deleted after the period', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('expires');
  await ch.assertQueue(q, { arguments: { 'x-expires': EXPIRES_MS } });
  await eventuallyGone(conn, q);
  // The passive declare of an expired queue fails with 404 NOT_FOUND.
  const probe = await broker.channel(conn);
  await assert.rejects(probe.checkQueue(q), (err) => {
    assert.equal(err.code, 404);
    assert.match(err.message, /NOT[-_]FOUND/);
    return true;
  });
});

test('x-expires: messages in the queue do not keep it alive', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('expires-msgs');
  await ch.assertQueue(q, { arguments: { 'x-expires': EXPIRES_MS } });
  ch.sendToQueue(q, Buffer.from('left behind'));
  await eventuallyGone(conn, q);
});

test('x-expires: redeclaring the queue and basic.get renew the lease', async () => {
  const { conn, ch: first } = await broker.connectWithChannel();
  let ch = first;
  const EXPIRES = 1000;
  const args = { arguments: { 'x-expires': EXPIRES } };
  // Touch the queue every 100 ms for three periods. The broker saw touch i-1 before its reply
  // arrived and touch i after it was sent, so the longest time it could have gone untouched is at
  // most max(reply_i - sent_{i-1}). Only when that stayed under the period must the queue be alive;
  // a round where the machine stalled longer proves nothing and is run again (three at most).
  for (let round = 1; ; round++) {
    const q = name('expires-renew');
    await ch.assertQueue(q, args);
    let prevSent = Date.now();
    let worstGap = 0;
    const until = Date.now() + 3 * EXPIRES;
    let i = 0;
    while (Date.now() < until) {
      await sleep(100);
      const sent = Date.now();
      try {
        if (i++ % 2 === 0) await ch.assertQueue(q, args);
        else await ch.get(q, { noAck: true });
      } catch (err) {
        if (err.code !== 404) throw err;
        // It expired while touched: only a stall of a whole period may explain that.
        const gap = Date.now() - prevSent;
        assert.ok(gap >= EXPIRES, `the queue expired although touched within ${gap} ms of a ${EXPIRES} ms period`);
        worstGap = gap;
        break;
      }
      worstGap = Math.max(worstGap, Date.now() - prevSent);
      prevSent = sent;
    }
    if (worstGap < EXPIRES) {
      // The existence check is one more touch, measured the same way.
      const alive = await queueExists(conn, q);
      const gap = Date.now() - prevSent;
      if (!alive) {
        assert.ok(gap >= EXPIRES, `a queue in use expired (touched within ${gap} ms of a ${EXPIRES} ms period)`);
        worstGap = gap;
      }
    }
    if (worstGap < EXPIRES) {
      // Polled less often than the period: the existence check itself renews the lease.
      await eventually(async () => assert.equal(await queueExists(conn, q), false), 15000, EXPIRES + 500);
      return;
    }
    assert.ok(round < 3, `three rounds in a row stalled for a whole period (${worstGap} ms)`);
    ch = await broker.channel(conn); // a 404 above closed the channel
  }
});

test('x-expires: a queue with a consumer is not deleted; it expires once the consumer is gone', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('expires-consumed');
  await ch.assertQueue(q, { arguments: { 'x-expires': EXPIRES_MS } });
  const { consumerTag } = await ch.consume(q, () => {}, { noAck: true });

  await sleep(4 * EXPIRES_MS); // several expiry periods without any other use
  assert.equal(await queueExists(conn, q), true, 'a queue with a consumer must not expire');

  await ch.cancel(consumerTag);
  await eventuallyGone(conn, q);
});

test('x-expires: a consumer on another connection going away starts the countdown', async () => {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  const q = name('expires-conn');
  await ch.assertQueue(q, { arguments: { 'x-expires': EXPIRES_MS } });
  const consumerConn = await broker.connect();
  const cch = await broker.channel(consumerConn);
  await cch.consume(q, () => {}, { noAck: true });
  await sleep(3 * EXPIRES_MS);
  assert.equal(await queueExists(conn, q), true);
  await consumerConn.close();
  await eventuallyGone(conn, q);
});

// ---------------------------------------------------------------------------
// Length limits
// ---------------------------------------------------------------------------

test('x-max-length (default drop-head): the oldest messages are dropped', async () => {
  const { conn, ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('maxlen');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 3 } });
  for (let i = 1; i <= 5; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  await ch.waitForConfirms(); // all five have been routed
  assert.equal(await messageCount(conn, q), 3);
  assert.deepEqual(await drainBodies(ch, q), ['m3', 'm4', 'm5']);
  assert.equal(await messageCount(conn, q), 0);
});

test('x-max-length with explicit x-overflow drop-head behaves the same', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('maxlen-drophead');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 2, 'x-overflow': 'drop-head' } });
  const outcomes = [];
  for (let i = 1; i <= 4; i++) outcomes.push(await publishConfirmed(ch, q, `m${i}`));
  assert.deepEqual(outcomes, ['ack', 'ack', 'ack', 'ack'], 'drop-head never nacks a publish');
  assert.deepEqual(await drainBodies(ch, q), ['m3', 'm4']);
});

test('x-max-length 0: every message is dropped', async () => {
  const { conn, ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('maxlen0');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 0 } });
  assert.equal(await publishConfirmed(ch, q, 'x'), 'ack');
  assert.equal(await messageCount(conn, q), 0);
  assert.equal(await ch.get(q, { noAck: true }), false);
});

test('x-max-length-bytes: oldest messages are dropped to keep the body total under the limit', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('maxbytes');
  await ch.assertQueue(q, { arguments: { 'x-max-length-bytes': 10 } });
  // Only the body counts: three 4-byte bodies exceed 10 bytes, two do not.
  const outcomes = [];
  for (const b of ['aaaa', 'bbbb', 'cccc']) {
    outcomes.push(await publishConfirmed(ch, q, b, { headers: { padding: 'x'.repeat(100) } }));
  }
  assert.deepEqual(outcomes, ['ack', 'ack', 'ack']);
  assert.equal((await ch.checkQueue(q)).messageCount, 2);
  assert.deepEqual(await drainBodies(ch, q), ['bbbb', 'cccc']);
});

test('x-max-length-bytes: a single message larger than the limit is dropped', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('maxbytes-big');
  await ch.assertQueue(q, { arguments: { 'x-max-length-bytes': 5 } });
  assert.equal(await publishConfirmed(ch, q, 'ok'), 'ack');
  assert.equal(await publishConfirmed(ch, q, 'far too large'), 'ack');
  assert.deepEqual(await drainBodies(ch, q), []);
});

test('x-overflow reject-publish: with confirms the overflowing publish is nacked and the queue keeps the oldest', async () => {
  const { conn, ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('rejpub');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
  const outcomes = [];
  for (const b of ['m1', 'm2', 'm3', 'm4']) outcomes.push(await publishConfirmed(ch, q, b));
  assert.deepEqual(outcomes, ['ack', 'ack', 'nack', 'nack']);

  // amqplib's waitForConfirms also reports the nack as an error.
  ch.sendToQueue(q, Buffer.from('m5'));
  await assert.rejects(ch.waitForConfirms());

  assert.equal(await messageCount(conn, q), 2);
  const first = await ch.get(q, { noAck: true });
  assert.equal(first.content.toString(), 'm1');

  // Once there is room again, publishes are accepted.
  assert.equal(await publishConfirmed(ch, q, 'm6'), 'ack');
  assert.equal(await publishConfirmed(ch, q, 'm7'), 'nack');
  assert.deepEqual(await drainBodies(ch, q), ['m2', 'm6']);
  assert.equal(conn.recordedErrors.length, 0);
});

test('x-overflow reject-publish: without confirms the overflow is silently dropped', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('rejpub-noconfirm');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
  for (const b of ['m1', 'm2', 'm3', 'm4']) ch.sendToQueue(q, Buffer.from(b));
  // Routing is asynchronous (even RabbitMQ may answer a passive declare on
  // the same channel before the last publishes reached the queue): wait for
  // the two accepted ones, give the refused ones time to arrive, then check
  // that the channel survived and the newest messages were the ones refused.
  await waitForCount(conn, q, 2);
  await sleep(200);
  assert.equal((await ch.checkQueue(q)).messageCount, 2);
  assert.deepEqual(await drainBodies(ch, q), ['m1', 'm2']);
  assert.equal(conn.recordedErrors.length, 0);
});

test('x-overflow reject-publish with x-max-length-bytes nacks the publish that would exceed the limit', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const q = name('rejpub-bytes');
  await ch.assertQueue(q, { arguments: { 'x-max-length-bytes': 10, 'x-overflow': 'reject-publish' } });
  const outcomes = [];
  for (const b of ['aaaa', 'bbbb', 'cccc']) outcomes.push(await publishConfirmed(ch, q, b));
  assert.deepEqual(outcomes, ['ack', 'ack', 'nack']);
  assert.deepEqual(await drainBodies(ch, q), ['aaaa', 'bbbb']);
});

test('x-overflow reject-publish only nacks for the full queue when a message is routed to several', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const ex = name('rejpub-fanout');
  const full = name('rejpub-full');
  const roomy = name('rejpub-roomy');
  await ch.assertExchange(ex, 'fanout', { autoDelete: false });
  await ch.assertQueue(full, { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
  await ch.assertQueue(roomy);
  await ch.bindQueue(full, ex, '');
  await ch.bindQueue(roomy, ex, '');
  const publish = (body) =>
    new Promise((resolve) => ch.publish(ex, '', Buffer.from(body), {}, (err) => resolve(err ? 'nack' : 'ack')));
  assert.equal(await publish('first'), 'ack');
  // The second copy is refused by `full`, so the publish is nacked, but the
  // copy for `roomy` is still enqueued.
  assert.equal(await publish('second'), 'nack');
  assert.deepEqual(await drainBodies(ch, full), ['first']);
  assert.deepEqual(await drainBodies(ch, roomy), ['first', 'second']);
});

// ---------------------------------------------------------------------------
// Priority queues
// ---------------------------------------------------------------------------

/** Publish everything, wait until it is all enqueued, then consume it. */
async function publishThenConsume(conn, ch, q, messages) {
  for (const [body, priority] of messages) {
    ch.sendToQueue(q, Buffer.from(body), priority === undefined ? {} : { priority });
  }
  await waitForCount(conn, q, messages.length);
  const cch = await broker.channel(conn);
  const got = [];
  const done = deferred();
  await cch.consume(
    q,
    (msg) => {
      got.push(msg.content.toString());
      if (got.length === messages.length) done.resolve();
    },
    { noAck: true },
  );
  await withTimeout(done.promise, 5000, `${messages.length} deliveries`);
  return got;
}

test('x-max-priority: higher priority first, FIFO within a priority, no priority counts as 0', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('prio');
  await ch.assertQueue(q, { arguments: { 'x-max-priority': 10 } });
  const got = await publishThenConsume(conn, ch, q, [
    ['none-1', undefined],
    ['p1-1', 1],
    ['p5-1', 5],
    ['p0-1', 0],
    ['p10-1', 10],
    ['p5-2', 5],
    ['p1-2', 1],
    ['none-2', undefined],
    ['p10-2', 10],
    ['p5-3', 5],
  ]);
  assert.deepEqual(got, ['p10-1', 'p10-2', 'p5-1', 'p5-2', 'p5-3', 'p1-1', 'p1-2', 'none-1', 'p0-1', 'none-2']);
});

test('x-max-priority: a priority above the maximum is treated as the maximum', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('prio-cap');
  await ch.assertQueue(q, { arguments: { 'x-max-priority': 5 } });
  const got = await publishThenConsume(conn, ch, q, [
    ['p4', 4],
    ['p9', 9],
    ['p5', 5],
    ['p200', 200],
    ['p0', 0],
  ]);
  // 9, 5 and 200 all land in priority 5 and keep their publish order.
  assert.deepEqual(got, ['p9', 'p5', 'p200', 'p4', 'p0']);
});

test('x-max-priority: basic.get also honours priority and the property is delivered unchanged', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('prio-get');
  await ch.assertQueue(q, { arguments: { 'x-max-priority': 3 } });
  ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
  ch.sendToQueue(q, Buffer.from('high'), { priority: 7 });
  await waitForCount(conn, q, 2);
  const a = await ch.get(q, { noAck: true });
  const b = await ch.get(q, { noAck: true });
  assert.deepEqual(
    [
      [a.content.toString(), a.properties.priority],
      [b.content.toString(), b.properties.priority],
    ],
    [
      ['high', 7],
      ['low', 1],
    ],
  );
});

test('a queue without x-max-priority ignores the priority property (plain FIFO)', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('noprio');
  await ch.assertQueue(q);
  const got = await publishThenConsume(conn, ch, q, [
    ['a', 1],
    ['b', 9],
    ['c', 5],
  ]);
  assert.deepEqual(got, ['a', 'b', 'c']);
});

test('x-max-priority: requeued messages keep their priority order', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('prio-requeue');
  await ch.assertQueue(q, { arguments: { 'x-max-priority': 5 } });
  ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
  ch.sendToQueue(q, Buffer.from('high'), { priority: 5 });
  await waitForCount(conn, q, 2);
  const first = await ch.get(q, { noAck: false });
  assert.equal(first.content.toString(), 'high');
  ch.nack(first, false, true);
  await waitForCount(conn, q, 2);
  const again = await ch.get(q, { noAck: true });
  assert.equal(again.content.toString(), 'high');
  assert.equal(again.fields.redelivered, true);
});

for (const [label, value] of [
  ['256', 256],
  ['a string', '5'],
  ['negative', -1],
]) {
  test(`x-max-priority ${label} is refused with 406`, async () => {
    const conn = await broker.connect();
    await assertDeclareRejected(conn, name('prio-bad'), { 'x-max-priority': value });
  });
}

test('x-max-priority 255 and 0 are accepted', async () => {
  const { ch } = await broker.connectWithChannel();
  const a = name('prio-255');
  const b = name('prio-0');
  assert.equal((await ch.assertQueue(a, { arguments: { 'x-max-priority': 255 } })).queue, a);
  assert.equal((await ch.assertQueue(b, { arguments: { 'x-max-priority': 0 } })).queue, b);
});

// ---------------------------------------------------------------------------
// Argument validation
// ---------------------------------------------------------------------------

const INVALID_ARGUMENTS = [
  ['x-message-ttl', -1],
  ['x-message-ttl', '100'],
  ['x-expires', 0],
  ['x-expires', -5],
  ['x-expires', '1000'],
  ['x-max-length', -1],
  ['x-max-length', '3'],
  ['x-max-length-bytes', -1],
  ['x-overflow', 'bogus'],
  ['x-overflow', 1],
  ['x-dead-letter-exchange', 5],
];

for (const [arg, value] of INVALID_ARGUMENTS) {
  test(`invalid ${arg} = ${JSON.stringify(value)} is refused with 406 PRECONDITION_FAILED`, async () => {
    const conn = await broker.connect();
    const q = name('badarg');
    const err = await assertDeclareRejected(conn, q, { [arg]: value });
    assert.ok(err.message.includes(arg), `the reply text names the argument: ${err.message}`);
    // Nothing was created.
    assert.equal(await queueExists(conn, q), false);
  });
}

test('x-dead-letter-routing-key without x-dead-letter-exchange is refused with 406', async () => {
  const conn = await broker.connect();
  const err = await assertDeclareRejected(conn, name('dlrk-only'), { 'x-dead-letter-routing-key': 'k' });
  assert.ok(err.message.includes('x-dead-letter-routing-key'), err.message);
});

test('boundary values x-message-ttl 0 and x-max-length 0 are valid', async () => {
  const { ch } = await broker.connectWithChannel();
  const a = name('ttl0-ok');
  const b = name('maxlen0-ok');
  assert.equal((await ch.assertQueue(a, { arguments: { 'x-message-ttl': 0 } })).queue, a);
  assert.equal((await ch.assertQueue(b, { arguments: { 'x-max-length': 0 } })).queue, b);
});

test('the valid x-overflow values are accepted', async () => {
  const { ch } = await broker.connectWithChannel();
  for (const overflow of ['drop-head', 'reject-publish', 'reject-publish-dlx']) {
    const q = name(`overflow-${overflow}`);
    const ok = await ch.assertQueue(q, { arguments: { 'x-max-length': 1, 'x-overflow': overflow } });
    assert.equal(ok.queue, q);
  }
});

test('an invalid per-message expiration is rejected by the broker', async () => {
  // RabbitMQ checks the expiration property on publish: a value that is not a
  // non-negative integer closes the channel with 406 PRECONDITION_FAILED.
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('bad-expiration');
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('x'), { expiration: 'soon' });
  const err = await channelClosed(ch);
  assert.equal(err?.code, 406, `expected 406, got ${err?.code}: ${err?.message}`);
  assert.match(err.message, /PRECONDITION[-_]FAILED/);
  assert.equal(await messageCount(conn, q), 0);
});

// ---------------------------------------------------------------------------
// x-queue-type
// ---------------------------------------------------------------------------

test('x-queue-type classic is accepted and behaves like a plain queue', async () => {
  const { ch } = await broker.connectWithChannel();
  const q = name('classic');
  const ok = await ch.assertQueue(q, { arguments: { 'x-queue-type': 'classic' } });
  assert.deepEqual(ok, { queue: q, messageCount: 0, consumerCount: 0 });
  ch.sendToQueue(q, Buffer.from('hello'));
  assert.equal((await getMessage(ch, q)).content.toString(), 'hello');
});

test('x-queue-type quorum is accepted for a durable queue', async () => {
  const { ch } = await broker.connectWithChannel();
  const q = name('quorum');
  const ok = await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  assert.deepEqual(ok, { queue: q, messageCount: 0, consumerCount: 0 });
  ch.sendToQueue(q, Buffer.from('hello quorum'));
  const msg = await getMessage(ch, q, { noAck: false });
  assert.equal(msg.content.toString(), 'hello quorum');
  ch.ack(msg);
});

test('x-queue-type quorum for a non-durable queue is refused with 406', async () => {
  const conn = await broker.connect();
  const q = name('quorum-transient');
  const err = await assertDeclareRejected(conn, q, { 'x-queue-type': 'quorum' }, { durable: false });
  // RabbitMQ 3.10: "PRECONDITION_FAILED - invalid property 'non-durable' for queue '...' in vhost '/'"
  assert.match(err.message, /non-durable/);
  assert.equal(await queueExists(conn, q), false);
});

test('x-queue-type quorum for an exclusive queue is refused with 406', async () => {
  const conn = await broker.connect();
  const err = await assertDeclareRejected(
    conn,
    name('quorum-exclusive'),
    { 'x-queue-type': 'quorum' },
    { durable: true, exclusive: true },
  );
  assert.match(err.message, /exclusive/);
});

test('an unknown x-queue-type is refused with 406', async () => {
  const conn = await broker.connect();
  const err = await assertDeclareRejected(conn, name('bogus-type'), { 'x-queue-type': 'bogus' }, { durable: true });
  assert.ok(err.message.includes('x-queue-type'), err.message);
});

test('x-delivery-limit on a classic queue is refused with 406', async () => {
  const conn = await broker.connect();
  const err = await assertDeclareRejected(conn, name('classic-dlimit'), { 'x-delivery-limit': 3 });
  assert.ok(err.message.includes('x-delivery-limit'), err.message);
});

test('quorum x-delivery-limit: the message is dropped after limit+1 deliveries (no DLX)', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const q = name('quorum-limit');
  await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2 } });
  ch.sendToQueue(q, Buffer.from('poison'));

  // basic.get path: RabbitMQ 3.10 quorum queues attach x-delivery-count to
  // every basic.get delivery, starting at 0.
  const seen = [];
  for (let i = 0; i < 3; i++) {
    const msg = await getMessage(ch, q, { noAck: false });
    seen.push([msg.fields.redelivered, msg.properties.headers['x-delivery-count']]);
    ch.nack(msg, false, true);
  }
  assert.deepEqual(seen, [
    [false, 0],
    [true, 1],
    [true, 2],
  ]);
  // The third requeue exceeds the limit of 2: the message is gone.
  await waitForCount(conn, q, 0);
  await sleep(100);
  assert.equal(await ch.get(q, { noAck: false }), false);
});
