'use strict';
// An application's tests (node:test + amqplib) against a Warren started with --test-controls
// (WARREN_TEST_CONTROLS=true in a CI service container): every test starts from an empty vhost
// (reset), asserts once the broker is quiet (wait-idle) instead of sleeping, looks into a
// dead-letter queue without taking its messages (peek), makes the broker nack a publish to
// test the application's retry (a fault), and moves the vhost's clock an hour ahead so that a
// retry scheduled for later arrives now (the virtual clock).
//
//   AMQP_URL=amqp://guest:guest@localhost:5672 MGMT_URL=http://localhost:15672 \
//     node --test test-controls.test.js
const { test, beforeEach, after } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@localhost:5672';
const MGMT_URL = process.env.MGMT_URL || 'http://localhost:15672';
const AUTH = 'Basic ' + Buffer.from('guest:guest').toString('base64');
const VHOST = encodeURIComponent('/');

async function control(method, path, body) {
  const res = await fetch(MGMT_URL + path, {
    method,
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// The application under test: a publisher that retries a nacked publish once, and a consumer
// that dead-letters orders it cannot process.
async function setUpTopology(ch) {
  await ch.assertExchange('orders.dlx', 'fanout');
  await ch.assertQueue('orders.failed');
  await ch.bindQueue('orders.failed', 'orders.dlx', '');
  await ch.assertQueue('orders', { arguments: { 'x-dead-letter-exchange': 'orders.dlx' } });
}

async function publishWithRetry(ch, queue, order) {
  const body = Buffer.from(JSON.stringify(order));
  for (let attempt = 1; ; attempt++) {
    try {
      await new Promise((resolve, reject) =>
        ch.sendToQueue(queue, body, { messageId: order.id }, (err) => (err ? reject(err) : resolve())));
      return attempt;
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

function startConsumer(ch) {
  return ch.consume('orders', (msg) => {
    const order = JSON.parse(msg.content.toString());
    if (order.amount > 0) ch.ack(msg);
    else ch.nack(msg, false, false); // invalid: to the dead-letter queue
  });
}

let conn;
beforeEach(async () => {
  if (conn) await conn.close().catch(() => {});
  // Everything the previous test left is gone (its connections are closed too).
  assert.equal((await control('POST', `/api/warren/vhosts/${VHOST}/reset`)).status, 204);
  conn = await amqp.connect(AMQP_URL);
});
after(async () => { if (conn) await conn.close().catch(() => {}); });

test('orders are processed; the invalid one waits in the dead-letter queue', async () => {
  const ch = await conn.createConfirmChannel();
  await setUpTopology(ch);
  await startConsumer(ch);
  for (const [id, amount] of [['o-1', 10], ['o-2', 0], ['o-3', 5]]) await publishWithRetry(ch, 'orders', { id, amount });
  // Quiet: nothing ready, unacked or unconfirmed for 100 ms (no sleep, no polling of counters).
  const idle = await control('GET', `/api/warren/vhosts/${VHOST}/wait-idle?quiet_ms=100&timeout_ms=5000`);
  // The dead-letter queue holds a message, so the vhost is not idle: the answer names it.
  assert.equal(idle.status, 408);
  assert.deepEqual(idle.body.busy.queues.map((q) => q.name), ['orders.failed']);
  // Peek: read it without taking it.
  const peek = await control('GET', `/api/warren/queues/${VHOST}/orders.failed/messages?count=10`);
  assert.equal(peek.status, 200);
  assert.deepEqual(peek.body.messages.map((m) => m.properties.message_id), ['o-2']);
  assert.deepEqual(peek.body.messages[0].payload_json, { id: 'o-2', amount: 0 });
  assert.equal((await ch.checkQueue('orders.failed')).messageCount, 1, 'peek took nothing');
});

test('a publish the broker nacks is retried', async () => {
  const ch = await conn.createConfirmChannel();
  await setUpTopology(ch);
  const fault = await control('POST', '/api/warren/faults', { fault: 'nack-publishes', vhost: '/', count: 1 });
  assert.equal(fault.status, 200, 'the broker runs with --test-controls');
  assert.equal(await publishWithRetry(ch, 'orders', { id: 'o-4', amount: 1 }), 2);
  assert.equal((await ch.checkQueue('orders')).messageCount, 1);
});

test('a retry scheduled an hour later arrives when the clock is moved an hour ahead', async () => {
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange('retries', 'x-delayed-message', { arguments: { 'x-delayed-type': 'direct' } });
  await ch.assertQueue('orders');
  await ch.bindQueue('orders', 'retries', 'orders');
  ch.publish('retries', 'orders', Buffer.from('{"id":"o-5","amount":3}'), { headers: { 'x-delay': 3_600_000 } });
  await ch.waitForConfirms();
  const held = await control('GET', '/api/warren/exchanges/%2F/retries/delayed');
  assert.equal(held.body.total, 1, 'held by the delayed exchange');
  const moved = await control('POST', `/api/warren/vhosts/${VHOST}/clock`, { advance_ms: 3_600_000 });
  assert.equal(moved.status, 200);
  // Due now: released within a few milliseconds (not an hour).
  for (let i = 0; i < 200 && (await ch.checkQueue('orders')).messageCount === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal((await ch.checkQueue('orders')).messageCount, 1);
});

