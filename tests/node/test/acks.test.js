'use strict';
// Acknowledgement semantics: prefetch, ack / nack / reject (single and
// multiple), recover, requeue on channel close, and protocol errors for bad
// delivery tags.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const {
  useBroker,
  uniqueName,
  eventually,
  channelClosed,
  collector,
} = require('../helpers/broker');

const broker = useBroker();


const bodies = (msgs) => msgs.map((m) => m.content.toString());

/**
 * A test fixture: one connection, a publishing/inspecting channel `ch`, a
 * separate consuming channel `cch`, and an exclusive queue holding `count`
 * messages named m1..mN (already routed when this resolves).
 */
async function fixture(count, prefix) {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  const cch = await broker.channel(conn);
  const { queue } = await ch.assertQueue(uniqueName(prefix), { exclusive: true });
  for (let i = 1; i <= count; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, count));
  return { conn, ch, cch, queue };
}

/** Ready-message count once the queue has no consumers left. */
async function readyCountAfterConsumersGone(ch, queue) {
  const ok = await eventually(async () => {
    const info = await ch.checkQueue(queue);
    assert.equal(info.consumerCount, 0);
    return info;
  });
  return ok.messageCount;
}

test('prefetch limits unacknowledged deliveries until acks free the window', async () => {
  const { ch, cch, queue } = await fixture(5, 'q-prefetch');
  await cch.prefetch(2);
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });

  await got.waitFor(2);
  // The broker has answered a round-trip after filling the window: three
  // messages must still be waiting in the queue, not in flight to us.
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 3));
  assert.equal(got.messages.length, 2, 'no more than the prefetch count may be delivered');

  // Ack one: exactly one more comes in.
  cch.ack(got.messages[0]);
  await got.waitFor(3);
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 2));
  assert.equal(got.messages.length, 3);

  // Ack the rest as they arrive and everything drains, in order.
  cch.ack(got.messages[1]);
  cch.ack(got.messages[2]);
  await got.waitFor(4);
  cch.ack(got.messages[3]);
  await got.waitFor(5);
  cch.ack(got.messages[4]);
  assert.deepEqual(bodies(got.messages), ['m1', 'm2', 'm3', 'm4', 'm5']);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0, 'all acked, nothing requeued');
});

test('prefetch of 1 with multiple consumers delivers one unacked message each', async () => {
  const { ch, cch, queue } = await fixture(4, 'q-prefetch-two');
  await cch.prefetch(1);
  const a = collector();
  const b = collector();
  await cch.consume(queue, a.onMessage, { noAck: false });
  await cch.consume(queue, b.onMessage, { noAck: false });
  await a.waitFor(1);
  await b.waitFor(1);
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 2));
  assert.equal(a.messages.length + b.messages.length, 2);
});

test('ack settles messages so closing the channel requeues nothing', async () => {
  const { ch, cch, queue } = await fixture(3, 'q-ack');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const msgs = await got.waitFor(3);
  for (const m of msgs) cch.ack(m);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0);
});

test('ack with allUpTo settles every earlier delivery too', async () => {
  const { ch, cch, queue } = await fixture(5, 'q-ack-multiple');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const msgs = await got.waitFor(5);
  // Ack m1..m3 in one go; m4 and m5 stay unacked.
  cch.ack(msgs[2], true);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 2, 'only the two later messages are requeued');
  const left = [await ch.get(queue, { noAck: true }), await ch.get(queue, { noAck: true })];
  assert.deepEqual(bodies(left), ['m4', 'm5']);
  assert.ok(left.every((m) => m.fields.redelivered), 'requeued messages are flagged redelivered');
});

test('ackAll settles everything outstanding on the channel', async () => {
  const { ch, cch, queue } = await fixture(4, 'q-ackall');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  await got.waitFor(4);
  cch.ackAll();
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0);
});

test('nack with requeue redelivers the message flagged as redelivered', async () => {
  const { cch, queue } = await fixture(1, 'q-nack-requeue');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const [first] = await got.waitFor(1);
  assert.equal(first.fields.redelivered, false);

  cch.nack(first, false, true);
  const msgs = await got.waitFor(2);
  const again = msgs[1];
  assert.equal(again.content.toString(), 'm1');
  assert.equal(again.fields.redelivered, true, 'a requeued message must carry redelivered=true');
  assert.notEqual(again.fields.deliveryTag, first.fields.deliveryTag, 'a redelivery gets a new delivery tag');
  cch.ack(again);
});

test('nack without requeue drops the message', async () => {
  const { ch, cch, queue } = await fixture(2, 'q-nack-drop');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const msgs = await got.waitFor(2);
  cch.nack(msgs[0], false, false);
  cch.ack(msgs[1]);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0, 'a nacked message without requeue is gone');
  assert.equal(await ch.get(queue), false);
});

test('nack with allUpTo requeues every earlier delivery in order', async () => {
  const { cch, queue } = await fixture(3, 'q-nack-multiple');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const msgs = await got.waitFor(3);
  cch.nack(msgs[2], true, true);
  const all = await got.waitFor(6);
  const redeliveries = all.slice(3);
  assert.deepEqual(bodies(redeliveries), ['m1', 'm2', 'm3']);
  assert.ok(redeliveries.every((m) => m.fields.redelivered));
  cch.ackAll();
});

test('nackAll without requeue drops everything outstanding', async () => {
  const { ch, cch, queue } = await fixture(3, 'q-nackall');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  await got.waitFor(3);
  cch.nackAll(false);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0);
});

test('nackAll with requeue brings everything back', async () => {
  const { ch, cch, queue } = await fixture(3, 'q-nackall-requeue');
  const first = await cch.get(queue, { noAck: false });
  const second = await cch.get(queue, { noAck: false });
  assert.deepEqual(bodies([first, second]), ['m1', 'm2']);
  cch.nackAll(true);
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 3));
  const again = await ch.get(queue, { noAck: true });
  assert.equal(again.content.toString(), 'm1', 'requeued messages go back to their original position');
  assert.equal(again.fields.redelivered, true);
});

test('reject with and without requeue', async () => {
  const { ch, cch, queue } = await fixture(2, 'q-reject');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const msgs = await got.waitFor(2);

  cch.reject(msgs[0], true); // m1 comes back
  cch.reject(msgs[1], false); // m2 is dropped
  const all = await got.waitFor(3);
  assert.equal(all[2].content.toString(), 'm1');
  assert.equal(all[2].fields.redelivered, true);
  cch.ack(all[2]);
  await cch.close();
  assert.equal(await readyCountAfterConsumersGone(ch, queue), 0, 'the rejected m2 must not come back');
});

test('recover redelivers unacknowledged messages with redelivered=true', async () => {
  const { cch, queue } = await fixture(3, 'q-recover');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const first = await got.waitFor(3);
  assert.ok(first.every((m) => !m.fields.redelivered));
  cch.ack(first[0]); // m1 is settled and must not return

  await cch.recover();
  const all = await got.waitFor(5);
  const again = all.slice(3);
  assert.deepEqual(bodies(again).sort(), ['m2', 'm3']);
  assert.ok(again.every((m) => m.fields.redelivered), 'recovered messages are flagged redelivered');
  cch.ackAll();
});

test('closing a channel requeues its unacked messages in their original order', async () => {
  const { conn, ch, cch, queue } = await fixture(5, 'q-requeue-order');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const firstRound = await got.waitFor(5);
  assert.deepEqual(bodies(firstRound), ['m1', 'm2', 'm3', 'm4', 'm5']);
  await cch.close();
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 5));

  const cch2 = await broker.channel(conn);
  const again = collector();
  await cch2.consume(queue, again.onMessage, { noAck: false });
  const secondRound = await again.waitFor(5);
  assert.deepEqual(bodies(secondRound), ['m1', 'm2', 'm3', 'm4', 'm5'], 'requeued messages keep their order');
  assert.ok(secondRound.every((m) => m.fields.redelivered), 'every requeued message is redelivered=true');
  cch2.ackAll();
});

test('a closed connection requeues its unacked messages for other consumers', async () => {
  const { ch } = await broker.connectWithChannel();
  // Not exclusive: the queue must outlive the consumer's connection.
  const queue = uniqueName('q-requeue-conn');
  await ch.assertQueue(queue, { durable: false });
  try {
    for (let i = 1; i <= 3; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
    const consumerConn = await broker.connect();
    const cch = await broker.channel(consumerConn);
    const got = collector();
    await cch.consume(queue, got.onMessage, { noAck: false });
    await got.waitFor(3);
    await consumerConn.close();

    assert.equal(await readyCountAfterConsumersGone(ch, queue), 3);
    const m = await ch.get(queue, { noAck: true });
    assert.equal(m.content.toString(), 'm1');
    assert.equal(m.fields.redelivered, true);
  } finally {
    await ch.deleteQueue(queue);
  }
});

test('acking the same delivery twice closes the channel with 406 PRECONDITION_FAILED', async () => {
  const { conn, cch, queue } = await fixture(1, 'q-double-ack');
  const got = collector();
  await cch.consume(queue, got.onMessage, { noAck: false });
  const [msg] = await got.waitFor(1);
  cch.ack(msg);
  cch.ack(msg); // unknown delivery tag now
  const err = await channelClosed(cch);
  assert.ok(err, 'the channel must be closed with an error');
  assert.equal(err.code, 406);
  assert.match(err.message, /PRECONDITION[-_]FAILED/);
  assert.match(err.message, /unknown delivery tag/i);
  // It is a channel error, not a connection error.
  assert.deepEqual(conn.recordedErrors, []);
});

test('acking a delivery tag that was never issued closes the channel with 406', async () => {
  const { cch } = await fixture(0, 'q-bogus-ack');
  cch.ack({ fields: { deliveryTag: 42 } });
  const err = await channelClosed(cch);
  assert.equal(err?.code, 406);
});

test('nack and reject of unknown delivery tags close the channel with 406', async () => {
  const conn = await broker.connect();
  const a = await broker.channel(conn);
  a.nack({ fields: { deliveryTag: 7 } }, false, true);
  assert.equal((await channelClosed(a))?.code, 406);
  const b = await broker.channel(conn);
  b.reject({ fields: { deliveryTag: 7 } }, false);
  assert.equal((await channelClosed(b))?.code, 406);
});
