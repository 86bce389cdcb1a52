'use strict';
// Publisher confirms. EVERY TEST IN THIS FILE NEEDS confirm.select support
// (amqplib's ConfirmChannel); they are kept together so a broker without
// confirms fails this file only.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useBroker, uniqueName, eventually, deferred, withTimeout, channelClosed } = require('../helpers/broker');

const broker = useBroker();

/** Publish on a ConfirmChannel and resolve with the confirm outcome. */
function publishConfirmed(ch, exchange, key, body, options = {}) {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, key, Buffer.from(body), options, (err) => (err ? reject(err) : resolve()));
  });
}

test('[confirms] every publish to a queue is acked by the broker', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });

  const acks = [];
  ch.on('ack', (fields) => acks.push(fields));
  const N = 20;
  await Promise.all(Array.from({ length: N }, (_, i) => publishConfirmed(ch, '', queue, `m${i}`)));
  await ch.waitForConfirms();

  // Confirms may be batched with `multiple`, but together they must cover
  // exactly the sequence numbers 1..N.
  const highest = Math.max(...acks.map((a) => a.deliveryTag));
  assert.equal(highest, N, 'the last confirm must be for sequence number N');
  assert.equal((await ch.checkQueue(queue)).messageCount, N, 'a confirmed message is in the queue');
});

test('[confirms] an unroutable mandatory message is returned and then acked', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const order = [];
  const returned = deferred();
  ch.on('return', (msg) => {
    order.push('return');
    returned.resolve(msg);
  });
  await publishConfirmed(ch, 'amq.direct', uniqueName('nowhere'), 'bounce', { mandatory: true }).then(() =>
    order.push('ack'),
  );
  const msg = await withTimeout(returned.promise, 5000, 'basic.return');
  assert.equal(msg.fields.replyCode, 312);
  // RabbitMQ sends basic.return before the basic.ack for the same message.
  assert.deepEqual(order, ['return', 'ack']);
});

test('[confirms] an unroutable message without mandatory is still acked', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  await withTimeout(
    publishConfirmed(ch, 'amq.direct', uniqueName('nowhere'), 'dropped'),
    5000,
    'the confirm of an unroutable message',
  );
});

test('[confirms] publishing to a missing exchange closes the confirm channel with 404', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const outcome = publishConfirmed(ch, uniqueName('no-such-exchange'), 'rk', 'void').then(
    () => 'acked',
    (err) => err,
  );
  const err = await channelClosed(ch);
  assert.equal(err?.code, 404);
  // The publish callback must not claim success.
  assert.notEqual(await outcome, 'acked');
});

test('[confirms] a full queue with x-overflow=reject-publish nacks the publish', async () => {
  const { ch } = await broker.connectWithChannel({ confirm: true });
  const queue = uniqueName('q-reject-publish');
  await ch.assertQueue(queue, {
    exclusive: true,
    arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' },
  });
  await publishConfirmed(ch, '', queue, 'fits');
  await assert.rejects(publishConfirmed(ch, '', queue, 'overflows'), /nack/i);
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 1));
  const msg = await ch.get(queue, { noAck: true });
  assert.equal(msg.content.toString(), 'fits');
});
