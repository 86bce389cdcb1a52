'use strict';
// Runs the event-driven demo (examples/node/event-driven/demo.js) unchanged
// against the broker under test, as `npm run demo` does, and checks what it
// did through the broker itself rather than through its printout: before the
// run, the test binds its own queues to the demo's events exchange (every
// event) and to its retry exchange (every message coming back from a delay
// queue); after the run it reads them, and the parking lots the demo leaves
// behind.
//
// The demo runs once, with a unique prefix (so it can share a RabbitMQ with
// other runs) and short retry delays; the tests below each check one property.
// NODE_PATH lets it find this suite's amqplib, as in examples.test.js.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { useBroker, REPO_ROOT, uniqueName, withTimeout, usingExternalBroker } = require('../helpers/broker');

const broker = useBroker();

const DEMO_DIR = path.join(REPO_ROOT, 'examples', 'node', 'event-driven');
const SUITE_NODE_MODULES = path.join(__dirname, '..', 'node_modules');
// The demo's own description of its topology and of the orders it places
// (plain data; neither module loads amqplib).
const { topology, deleteQueues, deleteExchanges } = require(path.join(DEMO_DIR, 'topology.js'));
const { ORDERS } = require(path.join(DEMO_DIR, 'order-service.js'));

const PREFIX = uniqueName('orders-demo');
const RETRY_DELAYS_MS = [20, 40, 80];
const MAX_ATTEMPTS = RETRY_DELAYS_MS.length + 1;
const topo = topology({ prefix: PREFIX, retryDelaysMs: RETRY_DELAYS_MS });
const billing = topo.names.services.billing;
const shipping = topo.names.services.shipping;

// What the demo's orders are meant to exercise (see services.js and order-service.js).
const DUPLICATED = { 1002: 2, 1004: 3 }; // order id -> copies sent with one message id
const BILLING_ATTEMPTS = { 1003: 2, 1005: 4 }; // payment gateway timeouts, then success
const SHIPPING_ATTEMPTS = { 1007: 2 }; // warehouse busy once
const PARKED = 1006; // the card can never be charged
const ORDER_IDS = ORDERS.map((o) => o.orderId);

// Filled by runOnce(): the demo's exit and output, and what the test's queues saw.
const run = { code: null, signal: null, stdout: [], stderr: [], events: [], redeliveries: [] };

const describeRun = () =>
  `demo exit: ${run.code ?? run.signal}\nstdout:\n${run.stdout.join('\n')}\nstderr:\n${run.stderr.join('\n')}`;

/** Run demo.js to its end; resolves to { code, signal, stdout, stderr } (as line arrays). */
function runDemo(env) {
  const child = spawn(process.execPath, [path.join(DEMO_DIR, 'demo.js')], {
    cwd: path.dirname(DEMO_DIR),
    env: {
      ...process.env,
      ...env,
      NODE_PATH: [SUITE_NODE_MODULES, process.env.NODE_PATH].filter(Boolean).join(path.delimiter),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) =>
    child.once('close', (code, signal) =>
      resolve({ code, signal, stdout: out.split('\n').filter(Boolean), stderr: err.split('\n').filter(Boolean) }),
    ),
  );
  return withTimeout(exited, 30_000, 'demo.js to exit').catch((e) => {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\nstdout so far:\n${out}\nstderr so far:\n${err}`);
  });
}

/** Every message in `queue`, taken with basic.get until it is empty. */
async function drain(ch, queue) {
  const msgs = [];
  for (let msg = await ch.get(queue, { noAck: true }); msg; msg = await ch.get(queue, { noAck: true })) msgs.push(msg);
  return msgs;
}

const headers = (msg) => msg.properties.headers || {};
const body = (msg) => JSON.parse(msg.content.toString());
const deathsOf = (msg) =>
  (headers(msg)['x-death'] || []).map((d) => ({ queue: d.queue, reason: d.reason, count: d.count }));

/** Run the demo with the taps in place, once for all the tests of this file. */
let ran = null;
const runOnce = () => (ran ??= tapAndRunDemo());

async function tapAndRunDemo() {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  // The exchanges exactly as the demo declares them (the demo deletes and
  // re-creates only its queues, so these bindings outlive its reset).
  for (const x of topo.exchanges) await ch.assertExchange(x.name, x.type, { durable: true });
  const { queue: eventsTap } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(eventsTap, topo.names.events, '#');
  const { queue: retryTap } = await ch.assertQueue('', { exclusive: true });
  for (const service of [billing, shipping]) {
    for (let n = 2; n <= MAX_ATTEMPTS; n++) await ch.bindQueue(retryTap, topo.names.retry, service.attemptKey(n));
  }

  Object.assign(
    run,
    await runDemo({ AMQP_URL: broker.url, DEMO_PREFIX: PREFIX, DEMO_RETRY_DELAYS_MS: RETRY_DELAYS_MS.join(',') }),
  );

  // The demo exits once every message has reached its end, and each of them
  // was routed to the taps when it was published or dead-lettered: the taps
  // are complete.
  run.events = await drain(ch, eventsTap);
  run.redeliveries = await drain(ch, retryTap);
  await conn.close();
}

after(async () => {
  if (!ran) return;
  // A broker the suite started goes away with everything in it; a shared one
  // (AMQP_URL) is left as it was found.
  if (!usingExternalBroker()) return;
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  await deleteQueues(ch, topo);
  await deleteExchanges(ch, topo);
  await conn.close();
});

/** The events the taps saw about one order, by routing key. */
function eventsOf(orderId, key) {
  return run.events.filter((m) => m.fields.routingKey === key && body(m).orderId === orderId);
}

test('demo.js runs to its end, exits 0 and reports every order handled', async () => {
  await runOnce();
  assert.equal(run.code, 0, describeRun());
  assert.ok(
    run.stdout.includes('OK: 8 orders, 7 processed exactly once and shipped, 1 parked; 3 duplicate messages ignored.'),
    describeRun(),
  );
  assert.deepEqual(run.stderr, []);
  assert.deepEqual(ORDER_IDS, [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008], 'the orders this test expects');
});

test('every order is processed exactly once although some were sent two and three times (same message id)', async () => {
  await runOnce();
  for (const orderId of ORDER_IDS) {
    const placed = eventsOf(orderId, 'order.placed');
    // The duplicates really went out: same message id, same correlation id.
    assert.equal(placed.length, DUPLICATED[orderId] || 1, `order.placed messages for ${orderId}`);
    assert.equal(new Set(placed.map((m) => m.properties.messageId)).size, 1, `one message id for order ${orderId}`);
    assert.equal(placed[0].properties.messageId, `order-placed-${orderId}`);

    // ... and were processed once: one payment, one shipment (none for the parked order).
    const expected = orderId === PARKED ? 0 : 1;
    assert.equal(eventsOf(orderId, 'payment.captured').length, expected, `payment.captured for ${orderId}\n${describeRun()}`);
    assert.equal(eventsOf(orderId, 'order.shipped').length, expected, `order.shipped for ${orderId}\n${describeRun()}`);
  }
  assert.equal(run.events.length, 11 + 7 + 7, 'order.placed x11, payment.captured x7, order.shipped x7');
});

test('transient failures are retried through the delay queues, then succeed', async () => {
  await runOnce();
  const redeliveriesOf = (orderId) =>
    run.redeliveries.filter((m) => body(m).orderId === orderId).map((m) => m.fields.routingKey);

  for (const [service, attemptsByOrder, event] of [
    [billing, BILLING_ATTEMPTS, 'payment.captured'],
    [shipping, SHIPPING_ATTEMPTS, 'order.shipped'],
  ]) {
    for (const [id, attempts] of Object.entries(attemptsByOrder)) {
      const orderId = Number(id);
      // One pass through the retry exchange per failed attempt, in order...
      const keys = Array.from({ length: attempts - 1 }, (_, i) => service.attemptKey(i + 2));
      assert.deepEqual(redeliveriesOf(orderId), keys, `redeliveries of order ${orderId}`);
      // ... each one a message that the service rejected and a delay queue expired.
      const passes = run.redeliveries.filter((m) => body(m).orderId === orderId);
      passes.forEach((m, i) => {
        const deaths = deathsOf(m);
        assert.deepEqual(
          deaths[0],
          { queue: service.delayQueues[i], reason: 'expired', count: 1 },
          `newest death of pass ${i + 1} of order ${orderId}`,
        );
        assert.deepEqual(
          deaths.find((d) => d.reason === 'rejected'),
          { queue: service.queue, reason: 'rejected', count: i + 1 },
          `rejections before pass ${i + 1} of order ${orderId}`,
        );
        assert.equal(headers(m)['x-first-death-queue'], service.queue);
        assert.equal(headers(m)['x-first-death-reason'], 'rejected');
      });
      // The attempt that succeeded is the one after the last failure.
      const [done] = eventsOf(orderId, event);
      assert.ok(done, `${event} for order ${orderId}`);
      assert.equal(body(done).attempts, attempts, `${event} for order ${orderId} came from attempt ${attempts}`);
    }
  }

  // Orders that never failed were never redelivered.
  for (const orderId of [1001, 1002, 1004, 1008]) assert.deepEqual(redeliveriesOf(orderId), []);
  // The parked order went through every delay level of billing's.
  assert.deepEqual(redeliveriesOf(PARKED), [2, 3, 4].map((n) => billing.attemptKey(n)));
});

test('an order that always fails ends in the parking lot with its x-death history', async () => {
  await runOnce();
  const { conn, ch } = await broker.connectWithChannel();

  // Nothing else is left anywhere: the work and delay queues are empty.
  for (const queue of [billing.queue, shipping.queue, ...billing.delayQueues, ...shipping.delayQueues, shipping.parkingLot]) {
    assert.equal((await ch.checkQueue(queue)).messageCount, 0, `${queue} is empty`);
  }

  assert.equal((await ch.checkQueue(billing.parkingLot)).messageCount, 1, describeRun());
  const msg = await ch.get(billing.parkingLot, { noAck: false });
  assert.ok(msg);
  assert.equal(body(msg).orderId, PARKED);
  assert.equal(msg.properties.messageId, `order-placed-${PARKED}`);
  const [placed] = eventsOf(PARKED, 'order.placed');
  assert.equal(msg.properties.correlationId, placed.properties.correlationId, 'the correlation id is kept');

  // Billing rejected it MAX_ATTEMPTS times (the newest death, so the first
  // entry), and it expired once in each delay queue. RabbitMQ 3.10 reverses
  // the older entries at every death, which leaves them in delay-queue order
  // here (Warren lists them the same way).
  const [newest, ...older] = deathsOf(msg);
  assert.deepEqual(newest, { queue: billing.queue, reason: 'rejected', count: MAX_ATTEMPTS });
  assert.deepEqual(older, billing.delayQueues.map((queue) => ({ queue, reason: 'expired', count: 1 })));
  const first = headers(msg)['x-death'].find((d) => d.queue === billing.queue);
  assert.equal(first.exchange, topo.names.events, 'first rejected as published, from the events exchange');
  assert.deepEqual(first['routing-keys'], ['order.placed']);
  assert.equal(headers(msg)['x-first-death-queue'], billing.queue);
  assert.equal(headers(msg)['x-first-death-reason'], 'rejected');
  assert.equal(headers(msg)['x-first-death-exchange'], topo.names.events);
  // It arrived through billing's dead-letter exchange after the last attempt.
  assert.equal(msg.fields.exchange, billing.dlx);
  assert.equal(msg.fields.routingKey, billing.attemptKey(MAX_ATTEMPTS));
  await conn.close(); // unacknowledged: it stays parked
});

test('every event carries the correlation id of the order it follows from, and its cause as causation-id', async () => {
  await runOnce();
  const correlationIds = new Set();
  for (const orderId of ORDER_IDS) {
    const [placed] = eventsOf(orderId, 'order.placed');
    const { correlationId } = placed.properties;
    assert.match(correlationId, /^[0-9a-f-]{36}$/, `order ${orderId} has a correlation id`);
    correlationIds.add(correlationId);

    const all = run.events.filter((m) => body(m).orderId === orderId);
    for (const m of all) assert.equal(m.properties.correlationId, correlationId, `${m.fields.routingKey} of ${orderId}`);
    // And nothing else uses it.
    assert.equal(run.events.filter((m) => m.properties.correlationId === correlationId).length, all.length);

    if (orderId === PARKED) continue;
    const [paid] = eventsOf(orderId, 'payment.captured');
    const [shipped] = eventsOf(orderId, 'order.shipped');
    assert.equal(headers(paid)['causation-id'], placed.properties.messageId);
    assert.equal(headers(shipped)['causation-id'], paid.properties.messageId);
    assert.equal(paid.properties.appId, 'billing');
    assert.equal(shipped.properties.appId, 'shipping');
  }
  assert.equal(correlationIds.size, ORDER_IDS.length, 'one correlation id per order');
});
