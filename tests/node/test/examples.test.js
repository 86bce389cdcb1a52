'use strict';
// Runs the programs in examples/node exactly as shipped against the broker
// under test, pointed at it with AMQP_URL as a user would; NODE_PATH lets them
// find this suite's amqplib without installing anything into examples/.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const { useBroker, REPO_ROOT, eventually, deferred, withTimeout, uniqueName } = require('../helpers/broker');

const broker = useBroker();

const EXAMPLES_DIR = path.join(REPO_ROOT, 'examples', 'node');
const SUITE_NODE_MODULES = path.join(__dirname, '..', 'node_modules');

// Queue names hard-coded in the example programs.
const EVENT_QUEUE = 'event_queue';
const ORDER_QUEUE = 'orderQueue';

const running = new Set();

/**
 * Start an example program and follow its output line by line.
 * Returns { child, lines, waitForLine(predicate, timeoutMs), stop() }.
 */
function runExample(script) {
  const child = spawn(process.execPath, [path.join(EXAMPLES_DIR, script)], {
    cwd: EXAMPLES_DIR,
    env: {
      ...process.env,
      // The examples read AMQP_URL, as a user points them at another broker.
      AMQP_URL: broker.url,
      NODE_PATH: [SUITE_NODE_MODULES, process.env.NODE_PATH].filter(Boolean).join(path.delimiter),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  const stderr = [];
  const watchers = new Set();
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of watchers) w();
  });
  readline.createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line));

  const describe = () =>
    `${script} stdout:\n${lines.join('\n')}\n${script} stderr:\n${stderr.join('\n')}\n` +
    `exit: ${child.exitCode ?? child.signalCode ?? 'still running'}`;

  const handle = {
    child,
    lines,
    exited,
    describe,
    /** Resolve once `predicate(lines)` is true; fail early if the program dies. */
    waitFor(predicate, label, timeoutMs = 10_000) {
      const done = deferred();
      const check = () => {
        if (predicate(lines)) done.resolve();
      };
      watchers.add(check);
      check();
      const died = exited.then(({ code, signal }) => {
        throw new Error(`${script} exited (code ${code}, signal ${signal}) before ${label}\n${describe()}`);
      });
      return withTimeout(Promise.race([done.promise, died]), timeoutMs, `${label}\n${describe()}`).finally(() =>
        watchers.delete(check),
      );
    },
    async stop() {
      running.delete(handle);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  running.add(handle);
  return handle;
}

after(async () => {
  // Never leave an example program behind, whatever happened.
  await Promise.all([...running].map((h) => h.stop()));
});

/** Delete the examples' queues so each test starts from nothing. */
async function removeExampleQueues() {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  await ch.deleteQueue(EVENT_QUEUE);
  await ch.deleteQueue(ORDER_QUEUE);
  await conn.close();
}

test('sender.js runs unchanged and leaves Hello World! in event_queue', async () => {
  await removeExampleQueues();
  const sender = runExample('sender.js');
  try {
    await sender.waitFor((lines) => lines.includes('Sent Hello World!'), 'the "Sent Hello World!" line');

    const conn = await broker.connect();
    const ch = await broker.channel(conn);
    await eventually(async () => {
      const { messageCount } = await ch.checkQueue(EVENT_QUEUE);
      assert.equal(messageCount, 1, 'event_queue should hold exactly the one message sent');
    });

    // The sender declared it non-durable: an identical declaration succeeds
    // (a durable one would fail with 406).
    assert.equal((await ch.assertQueue(EVENT_QUEUE, { durable: false })).messageCount, 1);

    // The sender keeps its connection open, like the program it imitates.
    assert.equal(sender.child.exitCode, null, `sender must still be running\n${sender.describe()}`);

    const msg = await ch.get(EVENT_QUEUE, { noAck: true });
    assert.ok(msg, 'the message must be retrievable');
    assert.equal(msg.content.toString(), 'Hello World!');
    assert.equal(msg.fields.routingKey, EVENT_QUEUE);
    assert.equal(msg.fields.exchange, '');
  } finally {
    await sender.stop();
    await removeExampleQueues();
  }
});

test('order_consumer.js runs unchanged, prints every order and acks them all', async () => {
  await removeExampleQueues();
  const conn = await broker.connect();
  const ch = await broker.channel(conn);

  // Queue up some orders before the consumer starts, declaring the queue
  // exactly as the consumer does (durable).
  await ch.assertQueue(ORDER_QUEUE, { durable: true });
  const batch = uniqueName('order');
  const orders = Array.from({ length: 5 }, (_, i) => `${batch}-${i + 1}`);
  for (const order of orders) ch.sendToQueue(ORDER_QUEUE, Buffer.from(order), { persistent: true });
  await eventually(async () => assert.equal((await ch.checkQueue(ORDER_QUEUE)).messageCount, orders.length));

  const consumer = runExample('order_consumer.js');
  try {
    const received = (lines) =>
      lines.filter((l) => l.startsWith('Received order: ')).map((l) => l.slice('Received order: '.length));

    await consumer.waitFor((lines) => received(lines).length >= orders.length, 'all orders to be printed');
    assert.deepEqual(received(consumer.lines), orders, 'each order printed once, in queue order');

    // One more order while it is running is handled as well.
    const late = `${batch}-late`;
    ch.sendToQueue(ORDER_QUEUE, Buffer.from(late), { persistent: true });
    await consumer.waitFor((lines) => received(lines).includes(late), 'the late order to be printed');

    assert.equal((await ch.checkQueue(ORDER_QUEUE)).consumerCount, 1, 'the consumer is attached');
  } finally {
    await consumer.stop();
  }

  // The consumer is gone. Anything it had not acked would now be back in the
  // queue; it acked everything, so the queue must be empty.
  const info = await eventually(async () => {
    const ok = await ch.checkQueue(ORDER_QUEUE);
    assert.equal(ok.consumerCount, 0, 'the killed consumer must be detached');
    return ok;
  });
  assert.equal(info.messageCount, 0, 'every order must have been acked, none requeued');
  assert.equal(await ch.get(ORDER_QUEUE), false);
  assert.equal(
    consumer.lines.filter((l) => l.startsWith('Received order: ')).length,
    6,
    `no order may be printed twice\n${consumer.describe()}`,
  );

  await removeExampleQueues();
});
