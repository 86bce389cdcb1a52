'use strict';
// The plugins development setups enable, through amqplib: the event exchange
// (amq.rabbitmq.event, RabbitMQ's rabbitmq_event_exchange plugin) and the
// firehose tracer (amq.rabbitmq.trace, `rabbitmqctl trace_on`), checked against
// RabbitMQ 3.10 with the event exchange plugin enabled (AMQP_URL and MGMT_URL)
// and against Warren. The Python suite covers them in depth
// (tests/python/test_event_exchange.py, test_firehose.py), and dynamic shovels
// (RabbitMQ with rabbitmq_shovel and rabbitmq_shovel_management; test_shovels.py).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useBroker, uniqueName, eventually } = require('../helpers/broker');

const broker = useBroker();

test('queue.created and queue.deleted reach a queue bound to amq.rabbitmq.event', async () => {
  const { ch } = await broker.connectWithChannel();
  const { queue: events } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(events, 'amq.rabbitmq.event', 'queue.*');
  const name = uniqueName('events');
  await ch.assertQueue(name, { durable: false, arguments: { 'x-max-length': 3 } });
  await ch.deleteQueue(name);
  const seen = [];
  await eventually(async () => {
    for (;;) {
      const m = await ch.get(events, { noAck: true });
      if (!m) break;
      if (m.properties.headers.name === name) seen.push(m);
    }
    assert.equal(seen.length, 2);
  });
  assert.deepEqual(seen.map((m) => m.fields.routingKey), ['queue.created', 'queue.deleted']);
  const [created] = seen;
  assert.equal(created.content.length, 0);
  assert.equal(created.properties.deliveryMode, 2);
  const h = created.properties.headers;
  assert.equal(h.vhost, '/');
  assert.equal(h.durable, false);
  assert.equal(h.auto_delete, false);
  assert.equal(h.exclusive, false);
  assert.equal(h.user_who_performed_action, 'guest');
  assert.equal(typeof h.timestamp_in_ms, 'number');
});

test('with tracing on, a publish and its delivery are copied to amq.rabbitmq.trace', async (t) => {
  if (!broker.mgmtUrl) return t.skip('needs the management API (MGMT_URL)');
  const vhost = uniqueName('trace');
  assert.ok([201, 204].includes((await broker.http('PUT', `/api/vhosts/${vhost}`, {})).status));
  try {
    const perms = { configure: '.*', write: '.*', read: '.*' };
    await broker.http('PUT', `/api/permissions/${vhost}/guest`, perms);
    const url = new URL(broker.url);
    url.pathname = '/' + encodeURIComponent(vhost);
    const conn = await broker.connect(url.toString());
    const ch = await broker.channel(conn, { confirm: true });
    const { queue: copies } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(copies, 'amq.rabbitmq.trace', '#');
    await ch.assertQueue('work');
    assert.equal((await broker.http('PUT', `/api/vhosts/${vhost}`, { tracing: true })).status, 204);
    ch.publish('', 'work', Buffer.from('hello'), { contentType: 'text/plain', headers: { a: 1 } });
    await ch.waitForConfirms();
    const got = await ch.get('work', { noAck: true });
    assert.equal(got.content.toString(), 'hello');
    const seen = [];
    await eventually(async () => {
      for (;;) {
        const m = await ch.get(copies, { noAck: true });
        if (!m) break;
        seen.push(m);
      }
      assert.equal(seen.length, 2);
    });
    assert.deepEqual(seen.map((m) => m.fields.routingKey), ['publish.', 'deliver.work']);
    for (const m of seen) {
      assert.equal(m.content.toString(), 'hello');
      const h = m.properties.headers;
      assert.equal(h.exchange_name, '');
      assert.deepEqual(h.routing_keys, ['work']);
      assert.equal(h.properties.content_type, 'text/plain');
      assert.deepEqual(h.properties.headers, { a: 1 });
      assert.equal(h.vhost, vhost);
      assert.equal(h.user, 'guest');
      assert.equal(h.channel, 1);
    }
    assert.deepEqual(seen[0].properties.headers.routed_queues, ['work']);
    assert.equal(seen[1].properties.headers.redelivered, 0);
  } finally {
    await broker.http('DELETE', `/api/vhosts/${vhost}`);
  }
});

test('a dynamic shovel moves what a queue holds to another queue, then deletes itself', async (t) => {
  if (!broker.mgmtUrl) return t.skip('needs the management API (MGMT_URL)');
  const vhost = uniqueName('shovel');
  assert.ok([201, 204].includes((await broker.http('PUT', `/api/vhosts/${vhost}`, {})).status));
  try {
    await broker.http('PUT', `/api/permissions/${vhost}/guest`, { configure: '.*', write: '.*', read: '.*' });
    const url = new URL(broker.url);
    url.pathname = '/' + encodeURIComponent(vhost);
    const conn = await broker.connect(url.toString());
    const ch = await broker.channel(conn, { confirm: true });
    await ch.assertQueue('failed', { durable: true });
    for (const n of ['1', '2', '3']) ch.sendToQueue('failed', Buffer.from(n), { messageId: 'm' + n });
    await ch.waitForConfirms();
    // amqp:// names this broker (vhost /); amqp:///<vhost> another of its vhosts.
    const here = `amqp:///${encodeURIComponent(vhost)}`;
    const value = {
      'src-uri': here, 'src-queue': 'failed', 'dest-uri': here, 'dest-queue': 'retry',
      'src-delete-after': 'queue-length', 'dest-add-forward-headers': true,
    };
    const put = await broker.http('PUT', `/api/parameters/shovel/${encodeURIComponent(vhost)}/move`, { value });
    assert.equal(put.status, 201);
    // (eventually() retries until its function stops throwing.)
    await eventually(async () =>
      assert.equal((await broker.http('GET', `/api/parameters/shovel/${encodeURIComponent(vhost)}/move`)).status, 404));
    const moved = [];
    await eventually(async () => {
      for (;;) {
        const m = await ch.get('retry', { noAck: true });
        if (!m) break;
        moved.push(m);
      }
      assert.equal(moved.length, 3);
    });
    assert.deepEqual(moved.map((m) => m.content.toString()), ['1', '2', '3']);
    assert.deepEqual(moved.map((m) => m.properties.messageId), ['m1', 'm2', 'm3']);
    const hop = moved[0].properties.headers['x-shovelled'][0];
    assert.equal(hop['shovel-name'], 'move');
    assert.equal(hop['src-queue'], 'failed');
    assert.equal(hop['dest-queue'], 'retry');
    assert.equal((await ch.checkQueue('failed')).messageCount, 0);
    await conn.close();
  } finally {
    await broker.http('DELETE', `/api/vhosts/${vhost}`);
  }
});
