'use strict';
// Publishing and consuming: basic.publish, basic.consume, basic.get,
// basic.return, basic.cancel and consumer bookkeeping.

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
  collector,
} = require('../helpers/broker');

const broker = useBroker();

/** Declare a fresh non-durable queue that is deleted with the connection. */
async function freshQueue(ch, prefix) {
  const { queue } = await ch.assertQueue(uniqueName(prefix), { exclusive: true });
  return queue;
}


test('sendToQueue delivers content and properties to a consumer', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-roundtrip');
  const got = collector();
  const { consumerTag } = await ch.consume(queue, got.onMessage, { noAck: false });

  const timestamp = Math.floor(Date.now() / 1000);
  const sent = ch.sendToQueue(queue, Buffer.from('{"hello":"world"}'), {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { 'x-custom': 'value', 'x-number': 42 },
    deliveryMode: 2,
    priority: 3,
    correlationId: 'corr-1',
    replyTo: 'reply-queue',
    messageId: 'msg-1',
    timestamp,
    type: 'greeting',
    appId: 'warren-node-e2e',
  });
  assert.equal(sent, true, 'sendToQueue should not report back-pressure for one small message');

  const [msg] = await got.waitFor(1);
  assert.equal(msg.content.toString(), '{"hello":"world"}');
  assert.equal(msg.fields.consumerTag, consumerTag);
  assert.equal(msg.fields.deliveryTag, 1, 'delivery tags start at 1 on a fresh channel');
  assert.equal(msg.fields.redelivered, false);
  assert.equal(msg.fields.exchange, '');
  assert.equal(msg.fields.routingKey, queue);

  const p = msg.properties;
  assert.equal(p.contentType, 'application/json');
  assert.equal(p.contentEncoding, 'utf-8');
  assert.equal(p.headers['x-custom'], 'value');
  assert.equal(p.headers['x-number'], 42);
  assert.equal(p.deliveryMode, 2);
  assert.equal(p.priority, 3);
  assert.equal(p.correlationId, 'corr-1');
  assert.equal(p.replyTo, 'reply-queue');
  assert.equal(p.messageId, 'msg-1');
  assert.equal(p.timestamp, timestamp);
  assert.equal(p.type, 'greeting');
  assert.equal(p.appId, 'warren-node-e2e');
  ch.ack(msg);
});

test('large and empty bodies survive the trip intact', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-bodies');
  const got = collector();
  await ch.consume(queue, got.onMessage, { noAck: true });

  // 1 MiB spans many frames (frame_max is far smaller), and a zero-length
  // body has no body frame at all.
  const big = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  ch.sendToQueue(queue, big);
  ch.sendToQueue(queue, Buffer.alloc(0));

  const [first, second] = await got.waitFor(2, 10_000);
  assert.equal(first.content.length, big.length);
  assert.ok(first.content.equals(big), 'large body corrupted');
  assert.equal(second.content.length, 0);
});

test('messages from one publisher arrive in publish order', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-order');
  const got = collector();
  await ch.consume(queue, got.onMessage, { noAck: true });
  const N = 200;
  for (let i = 0; i < N; i++) ch.sendToQueue(queue, Buffer.from(String(i)));
  const msgs = await got.waitFor(N);
  assert.deepEqual(
    msgs.map((m) => Number(m.content.toString())),
    Array.from({ length: N }, (_, i) => i),
  );
  assert.deepEqual(
    msgs.map((m) => m.fields.deliveryTag),
    Array.from({ length: N }, (_, i) => i + 1),
    'delivery tags increase by one per delivery',
  );
});

test('publish to amq.direct reaches the queue bound with that routing key only', async () => {
  const { ch } = await broker.connectWithChannel();
  const red = await freshQueue(ch, 'q-red');
  const blue = await freshQueue(ch, 'q-blue');
  const redKey = uniqueName('red');
  const blueKey = uniqueName('blue');
  await ch.bindQueue(red, 'amq.direct', redKey);
  await ch.bindQueue(blue, 'amq.direct', blueKey);

  ch.publish('amq.direct', redKey, Buffer.from('for red'));
  const msg = await getMessage(ch, red);
  assert.equal(msg.content.toString(), 'for red');
  assert.equal(msg.fields.exchange, 'amq.direct');
  assert.equal(msg.fields.routingKey, redKey);
  assert.equal((await ch.checkQueue(blue)).messageCount, 0, 'the other queue must stay empty');
});

test('basic.get returns a message with the remaining count, then false when empty', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-get');
  assert.equal(await ch.get(queue), false, 'get on an empty queue returns false');

  ch.sendToQueue(queue, Buffer.from('one'));
  ch.sendToQueue(queue, Buffer.from('two'));
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).messageCount, 2));

  const first = await ch.get(queue, { noAck: false });
  assert.equal(first.content.toString(), 'one');
  assert.equal(first.fields.messageCount, 1, 'get-ok carries the number of messages left');
  assert.equal(first.fields.redelivered, false);
  assert.equal(first.fields.routingKey, queue);
  ch.ack(first);

  const second = await ch.get(queue, { noAck: true });
  assert.equal(second.content.toString(), 'two');
  assert.equal(second.fields.messageCount, 0);

  assert.equal(await ch.get(queue), false);
});

test('a mandatory message that cannot be routed comes back as basic.return 312 NO_ROUTE', async () => {
  const { ch } = await broker.connectWithChannel();
  const returned = deferred();
  ch.on('return', (msg) => returned.resolve(msg));
  const key = uniqueName('nowhere');
  ch.publish('amq.direct', key, Buffer.from('lost'), { mandatory: true, messageId: 'ret-1' });

  const msg = await withTimeout(returned.promise, 5000, 'basic.return');
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.exchange, 'amq.direct');
  assert.equal(msg.fields.routingKey, key);
  assert.equal(msg.content.toString(), 'lost');
  assert.equal(msg.properties.messageId, 'ret-1');

  // The channel is still fine afterwards.
  const queue = await freshQueue(ch, 'q-after-return');
  assert.match(queue, /^q-after-return-/);
});

test('an unroutable message without mandatory is silently dropped', async () => {
  const { ch } = await broker.connectWithChannel();
  let returns = 0;
  ch.on('return', () => returns++);
  ch.publish('amq.direct', uniqueName('nowhere'), Buffer.from('dropped'));
  // Follow it with a mandatory unroutable message on the same channel: once
  // that one's return has arrived, the first would have been returned too.
  const returned = deferred();
  ch.on('return', (msg) => returned.resolve(msg));
  ch.publish('amq.direct', uniqueName('nowhere'), Buffer.from('marker'), { mandatory: true });
  const marker = await withTimeout(returned.promise, 5000, 'basic.return of the marker');
  assert.equal(marker.content.toString(), 'marker');
  assert.equal(returns, 1, 'only the mandatory message may be returned');
});

test('publishing to a missing exchange closes the channel with 404 NOT_FOUND', async () => {
  const { ch } = await broker.connectWithChannel();
  const exchange = uniqueName('no-such-exchange');
  ch.publish(exchange, 'rk', Buffer.from('void'));
  const err = await channelClosed(ch);
  assert.ok(err, 'the channel must be closed with an error');
  assert.equal(err.code, 404);
  assert.match(err.message, /NOT[-_]FOUND/);
  assert.ok(err.message.includes(exchange), 'the error should name the exchange');
});

test('consumer tags are generated by the server as amq.ctag-*', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-ctag');
  const a = await ch.consume(queue, () => {}, { noAck: true });
  const b = await ch.consume(queue, () => {}, { noAck: true });
  assert.match(a.consumerTag, /^amq\.ctag-.+/);
  assert.match(b.consumerTag, /^amq\.ctag-.+/);
  assert.notEqual(a.consumerTag, b.consumerTag);

  // A tag chosen by the client is used as given.
  const mine = uniqueName('my-tag');
  const c = await ch.consume(queue, () => {}, { noAck: true, consumerTag: mine });
  assert.equal(c.consumerTag, mine);
  assert.equal((await ch.checkQueue(queue)).consumerCount, 3);
});

test('re-using a consumer tag on the same channel fails with 530 NOT_ALLOWED', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-dup-ctag');
  const tag = uniqueName('tag');
  await ch.consume(queue, () => {}, { noAck: true, consumerTag: tag });
  // A duplicate consumer tag is a connection-level error in RabbitMQ.
  const closed = deferred();
  conn.on('close', (err) => closed.resolve(err));
  await assert.rejects(ch.consume(queue, () => {}, { noAck: true, consumerTag: tag }));
  const err = await withTimeout(closed.promise, 5000, 'the connection to be closed');
  assert.equal(err.code, 530);
  assert.match(err.message, /NOT[-_]ALLOWED/);
});

test('cancel stops deliveries to that consumer', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-cancel');
  const got = collector();
  const { consumerTag } = await ch.consume(queue, got.onMessage, { noAck: true });

  ch.sendToQueue(queue, Buffer.from('before'));
  await got.waitFor(1);

  const ok = await ch.cancel(consumerTag);
  assert.equal(ok.consumerTag, consumerTag, 'cancel-ok echoes the consumer tag');

  for (let i = 0; i < 3; i++) ch.sendToQueue(queue, Buffer.from(`after ${i}`));
  // Once the broker counts all three as ready, none of them went to the
  // cancelled consumer.
  await eventually(async () =>
    assert.deepEqual(await ch.checkQueue(queue), { queue, messageCount: 3, consumerCount: 0 }),
  );
  assert.equal(got.messages.length, 1, 'no delivery after cancel-ok');
});

test('a noAck consumer gets messages that need no acknowledgement', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = await freshQueue(ch, 'q-noack');
  const consumerCh = await broker.channel(conn);
  const got = collector();
  await consumerCh.consume(queue, got.onMessage, { noAck: true });
  for (let i = 0; i < 5; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
  const msgs = await got.waitFor(5);
  assert.deepEqual(
    msgs.map((m) => m.content.toString()),
    ['m0', 'm1', 'm2', 'm3', 'm4'],
  );
  // Closing the consumer's channel must not bring anything back: the
  // messages were settled on delivery.
  await consumerCh.close();
  await eventually(async () => assert.equal((await ch.checkQueue(queue)).consumerCount, 0));
  assert.equal((await ch.checkQueue(queue)).messageCount, 0);
});

test('an exclusive consumer locks out other consumers with 403 ACCESS_REFUSED', async () => {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  const { queue } = await ch.assertQueue(uniqueName('q-excl-consumer'), { durable: false, autoDelete: false });
  try {
    await ch.consume(queue, () => {}, { noAck: true, exclusive: true });

    // A second consumer, even on the same connection, is refused.
    const other = await broker.channel(conn);
    await assert.rejects(other.consume(queue, () => {}, { noAck: true }), (err) => {
      assert.equal(err.code, 403, err.message);
      assert.match(err.message, /ACCESS[-_]REFUSED/);
      return true;
    });

    // And an exclusive consumer is refused while any consumer exists.
    const conn2 = await broker.connect();
    const q2Ch = await broker.channel(conn2);
    const { queue: q2 } = await q2Ch.assertQueue('', { exclusive: true });
    await q2Ch.consume(q2, () => {}, { noAck: true });
    const third = await broker.channel(conn2);
    await assert.rejects(third.consume(q2, () => {}, { noAck: true, exclusive: true }), (err) => {
      assert.equal(err.code, 403, err.message);
      return true;
    });
  } finally {
    const cleanup = await broker.channel(await broker.connect());
    await cleanup.deleteQueue(queue);
  }
});

test('consuming from a missing queue fails with 404 NOT_FOUND', async () => {
  const { ch } = await broker.connectWithChannel();
  await assert.rejects(ch.consume(uniqueName('q-missing'), () => {}), (err) => {
    assert.equal(err.code, 404, err.message);
    return true;
  });
});

test('deleting a queue notifies its consumers with basic.cancel', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const queue = uniqueName('q-cancel-notify');
  await ch.assertQueue(queue, { durable: false });
  const consumerCh = await broker.channel(conn);
  const cancelled = deferred();
  // amqplib hands a consumer `null` when the server cancels it.
  await consumerCh.consume(queue, (msg) => {
    if (msg === null) cancelled.resolve();
  });
  await ch.deleteQueue(queue);
  await withTimeout(cancelled.promise, 5000, 'basic.cancel from the server');
  // The consumer's channel stays open.
  const { queue: q } = await consumerCh.assertQueue('', { exclusive: true });
  assert.match(q, /^amq\.gen-/);
});
