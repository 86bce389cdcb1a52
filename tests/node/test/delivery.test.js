'use strict';
// Delivery guarantees and consumer semantics: publisher confirms at volume,
// transactions, consumer cancel notifications, exclusive consumers, consumer
// priorities, single active consumer, direct reply-to, channel.flow, the
// memory alarm (connection.blocked) and the consumer acknowledgement timeout.
//
// amqplib has no API for tx.*, confirm.select on an existing channel or
// channel.flow, so those methods go through the channel's own RPC machinery
// (`ch.rpc(method, fields, expectedReply)`) with amqplib's protocol
// definitions. Everything else uses the public API.
//
// The memory alarm and consumer-timeout tests need a broker the test can
// configure, so they run against Warren only (skipped when AMQP_URL is set).

const path = require('node:path');
const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const {
  useBroker,
  usingExternalBroker,
  spawnWarren,
  uniqueName,
  eventually,
  getMessage,
  deferred,
  withTimeout,
  channelClosed,
  collector,
} = require('../helpers/broker');

// amqplib's package exports hide lib/; load the protocol definitions by path.
const defs = require(path.join(path.dirname(require.resolve('amqplib')), 'lib', 'defs.js'));

const broker = useBroker();

const REPLY_TO = 'amq.rabbitmq.reply-to';
const WARREN_ONLY = usingExternalBroker()
  ? 'needs a Warren the test starts itself (AMQP_URL is set: RabbitMQ cannot be reconfigured from a test)'
  : false;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const txSelect = (ch) => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk);
const txCommit = (ch) => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk);
const txRollback = (ch) => ch.rpc(defs.TxRollback, {}, defs.TxRollbackOk);
const confirmSelect = (ch) => ch.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk);
const channelFlow = (ch, active) => ch.rpc(defs.ChannelFlow, { active }, defs.ChannelFlowOk);

/** Publish on a ConfirmChannel and resolve with the confirm outcome. */
function publishConfirmed(ch, exchange, key, body, options = {}) {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, key, Buffer.from(body), options, (err) => (err ? reject(err) : resolve()));
  });
}


const bodies = (msgs) => msgs.map((m) => m.content.toString());

/** Resolve with the error a connection was closed with (null: clean close). */
function connectionClosed(conn, timeoutMs = 5000) {
  const closed = new Promise((resolve) => conn.once('close', (err) => resolve(err || conn.recordedErrors[0] || null)));
  return withTimeout(closed, timeoutMs, 'the connection to be closed');
}

/** Ready messages in `queue` (passive declare on `ch`). */
async function readyCount(ch, queue) {
  return (await ch.checkQueue(queue)).messageCount;
}

/** Declare a queue named uniquely after `prefix` (deleted after the test). */
async function freshQueue(ch, prefix, options = {}) {
  const name = uniqueName(prefix);
  await ch.assertQueue(name, { autoDelete: false, ...options });
  cleanup.push(name);
  return name;
}

// Queues that are shared between connections cannot be exclusive; delete them
// when the file is done (each test closes its connections first).
const cleanup = [];
afterEach(async () => {
  if (cleanup.length === 0) return;
  const names = cleanup.splice(0);
  const amqp = require('amqplib');
  const conn = await amqp.connect(broker.url);
  conn.on('error', () => {});
  try {
    for (const name of names) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      try {
        await ch.deleteQueue(name);
        await ch.close();
      } catch {
        // already gone
      }
    }
  } finally {
    await conn.close().catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// Publisher confirms
// ---------------------------------------------------------------------------

test('confirms: 5,000 pipelined publishes are all acked, covering every sequence number', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });

  const N = 5000;
  // Confirms may be batched with multiple=true; track the highest tag seen.
  let highest = 0;
  let nacks = 0;
  ch.on('ack', ({ deliveryTag }) => {
    highest = Math.max(highest, deliveryTag);
  });
  ch.on('nack', () => nacks++);

  const outcomes = [];
  for (let i = 0; i < N; i++) outcomes.push(publishConfirmed(ch, '', queue, `m${i}`));
  await withTimeout(ch.waitForConfirms(), 20000, 'waitForConfirms for 5,000 messages');
  const settled = await Promise.allSettled(outcomes);
  assert.equal(settled.filter((s) => s.status === 'fulfilled').length, N, 'every publish callback reports an ack');
  assert.equal(nacks, 0);
  assert.equal(highest, N, 'the last confirm is for sequence number N');
  assert.equal(await readyCount(ch, queue), N, 'confirmed messages are in the queue');
});

test('confirms: waitForConfirms covers publishes without callbacks on several channels at once', async () => {
  const conn = await broker.connect();
  const admin = await broker.channel(conn);
  const { queue } = await admin.assertQueue('', { exclusive: true });
  const chans = await Promise.all([1, 2, 3].map(() => broker.channel(conn, { confirm: true })));
  for (const [i, ch] of chans.entries()) {
    for (let j = 0; j < 500; j++) ch.publish('', queue, Buffer.from(`c${i}-${j}`));
  }
  await Promise.all(chans.map((ch) => withTimeout(ch.waitForConfirms(), 10000, 'waitForConfirms')));
  assert.equal(await readyCount(admin, queue), 1500);
});

test('confirms: a mandatory unroutable publish is returned before it is acked', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const events = [];
  const returned = deferred();
  ch.on('return', (msg) => {
    events.push(`return:${msg.content.toString()}`);
    returned.resolve(msg);
  });
  const nowhere = uniqueName('nowhere');
  const done = [
    publishConfirmed(ch, '', queue, 'before', { mandatory: true }).then(() => events.push('ack:before')),
    publishConfirmed(ch, 'amq.direct', nowhere, 'bounce', { mandatory: true }).then(() => events.push('ack:bounce')),
    publishConfirmed(ch, '', queue, 'after', { mandatory: true }).then(() => events.push('ack:after')),
  ];
  await withTimeout(Promise.all(done), 5000, 'three confirms');
  const msg = await withTimeout(returned.promise, 5000, 'basic.return');
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.exchange, 'amq.direct');
  assert.equal(msg.fields.routingKey, nowhere);
  assert.ok(
    events.indexOf('return:bounce') < events.indexOf('ack:bounce'),
    `basic.return must precede the ack of the returned message: ${events.join(', ')}`,
  );
  assert.deepEqual(
    events.filter((e) => e.startsWith('ack:')),
    ['ack:before', 'ack:bounce', 'ack:after'],
  );
  assert.equal(await readyCount(ch, queue), 2);
});

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------

test('tx: publishes stay invisible until tx.commit', async () => {
  const conn = await broker.connect();
  const tx = await broker.channel(conn);
  const observer = await broker.channel(conn);
  const { queue } = await observer.assertQueue('', { exclusive: true });

  await txSelect(tx);
  for (let i = 1; i <= 3; i++) tx.sendToQueue(queue, Buffer.from(`t${i}`));
  // A round trip on the transactional channel: the publishes before it have
  // been handled, yet nothing may be enqueued.
  await tx.checkQueue(queue);
  assert.equal(await readyCount(observer, queue), 0, 'uncommitted publishes must not be enqueued');

  await txCommit(tx);
  // tx.commit-ok means the messages are enqueued.
  assert.equal(await readyCount(observer, queue), 3);
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await observer.get(queue, { noAck: true })).content.toString());
  assert.deepEqual(got, ['t1', 't2', 't3']);
});

test('tx: tx.rollback discards publishes and the channel stays transactional', async () => {
  const conn = await broker.connect();
  const tx = await broker.channel(conn);
  const observer = await broker.channel(conn);
  const { queue } = await observer.assertQueue('', { exclusive: true });

  await txSelect(tx);
  tx.sendToQueue(queue, Buffer.from('discarded-1'));
  tx.sendToQueue(queue, Buffer.from('discarded-2'));
  await txRollback(tx);
  assert.equal(await readyCount(observer, queue), 0);

  // A new transaction starts implicitly after rollback.
  tx.sendToQueue(queue, Buffer.from('kept'));
  await tx.checkQueue(queue);
  assert.equal(await readyCount(observer, queue), 0, 'still inside a transaction after rollback');
  await txCommit(tx);
  assert.equal(await readyCount(observer, queue), 1);
  assert.equal((await observer.get(queue, { noAck: true })).content.toString(), 'kept');
});

/** A queue holding m1..m3, and a transactional channel that got m1 unacked. */
async function txAckFixture() {
  const conn = await broker.connect();
  const tx = await broker.channel(conn);
  const observer = await broker.channel(conn);
  const { queue } = await observer.assertQueue('', { exclusive: true });
  for (let i = 1; i <= 3; i++) observer.sendToQueue(queue, Buffer.from(`m${i}`));
  await eventually(async () => assert.equal(await readyCount(observer, queue), 3));
  await txSelect(tx);
  const m1 = await getMessage(tx, queue, { noAck: false });
  assert.equal(m1.content.toString(), 'm1');
  return { conn, tx, observer, queue, m1 };
}

test('tx: an ack inside a transaction takes effect at tx.commit', async () => {
  const { tx, observer, queue, m1 } = await txAckFixture();
  tx.ack(m1);
  await txCommit(tx);
  await tx.close();
  // Closing the channel requeues unacked messages; the committed ack means
  // m1 is gone for good.
  await eventually(async () => assert.equal((await observer.checkQueue(queue)).messageCount, 2));
  assert.equal((await observer.get(queue, { noAck: true })).content.toString(), 'm2');
});

test('tx: tx.rollback undoes an ack, so the message is redelivered after the channel closes', async () => {
  const { tx, observer, queue, m1 } = await txAckFixture();
  tx.ack(m1);
  await txRollback(tx);
  // Rolled back: m1 is still unacked (not requeued yet).
  assert.equal(await readyCount(observer, queue), 2);
  await tx.close();
  await eventually(async () => assert.equal(await readyCount(observer, queue), 3));
  const again = await observer.get(queue, { noAck: true });
  assert.equal(again.content.toString(), 'm1');
  assert.equal(again.fields.redelivered, true);
});

test('tx: an uncommitted ack is discarded when the channel closes', async () => {
  const { tx, observer, queue, m1 } = await txAckFixture();
  tx.ack(m1);
  await tx.checkQueue(queue); // the ack has been handled (and held back)
  await tx.close();
  await eventually(async () => assert.equal(await readyCount(observer, queue), 3));
  const again = await observer.get(queue, { noAck: true });
  assert.equal(again.content.toString(), 'm1');
  assert.equal(again.fields.redelivered, true);
});

test('tx: tx.commit on a non-transactional channel is 406 PRECONDITION_FAILED', async () => {
  const { ch } = await broker.connectWithChannel();
  await assert.rejects(txCommit(ch), (err) => {
    assert.equal(err.code, 406);
    assert.match(err.message, /channel is not transactional/);
    return true;
  });
  assert.equal((await channelClosed(ch)).code, 406);
});

test('tx: tx.rollback on a non-transactional channel is 406 PRECONDITION_FAILED', async () => {
  const { ch } = await broker.connectWithChannel();
  await assert.rejects(txRollback(ch), (err) => err.code === 406);
  assert.equal((await channelClosed(ch)).code, 406);
});

test('tx: confirm.select after tx.select is 406', async () => {
  const { ch } = await broker.connectWithChannel();
  await txSelect(ch);
  await assert.rejects(confirmSelect(ch), (err) => {
    assert.equal(err.code, 406);
    assert.match(err.message, /cannot switch from tx to confirm mode/);
    return true;
  });
  assert.equal((await channelClosed(ch)).code, 406);
});

test('tx: tx.select on a confirm channel is 406', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  await assert.rejects(txSelect(ch), (err) => {
    assert.equal(err.code, 406);
    assert.match(err.message, /cannot switch from confirm to tx mode/);
    return true;
  });
  assert.equal((await channelClosed(ch)).code, 406);
});

test('tx: tx.select twice is accepted', async () => {
  const { ch } = await broker.connectWithChannel();
  await txSelect(ch);
  await txSelect(ch);
  await txCommit(ch);
});

// ---------------------------------------------------------------------------
// Consumer cancel notification
// ---------------------------------------------------------------------------

test('cancel notify: deleting the queue from another connection cancels the consumer', async () => {
  const consumerConn = await broker.connect();
  const ch = await broker.channel(consumerConn);
  const queue = await freshQueue(ch, 'q-cancel-notify');
  const got = collector();
  await ch.consume(queue, got.onMessage, { noAck: true });

  const other = await broker.connectWithChannel();
  await other.ch.deleteQueue(queue);
  await got.cancelled();
  // The channel survives the cancellation.
  const { queue: probe } = await ch.assertQueue('', { exclusive: true });
  assert.ok(probe.length > 0);
});

// ---------------------------------------------------------------------------
// Exclusive consumers
// ---------------------------------------------------------------------------

test('exclusive consumer: a consumer on another connection is refused with 403', async () => {
  const first = await broker.connectWithChannel();
  const queue = await freshQueue(first.ch, 'q-excl-consumer');
  await first.ch.consume(queue, () => {}, { exclusive: true });

  const second = await broker.connectWithChannel();
  await assert.rejects(second.ch.consume(queue, () => {}), (err) => {
    assert.equal(err.code, 403);
    assert.match(err.message, /ACCESS_REFUSED/);
    return true;
  });
  assert.equal((await channelClosed(second.ch)).code, 403);
});

test('exclusive consumer: refused with 403 while the queue has another consumer', async () => {
  const first = await broker.connectWithChannel();
  const queue = await freshQueue(first.ch, 'q-excl-late');
  await first.ch.consume(queue, () => {});

  const second = await broker.connectWithChannel();
  await assert.rejects(second.ch.consume(queue, () => {}, { exclusive: true }), (err) => err.code === 403);
});

test('exclusive consumer: after it cancels, others may consume again', async () => {
  const first = await broker.connectWithChannel();
  const queue = await freshQueue(first.ch, 'q-excl-release');
  const { consumerTag } = await first.ch.consume(queue, () => {}, { exclusive: true });
  await first.ch.cancel(consumerTag);

  const second = await broker.connectWithChannel();
  const got = collector();
  await second.ch.consume(queue, got.onMessage, { noAck: true });
  first.ch.sendToQueue(queue, Buffer.from('free'));
  assert.deepEqual(bodies(await got.waitFor(1)), ['free']);
});

// ---------------------------------------------------------------------------
// Consumer priorities
// ---------------------------------------------------------------------------

test('priorities: the higher x-priority consumer gets messages while it has prefetch credit', async () => {
  const conn = await broker.connect();
  const admin = await broker.channel(conn);
  const hiCh = await broker.channel(conn);
  const loCh = await broker.channel(conn);
  const { queue } = await admin.assertQueue('', { exclusive: true });
  await hiCh.prefetch(2);
  const hi = collector();
  const lo = collector();
  // Register the low-priority consumer first so registration order cannot explain the result.
  await loCh.consume(queue, lo.onMessage, { arguments: { 'x-priority': 1 } });
  await hiCh.consume(queue, hi.onMessage, { arguments: { 'x-priority': 10 } });

  for (let i = 1; i <= 10; i++) admin.sendToQueue(queue, Buffer.from(`p${i}`));
  await lo.waitFor(8);
  await hi.waitFor(2);
  assert.deepEqual(bodies(hi.messages), ['p1', 'p2']);
  assert.deepEqual(bodies(lo.messages), ['p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9', 'p10']);

  // Credit restored: new messages go to the high-priority consumer again.
  hiCh.ackAll();
  await hiCh.checkQueue(queue); // the acks have reached the queue
  admin.sendToQueue(queue, Buffer.from('p11'));
  admin.sendToQueue(queue, Buffer.from('p12'));
  await hi.waitFor(4);
  assert.deepEqual(bodies(hi.messages).slice(2), ['p11', 'p12']);
  assert.equal(lo.messages.length, 8);
});

test('priorities: consumers of equal priority share messages round-robin; lower ones get none', async () => {
  const conn = await broker.connect();
  const admin = await broker.channel(conn);
  const { queue } = await admin.assertQueue('', { exclusive: true });
  const [a, b, low] = [collector(), collector(), collector()];
  const chA = await broker.channel(conn);
  const chB = await broker.channel(conn);
  const chLow = await broker.channel(conn);
  await chLow.consume(queue, low.onMessage, { noAck: true, arguments: { 'x-priority': 1 } });
  await chA.consume(queue, a.onMessage, { noAck: true, arguments: { 'x-priority': 5 } });
  await chB.consume(queue, b.onMessage, { noAck: true, arguments: { 'x-priority': 5 } });

  for (let i = 1; i <= 10; i++) admin.sendToQueue(queue, Buffer.from(`r${i}`));
  await eventually(() => assert.equal(a.messages.length + b.messages.length, 10));
  assert.equal(a.messages.length, 5);
  assert.equal(b.messages.length, 5);
  assert.equal(low.messages.length, 0);
  assert.deepEqual(
    [...bodies(a.messages), ...bodies(b.messages)].sort(),
    Array.from({ length: 10 }, (_, i) => `r${i + 1}`).sort(),
  );
});

test('priorities: a non-integer x-priority is refused with 406', async () => {
  const { ch } = await broker.connectWithChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await assert.rejects(ch.consume(queue, () => {}, { arguments: { 'x-priority': 'high' } }), (err) => err.code === 406);
});

// ---------------------------------------------------------------------------
// Single active consumer
// ---------------------------------------------------------------------------

async function sacQueue(admin, prefix) {
  const { queue } = await admin.assertQueue(uniqueName(prefix), {
    exclusive: true,
    arguments: { 'x-single-active-consumer': true },
  });
  return queue;
}

test('single active consumer: only the first consumer receives; on channel close the next takes over', async () => {
  const conn = await broker.connect();
  const admin = await broker.channel(conn);
  const queue = await sacQueue(admin, 'q-sac-close');
  for (let i = 1; i <= 4; i++) admin.sendToQueue(queue, Buffer.from(`m${i}`));
  await eventually(async () => assert.equal(await readyCount(admin, queue), 4));

  const chA = await broker.channel(conn);
  const chB = await broker.channel(conn);
  const chC = await broker.channel(conn);
  await chA.prefetch(2);
  const [a, b, c] = [collector(), collector(), collector()];
  await chA.consume(queue, a.onMessage);
  await chB.consume(queue, b.onMessage);
  await chC.consume(queue, c.onMessage);

  await a.waitFor(2);
  // B and C have unlimited credit, yet the two remaining messages stay ready.
  await eventually(async () => {
    const info = await admin.checkQueue(queue);
    assert.equal(info.consumerCount, 3);
    assert.equal(info.messageCount, 2);
  });
  assert.deepEqual(bodies(a.messages), ['m1', 'm2']);
  assert.equal(b.messages.length + c.messages.length, 0);

  // A goes away with two unacked messages: B (next in registration order)
  // gets them back, then the rest.
  await chA.close();
  await b.waitFor(4);
  assert.deepEqual(bodies(b.messages), ['m1', 'm2', 'm3', 'm4']);
  assert.deepEqual(
    b.messages.map((m) => m.fields.redelivered),
    [true, true, false, false],
  );
  assert.equal(c.messages.length, 0, 'only the single active consumer receives');
});

test('single active consumer: when the active consumer cancels, the next one receives new messages', async () => {
  const conn = await broker.connect();
  const admin = await broker.channel(conn);
  const queue = await sacQueue(admin, 'q-sac-cancel');
  const chA = await broker.channel(conn);
  const chB = await broker.channel(conn);
  const chC = await broker.channel(conn);
  const [a, b, c] = [collector(), collector(), collector()];
  const { consumerTag } = await chA.consume(queue, a.onMessage);
  await chB.consume(queue, b.onMessage);
  await chC.consume(queue, c.onMessage);

  admin.sendToQueue(queue, Buffer.from('m1'));
  await a.waitFor(1);
  chA.ack(a.messages[0]);
  await chA.cancel(consumerTag);

  for (let i = 2; i <= 4; i++) admin.sendToQueue(queue, Buffer.from(`m${i}`));
  await b.waitFor(3);
  assert.deepEqual(bodies(b.messages), ['m2', 'm3', 'm4']);
  assert.equal(a.messages.length, 1);
  assert.equal(c.messages.length, 0);
  assert.equal((await admin.checkQueue(queue)).consumerCount, 2);
});

test('single active consumer: the argument must be a boolean (406)', async () => {
  const { ch } = await broker.connectWithChannel();
  await assert.rejects(
    ch.assertQueue(uniqueName('q-sac-bad'), { exclusive: true, arguments: { 'x-single-active-consumer': 'yes' } }),
    (err) => err.code === 406,
  );
});

// ---------------------------------------------------------------------------
// Direct reply-to
// ---------------------------------------------------------------------------

test('direct reply-to: an RPC round trip through amq.rabbitmq.reply-to', async () => {
  // Server side on its own connection.
  const server = await broker.connectWithChannel();
  const { queue: requests } = await server.ch.assertQueue('', { exclusive: true });
  const seen = [];
  await server.ch.consume(
    requests,
    (msg) => {
      seen.push(msg.properties);
      server.ch.publish('', msg.properties.replyTo, Buffer.from(`reply to ${msg.content}`), {
        correlationId: msg.properties.correlationId,
      });
    },
    { noAck: true },
  );

  const client = await broker.connectWithChannel();
  const replies = collector();
  const { consumerTag } = await client.ch.consume(REPLY_TO, replies.onMessage, { noAck: true });
  client.ch.sendToQueue(requests, Buffer.from('ping-1'), { replyTo: REPLY_TO, correlationId: 'corr-1' });
  client.ch.sendToQueue(requests, Buffer.from('ping-2'), { replyTo: REPLY_TO, correlationId: 'corr-2' });

  await replies.waitFor(2);
  // The server saw a generated name, not the pseudo-queue's.
  const replyName = seen[0].replyTo;
  assert.ok(replyName.startsWith(`${REPLY_TO}.`), `generated reply-to name: ${replyName}`);
  assert.equal(seen[1].replyTo, replyName, 'one channel has one reply name');
  assert.deepEqual(bodies(replies.messages), ['reply to ping-1', 'reply to ping-2']);
  assert.deepEqual(
    replies.messages.map((m) => m.properties.correlationId),
    ['corr-1', 'corr-2'],
  );
  const [first] = replies.messages;
  assert.equal(first.fields.consumerTag, consumerTag);
  assert.equal(first.fields.exchange, '');
  assert.equal(first.fields.routingKey, replyName);
  assert.equal(first.fields.redelivered, false);
});

test('direct reply-to: the pseudo-queue can be declared passively', async () => {
  const { ch } = await broker.connectWithChannel();
  const ok = await ch.checkQueue(REPLY_TO);
  assert.equal(ok.queue, REPLY_TO);
  assert.equal(ok.messageCount, 0);
});

test('direct reply-to: publishing with reply-to before consuming is 406', async () => {
  const { ch } = await broker.connectWithChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('orphan'), { replyTo: REPLY_TO });
  const err = await channelClosed(ch);
  assert.equal(err?.code, 406);
  assert.match(err.message, /fast reply consumer does not exist/);
});

test('direct reply-to: consuming with acknowledgements is 406', async () => {
  const { ch } = await broker.connectWithChannel();
  await assert.rejects(ch.consume(REPLY_TO, () => {}, { noAck: false }), (err) => {
    assert.equal(err.code, 406);
    assert.match(err.message, /reply consumer cannot acknowledge/);
    return true;
  });
});

test('direct reply-to: a second reply consumer on the same channel is 406', async () => {
  const { ch } = await broker.connectWithChannel();
  await ch.consume(REPLY_TO, () => {}, { noAck: true });
  await assert.rejects(ch.consume(REPLY_TO, () => {}, { noAck: true }), (err) => {
    assert.equal(err.code, 406);
    assert.match(err.message, /reply consumer already set/);
    return true;
  });
});

test('direct reply-to: a reply to a requester that has gone is returned as NO_ROUTE', async () => {
  const requester = await broker.connectWithChannel();
  const queue = await freshQueue(requester.ch, 'q-rpc-gone');
  await requester.ch.consume(REPLY_TO, () => {}, { noAck: true });
  requester.ch.sendToQueue(queue, Buffer.from('request'), { replyTo: REPLY_TO });

  const server = await broker.connectWithChannel();
  const request = await getMessage(server.ch, queue);
  const replyName = request.properties.replyTo;
  await requester.conn.close();

  const returned = deferred();
  server.ch.on('return', (msg) => returned.resolve(msg));
  server.ch.publish('', replyName, Buffer.from('too late'), { mandatory: true });
  const msg = await withTimeout(returned.promise, 5000, 'basic.return');
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.routingKey, replyName);
});

// ---------------------------------------------------------------------------
// channel.flow
// ---------------------------------------------------------------------------

test('channel.flow: active=true is acknowledged with flow-ok', async () => {
  const { ch } = await broker.connectWithChannel();
  const ok = await channelFlow(ch, true);
  assert.equal(ok.active, true);
  // The channel keeps working.
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('flowing'));
  assert.equal((await getMessage(ch, queue)).content.toString(), 'flowing');
});

test('channel.flow: active=false from the client is refused with 540 NOT_IMPLEMENTED (as RabbitMQ)', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const closed = connectionClosed(conn);
  await assert.rejects(channelFlow(ch, false));
  const err = await closed;
  assert.equal(err?.code, 540, `connection close: ${err?.message}`);
  assert.match(err.message, /active=false/);
});

// ---------------------------------------------------------------------------
// Memory alarm (Warren only)
// ---------------------------------------------------------------------------

test('memory alarm: publishers get connection.blocked above the watermark and unblocked once drained', { skip: WARREN_ONLY }, async () => {
  const warren = await spawnWarren({ extraArgs: ['--memory-high-watermark', '65536'] });
  try {
    const pubConn = await broker.connect(warren.url);
    const pub = await broker.channel(pubConn);
    const queue = uniqueName('q-alarm');
    await pub.assertQueue(queue, { durable: false });

    const blocked = deferred();
    const unblocked = deferred();
    pubConn.on('blocked', (reason) => blocked.resolve(reason));
    pubConn.on('unblocked', () => unblocked.resolve());

    const N = 50;
    const body = Buffer.alloc(4096, 'x'); // 50 x 4 KiB = 200 KiB > 64 KiB
    for (let i = 0; i < N; i++) pub.sendToQueue(queue, body, { messageId: String(i) });
    const reason = await withTimeout(blocked.promise, 5000, 'connection.blocked');
    assert.equal(reason, 'low on memory');

    // Drain from a connection that never published (it is not blocked).
    const conConn = await broker.connect(warren.url);
    const con = await broker.channel(conConn);
    const got = collector();
    await con.consume(queue, got.onMessage, { noAck: true });
    await withTimeout(unblocked.promise, 10000, 'connection.unblocked');
    // Everything the blocked publisher sent eventually arrives.
    await got.waitFor(N, 10000);
    assert.deepEqual(
      got.messages.map((m) => m.properties.messageId),
      Array.from({ length: N }, (_, i) => String(i)),
    );
    // And the publisher can publish again.
    pub.sendToQueue(queue, Buffer.from('after'));
    await got.waitFor(N + 1);
    assert.equal(got.messages[N].content.toString(), 'after');
  } finally {
    await warren.stop();
  }
});

// ---------------------------------------------------------------------------
// Consumer acknowledgement timeout (Warren only)
// ---------------------------------------------------------------------------

test(
  'consumer timeout: x-consumer-timeout cancels a consumer that does not ack and requeues its message',
  { skip: usingExternalBroker() ? 'RabbitMQ 3.10 has no x-consumer-timeout queue argument' : false },
  async () => {
    const conn = await broker.connect();
    const admin = await broker.channel(conn);
    const ch = await broker.channel(conn);
    const { queue } = await admin.assertQueue('', {
      exclusive: true,
      arguments: { 'x-consumer-timeout': 300 },
    });
    admin.sendToQueue(queue, Buffer.from('slow'));
    const got = collector();
    // Timed from before basic.consume: the broker delivers (and starts its 300 ms clock) after
    // this, so a client slow to see the delivery cannot make the bound fail.
    const started = performance.now();
    await ch.consume(queue, got.onMessage, { noAck: false });
    await got.waitFor(1);
    await got.cancelled(10000);
    assert.ok(performance.now() - started >= 250, 'not cancelled before the timeout');

    // The unacked message is back in the queue, marked redelivered.
    const again = await getMessage(admin, queue);
    assert.equal(again.content.toString(), 'slow');
    assert.equal(again.fields.redelivered, true);
    // The channel itself survives (the client asked for cancel notifications).
    assert.equal((await ch.checkQueue(queue)).consumerCount, 0);
  },
);
