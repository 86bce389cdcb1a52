'use strict';
// A channel error must stay on its channel: sibling channels on the same
// connection, and other connections, keep working.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const {
  useBroker,
  uniqueName,
  getMessage,
  deferred,
  withTimeout,
  channelClosed,
} = require('../helpers/broker');

const broker = useBroker();

/** Prove a channel works end to end: declare, publish, get. */
async function assertChannelWorks(ch, label) {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from(label));
  const msg = await getMessage(ch, queue);
  assert.equal(msg.content.toString(), label);
}

test('a failed passive declare leaves sibling channels and other connections working', async () => {
  const conn = await broker.connect();
  const bystander = await broker.channel(conn);
  const victim = await broker.channel(conn);
  const otherConn = await broker.connect();
  const otherCh = await broker.channel(otherConn);

  await assert.rejects(victim.checkQueue(uniqueName('q-missing')), (err) => err.code === 404);
  assert.equal((await channelClosed(victim))?.code, 404);

  await assertChannelWorks(bystander, 'bystander still works');
  await assertChannelWorks(otherCh, 'other connection still works');
  // New channels can be opened on the connection that saw the error.
  await assertChannelWorks(await broker.channel(conn), 'fresh channel works');
  assert.deepEqual(conn.recordedErrors, [], 'a channel error must not become a connection error');
});

test('an asynchronous channel error does not disturb a consumer on another channel', async () => {
  const conn = await broker.connect();
  const consumerCh = await broker.channel(conn);
  const publisherCh = await broker.channel(conn);
  const victim = await broker.channel(conn);
  const { queue } = await consumerCh.assertQueue('', { exclusive: true });

  const received = [];
  const gotAll = deferred();
  await consumerCh.consume(
    queue,
    (msg) => {
      received.push(msg.content.toString());
      consumerCh.ack(msg);
      if (received.length === 2) gotAll.resolve();
    },
    { noAck: false },
  );

  publisherCh.sendToQueue(queue, Buffer.from('before'));
  // Break the victim with an ack for a delivery it never had (406) ...
  victim.ack({ fields: { deliveryTag: 99 } });
  assert.equal((await channelClosed(victim))?.code, 406);
  // ... and the consumer and publisher carry on.
  publisherCh.sendToQueue(queue, Buffer.from('after'));
  await withTimeout(gotAll.promise, 5000, 'both deliveries');
  assert.deepEqual(received, ['before', 'after']);
  assert.deepEqual(conn.recordedErrors, []);
});

test('a channel error does not release another channel\'s unacked messages', async () => {
  const conn = await broker.connect();
  const holder = await broker.channel(conn);
  const victim = await broker.channel(conn);
  const { queue } = await holder.assertQueue('', { exclusive: true });
  holder.sendToQueue(queue, Buffer.from('held'));
  const msg = await getMessage(holder, queue, { noAck: false });

  // The victim fails with 404 publishing to a missing exchange.
  victim.publish(uniqueName('no-such-exchange'), 'rk', Buffer.from('x'));
  assert.equal((await channelClosed(victim))?.code, 404);

  // The holder's unacked message is still its own: nothing was requeued, and
  // acking it still works (an unknown tag would close the channel with 406).
  assert.equal((await holder.checkQueue(queue)).messageCount, 0);
  holder.ack(msg);
  await assertChannelWorks(holder, 'holder still works');
});

test('many channel errors in a row leave the connection usable', async () => {
  const conn = await broker.connect();
  for (let i = 0; i < 10; i++) {
    const ch = await broker.channel(conn);
    await assert.rejects(ch.checkQueue(uniqueName('q-missing')), (err) => err.code === 404);
  }
  await assertChannelWorks(await broker.channel(conn), 'still usable after ten channel errors');
  assert.deepEqual(conn.recordedErrors, []);
});
