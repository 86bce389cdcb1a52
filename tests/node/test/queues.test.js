'use strict';
// queue.declare / bind / unbind / purge / delete and queue lifetimes
// (exclusive and auto-delete queues).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const {
  useBroker,
  uniqueName,
  eventually,
  getMessage,
  deferred,
  withTimeout,
  channelClosed,
} = require('../helpers/broker');

const broker = useBroker();

/** Assert that `promise` fails with AMQP reply code `code` (and name). */
async function rejectsWithCode(promise, code, name) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected reply code ${code}, got ${err.code}: ${err.message}`);
    if (name) assert.match(err.message, new RegExp(name.replace('_', '[-_]')));
    return true;
  });
}

/** Delete `queue` from a throwaway channel, ignoring "not found". */
async function cleanupQueue(conn, queue) {
  const ch = await broker.channel(conn);
  await ch.deleteQueue(queue).catch(() => {});
  await ch.close().catch(() => {});
}

/** Resolve true if the queue exists, false if a passive declare says 404. */
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

test('durable and non-durable queues can be declared and re-declared identically', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const durable = uniqueName('q-durable');
  const transient = uniqueName('q-transient');
  try {
    const ok1 = await ch.assertQueue(durable, { durable: true });
    assert.deepEqual(ok1, { queue: durable, messageCount: 0, consumerCount: 0 });
    const ok2 = await ch.assertQueue(transient, { durable: false });
    assert.deepEqual(ok2, { queue: transient, messageCount: 0, consumerCount: 0 });

    // Declaring again with the same properties is a no-op that succeeds.
    assert.equal((await ch.assertQueue(durable, { durable: true })).queue, durable);
    assert.equal((await ch.assertQueue(transient, { durable: false })).queue, transient);

    // And both are visible to a passive declare.
    assert.equal((await ch.checkQueue(durable)).queue, durable);
    assert.equal((await ch.checkQueue(transient)).queue, transient);
  } finally {
    await cleanupQueue(conn, durable);
    await cleanupQueue(conn, transient);
  }
});

test('an empty queue name gets a server-generated amq.gen- name', async () => {
  const { ch } = await broker.connectWithChannel();
  const a = await ch.assertQueue('', { exclusive: true });
  const b = await ch.assertQueue('', { exclusive: true });
  assert.match(a.queue, /^amq\.gen-.+/);
  assert.match(b.queue, /^amq\.gen-.+/);
  assert.notEqual(a.queue, b.queue, 'generated names must be unique');
  // The generated queue is a real queue that can be used by name.
  ch.sendToQueue(a.queue, Buffer.from('to a generated queue'));
  const msg = await getMessage(ch, a.queue);
  assert.equal(msg.content.toString(), 'to a generated queue');
});

test('re-declaring a queue with different durability fails with 406 PRECONDITION_FAILED', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-redeclare-durable');
  try {
    await ch.assertQueue(queue, { durable: true });
    await rejectsWithCode(ch.assertQueue(queue, { durable: false }), 406, 'PRECONDITION_FAILED');
    const err = await channelClosed(ch);
    assert.equal(err.code, 406);
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('re-declaring a queue with different auto-delete fails with 406 PRECONDITION_FAILED', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-redeclare-autodelete');
  try {
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    await rejectsWithCode(ch.assertQueue(queue, { durable: false, autoDelete: true }), 406, 'PRECONDITION_FAILED');
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('re-declaring a queue with different arguments fails with 406 PRECONDITION_FAILED', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-redeclare-args');
  try {
    await ch.assertQueue(queue, { durable: false, arguments: { 'x-max-length': 10 } });
    // Same arguments again: fine.
    await ch.assertQueue(queue, { durable: false, arguments: { 'x-max-length': 10 } });
    await rejectsWithCode(
      ch.assertQueue(queue, { durable: false, arguments: { 'x-max-length': 20 } }),
      406,
      'PRECONDITION_FAILED',
    );
    const err = await channelClosed(ch);
    assert.equal(err.code, 406);
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('a passive declare of a missing queue fails with 404 NOT_FOUND and closes the channel', async () => {
  const { ch } = await broker.connectWithChannel();
  await rejectsWithCode(ch.checkQueue(uniqueName('q-missing')), 404, 'NOT_FOUND');
  const err = await channelClosed(ch);
  assert.equal(err.code, 404);
  // The channel is unusable afterwards.
  await assert.rejects(ch.assertQueue('', { exclusive: true }));
});

test('declare-ok reports message and consumer counts', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-counts');
  try {
    await ch.assertQueue(queue, { durable: false });
    for (let i = 0; i < 3; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
    // Routing is asynchronous (RabbitMQ does not order a publish before a
    // later declare on the same channel), so poll until all three are counted.
    await eventually(async () =>
      assert.deepEqual(await ch.checkQueue(queue), { queue, messageCount: 3, consumerCount: 0 }),
    );

    // A consumer on another channel; prefetch 1 and no acks leaves 2 ready.
    const consumerCh = await broker.channel(conn);
    await consumerCh.prefetch(1);
    const first = deferred();
    await consumerCh.consume(queue, (msg) => first.resolve(msg), { noAck: false });
    await withTimeout(first.promise, 5000, 'the first delivery');

    const active = await ch.assertQueue(queue, { durable: false });
    assert.deepEqual(active, { queue, messageCount: 2, consumerCount: 1 });
    assert.deepEqual(await ch.checkQueue(queue), { queue, messageCount: 2, consumerCount: 1 });
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('bindQueue/unbindQueue on amq.direct control routing', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-bind');
  const key = uniqueName('rk');
  try {
    await ch.assertQueue(queue, { durable: false });
    await ch.bindQueue(queue, 'amq.direct', key);

    ch.publish('amq.direct', key, Buffer.from('routed'));
    const msg = await getMessage(ch, queue);
    assert.equal(msg.content.toString(), 'routed');
    assert.equal(msg.fields.exchange, 'amq.direct');
    assert.equal(msg.fields.routingKey, key);

    // A different routing key does not match the binding: the mandatory flag
    // makes the broker tell us so instead of making us wait for nothing.
    const returned = deferred();
    ch.once('return', (m) => returned.resolve(m));
    ch.publish('amq.direct', `${key}-other`, Buffer.from('misrouted'), { mandatory: true });
    const ret = await withTimeout(returned.promise, 5000, 'basic.return');
    assert.equal(ret.fields.replyCode, 312);

    await ch.unbindQueue(queue, 'amq.direct', key);
    const returnedAfterUnbind = deferred();
    ch.once('return', (m) => returnedAfterUnbind.resolve(m));
    ch.publish('amq.direct', key, Buffer.from('after unbind'), { mandatory: true });
    const ret2 = await withTimeout(returnedAfterUnbind.promise, 5000, 'basic.return after unbind');
    assert.equal(ret2.fields.replyCode, 312);
    assert.equal(ret2.content.toString(), 'after unbind');
    assert.equal((await ch.checkQueue(queue)).messageCount, 0, 'nothing may reach the unbound queue');
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('binding to a missing exchange fails with 404 NOT_FOUND', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-bind-missing');
  try {
    await ch.assertQueue(queue, { durable: false });
    await rejectsWithCode(ch.bindQueue(queue, uniqueName('no-such-exchange'), 'rk'), 404, 'NOT_FOUND');
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('purgeQueue removes ready messages and returns how many', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-purge');
  try {
    await ch.assertQueue(queue, { durable: false });
    for (let i = 0; i < 4; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
    await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 4));

    assert.deepEqual(await ch.purgeQueue(queue), { messageCount: 4 });
    assert.equal((await ch.checkQueue(queue)).messageCount, 0);
    assert.equal(await ch.get(queue), false);
    // Purging an empty queue reports zero.
    assert.deepEqual(await ch.purgeQueue(queue), { messageCount: 0 });
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('deleteQueue with ifUnused fails with 406 while a consumer exists, then succeeds', async () => {
  const conn = await broker.connect();
  const queue = uniqueName('q-delete-unused');
  try {
    const setup = await broker.channel(conn);
    await setup.assertQueue(queue, { durable: false });
    const consumerCh = await broker.channel(conn);
    const { consumerTag } = await consumerCh.consume(queue, () => {}, { noAck: true });

    const failing = await broker.channel(conn);
    await rejectsWithCode(failing.deleteQueue(queue, { ifUnused: true }), 406, 'PRECONDITION_FAILED');
    assert.equal((await setup.checkQueue(queue)).consumerCount, 1, 'the queue must survive');

    await consumerCh.cancel(consumerTag);
    const ok = await setup.deleteQueue(queue, { ifUnused: true });
    assert.deepEqual(ok, { messageCount: 0 });
    assert.equal(await queueExists(conn, queue), false);
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('deleteQueue with ifEmpty fails with 406 while messages are ready, then succeeds', async () => {
  const conn = await broker.connect();
  const queue = uniqueName('q-delete-empty');
  try {
    const ch = await broker.channel(conn);
    await ch.assertQueue(queue, { durable: false });
    ch.sendToQueue(queue, Buffer.from('still here'));
    await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 1));

    await rejectsWithCode(ch.deleteQueue(queue, { ifEmpty: true }), 406, 'PRECONDITION_FAILED');

    const ch2 = await broker.channel(conn);
    assert.equal((await ch2.checkQueue(queue)).messageCount, 1, 'the queue and its message must survive');
    const msg = await ch2.get(queue, { noAck: true });
    assert.equal(msg.content.toString(), 'still here');
    assert.deepEqual(await ch2.deleteQueue(queue, { ifEmpty: true }), { messageCount: 0 });
    assert.equal(await queueExists(conn, queue), false);
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('deleteQueue reports the number of messages deleted with the queue', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-delete-count');
  await ch.assertQueue(queue, { durable: false });
  for (let i = 0; i < 3; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 3));
  assert.deepEqual(await ch.deleteQueue(queue), { messageCount: 3 });
  assert.equal(await queueExists(conn, queue), false);
});

test('an exclusive queue is locked (405 RESOURCE_LOCKED) for other connections', async () => {
  const owner = await broker.connect();
  const ownerCh = await broker.channel(owner);
  const queue = uniqueName('q-exclusive');
  await ownerCh.assertQueue(queue, { exclusive: true });

  const other = await broker.connect();

  // Declaring it from another connection...
  const declareCh = await broker.channel(other);
  await rejectsWithCode(declareCh.assertQueue(queue, { exclusive: true }), 405, 'RESOURCE_LOCKED');

  // ...or consuming from it is refused.
  const consumeCh = await broker.channel(other);
  await rejectsWithCode(consumeCh.consume(queue, () => {}), 405, 'RESOURCE_LOCKED');

  // The owner is unaffected and can still use it.
  ownerCh.sendToQueue(queue, Buffer.from('mine'));
  const msg = await getMessage(ownerCh, queue);
  assert.equal(msg.content.toString(), 'mine');
});

test('an exclusive queue is deleted when its connection closes', async () => {
  const owner = await broker.connect();
  const ownerCh = await broker.channel(owner);
  const queue = uniqueName('q-exclusive-lifetime');
  await ownerCh.assertQueue(queue, { exclusive: true });

  const observer = await broker.connect();
  // While the owner is connected a passive declare from elsewhere sees the
  // queue as locked rather than missing.
  const probe = await broker.channel(observer);
  await rejectsWithCode(probe.checkQueue(queue), 405, 'RESOURCE_LOCKED');

  await owner.close();
  await eventually(async () => assert.equal(await queueExists(observer, queue), false));
});

test('an auto-delete queue is deleted when its last consumer is cancelled', async () => {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  const queue = uniqueName('q-autodelete');
  try {
    await ch.assertQueue(queue, { durable: false, autoDelete: true });
    const a = await ch.consume(queue, () => {}, { noAck: true });
    const b = await ch.consume(queue, () => {}, { noAck: true });
    assert.equal((await ch.checkQueue(queue)).consumerCount, 2);

    // One consumer left: the queue stays.
    await ch.cancel(a.consumerTag);
    assert.deepEqual(await ch.checkQueue(queue), { queue, messageCount: 0, consumerCount: 1 });

    // Last consumer gone: the queue goes.
    await ch.cancel(b.consumerTag);
    await eventually(async () => assert.equal(await queueExists(conn, queue), false));
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('an auto-delete queue that never had a consumer is kept', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-autodelete-unused');
  try {
    await ch.assertQueue(queue, { durable: false, autoDelete: true });
    ch.sendToQueue(queue, Buffer.from('x'));
    const msg = await getMessage(ch, queue, { noAck: true });
    assert.equal(msg.content.toString(), 'x');
    // basic.get is not a consumer, so the queue must still exist.
    assert.equal(await queueExists(conn, queue), true);
  } finally {
    await cleanupQueue(conn, queue);
  }
});

test('x-max-length drops the oldest messages once the queue is full', async () => {
  const { ch } = await broker.connectWithChannel();
  const { queue } = await ch.assertQueue(uniqueName('q-max-length'), {
    exclusive: true,
    arguments: { 'x-max-length': 2 },
  });
  for (const body of ['first', 'second', 'third']) ch.sendToQueue(queue, Buffer.from(body));
  // The default overflow behaviour (drop-head) discards from the front.
  await eventually(async () => {
    const head = await ch.get(queue, { noAck: false });
    assert.ok(head, 'queue unexpectedly empty');
    ch.nack(head, false, true);
    assert.equal(head.content.toString(), 'second');
  });
  assert.equal((await ch.checkQueue(queue)).messageCount, 2);
  const rest = [await ch.get(queue, { noAck: true }), await ch.get(queue, { noAck: true })];
  assert.deepEqual(rest.map((m) => m.content.toString()), ['second', 'third']);
});
