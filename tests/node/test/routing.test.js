'use strict';
// Exchanges and routing: exchange.declare/delete semantics, the built-in
// exchange types (direct, fanout, topic, headers), exchange-to-exchange
// bindings, internal and auto-delete exchanges, alternate exchanges.
//
// Every expectation here was checked against RabbitMQ 3.10. "Nothing arrived"
// is established without timers: after the messages under test, a marker is
// published on the same channel straight to each queue (default exchange).
// RabbitMQ keeps a channel's messages in order per queue, so once the marker
// has been fetched everything published before it has been routed.

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
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

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

// Exchanges declared by the current test; deleted after it (deleting a
// missing exchange is not an error, so tests may delete them themselves).
let createdExchanges = [];

afterEach(async () => {
  const names = createdExchanges;
  createdExchanges = [];
  if (names.length === 0) return;
  const conn = await amqp.connect(broker.url);
  conn.on('error', () => {});
  try {
    for (const name of names) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.deleteExchange(name).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await conn.close().catch(() => {});
  }
});

/** A fresh name that is deleted as an exchange after the test. */
function exchangeName(prefix = 'x') {
  const name = uniqueName(`routing-${prefix}`);
  createdExchanges.push(name);
  return name;
}

/** Declare a fresh transient exchange of `type`; returns its name. */
async function declareExchange(ch, type, options = {}, prefix = type) {
  const name = exchangeName(prefix);
  await ch.assertExchange(name, type, { durable: false, ...options });
  return name;
}

/** Declare a fresh exclusive queue (deleted with the connection). */
async function declareQueue(ch, prefix = 'q') {
  const { queue } = await ch.assertQueue(uniqueName(`routing-${prefix}`), { exclusive: true });
  return queue;
}

const MARKER = '--marker--';

/**
 * For each queue, publish a marker to it through the default exchange on
 * `ch` (the channel the messages under test were published on), then
 * basic.get until the marker comes out. Returns the bodies that preceded the
 * marker, per queue: exactly what the earlier publishes routed there.
 */
async function drainUpToMarker(ch, queues) {
  for (const q of queues) ch.sendToQueue(q, Buffer.from(MARKER));
  const result = [];
  for (const q of queues) {
    const bodies = [];
    for (;;) {
      const msg = await getMessage(ch, q);
      const body = msg.content.toString();
      if (body === MARKER) break;
      bodies.push(body);
    }
    result.push(bodies);
  }
  return result;
}

/** Like drainUpToMarker for a single queue, returning the full messages. */
async function messagesUpToMarker(ch, queue) {
  ch.sendToQueue(queue, Buffer.from(MARKER));
  const messages = [];
  for (;;) {
    const msg = await getMessage(ch, queue);
    if (msg.content.toString() === MARKER) return messages;
    messages.push(msg);
  }
}

/**
 * Declare an exchange of `type`, one queue per entry of `bindings`
 * ({ name: { key, args } }), publish one message per entry of `messages`
 * ({ name: { key, headers } }) with the message's name as body, and return
 * { bindingName: [names of the messages that reached it] }.
 */
async function routingTable(ch, type, bindings, messages) {
  const exchange = await declareExchange(ch, type);
  const queues = {};
  for (const [name, { key = '', args }] of Object.entries(bindings)) {
    queues[name] = await declareQueue(ch, `q-${type}`);
    await ch.bindQueue(queues[name], exchange, key, args);
  }
  for (const [name, { key = '', headers }] of Object.entries(messages)) {
    ch.publish(exchange, key, Buffer.from(name), { headers });
  }
  const names = Object.keys(bindings);
  const got = await drainUpToMarker(ch, names.map((n) => queues[n]));
  return Object.fromEntries(names.map((n, i) => [n, got[i]]));
}

/** Assert that `promise` fails with AMQP reply code `code` (and text). */
async function rejectsWithCode(promise, code, text) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected reply code ${code}, got ${err.code}: ${err.message}`);
    if (text) assert.match(err.message, text);
    return true;
  });
}

/** True if the exchange exists, false if a passive declare says 404. */
async function exchangeExists(conn, name) {
  const ch = await broker.channel(conn);
  try {
    await ch.checkExchange(name);
    await ch.close();
    return true;
  } catch (err) {
    if (err.code === 404) return false;
    throw err;
  }
}

/**
 * Record basic.return on `ch`. `settle()` publishes a mandatory, unroutable
 * marker and waits for its return: returns are sent in order, so afterwards
 * `returned` holds every return for messages published before it.
 */
function watchReturns(ch) {
  const returned = [];
  let markerReturned = null;
  ch.on('return', (msg) => {
    if (markerReturned && msg.content.toString() === MARKER) markerReturned.resolve();
    else returned.push(msg);
  });
  return {
    returned,
    async settle() {
      markerReturned = deferred();
      ch.publish('amq.direct', uniqueName('routing-unroutable'), Buffer.from(MARKER), { mandatory: true });
      await withTimeout(markerReturned.promise, 5000, 'the return of the marker');
    },
  };
}

/**
 * Run `action` (which sends one method on a channel of `conn`) and resolve
 * with the error the server closes the connection with. If the connection
 * stays open, the failure says what became of the method instead.
 */
async function expectConnectionClose(conn, action) {
  const closed = deferred();
  conn.on('close', (err) => closed.resolve(err));
  const outcome = await action().then(
    () => 'the method succeeded',
    (err) => `the method failed with: ${err.message}`,
  );
  try {
    return await withTimeout(closed.promise, 5000, 'the connection to be closed');
  } catch (err) {
    err.message += ` (${outcome})`;
    throw err;
  }
}

// amqplib encodes { '!': type, value } with exactly that field-table type.
const typed = (type, value) => ({ '!': type, value });

// ---------------------------------------------------------------------------
// exchange.declare
// ---------------------------------------------------------------------------

test('the predeclared amq.* exchanges exist and accept an equivalent redeclare', async () => {
  const { ch } = await broker.connectWithChannel();
  for (const name of ['amq.direct', 'amq.fanout', 'amq.topic', 'amq.headers', 'amq.match']) {
    await ch.checkExchange(name);
  }
  // Their real properties: durable, of the type their name says.
  await ch.assertExchange('amq.direct', 'direct', { durable: true });
  await ch.assertExchange('amq.fanout', 'fanout', { durable: true });
  await ch.assertExchange('amq.topic', 'topic', { durable: true });
  await ch.assertExchange('amq.headers', 'headers', { durable: true });
  await ch.assertExchange('amq.match', 'headers', { durable: true });
});

test('a passive declare of a missing exchange fails with 404 NOT_FOUND', async () => {
  const { ch } = await broker.connectWithChannel();
  await rejectsWithCode(ch.checkExchange(uniqueName('routing-missing')), 404, /NOT_FOUND/);
  assert.equal((await channelClosed(ch)).code, 404);
});

test('exchanges of every type and flag combination can be declared and redeclared identically', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  for (const type of ['direct', 'fanout', 'topic', 'headers']) {
    for (const durable of [false, true]) {
      for (const autoDelete of [false, true]) {
        for (const internal of [false, true]) {
          const options = { durable, autoDelete, internal, arguments: { 'x-custom': 'v', n: 7 } };
          const name = exchangeName(`flags-${type}`);
          assert.deepEqual(await ch.assertExchange(name, type, options), { exchange: name });
          assert.deepEqual(await ch.assertExchange(name, type, options), { exchange: name });
          await ch.checkExchange(name);
          await ch.deleteExchange(name);
          assert.equal(await exchangeExists(conn, name), false);
        }
      }
    }
  }
});

test('redeclaring an exchange with a different type or flag fails with 406 PRECONDITION_FAILED', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const base = { durable: false, autoDelete: false, internal: false };
  const cases = [
    ['type', 'topic', {}, /inequivalent arg 'type'/],
    ['durable', 'direct', { durable: true }, /inequivalent arg 'durable'/],
    ['auto_delete', 'direct', { autoDelete: true }, /inequivalent arg 'auto_delete'/],
    ['internal', 'direct', { internal: true }, /inequivalent arg 'internal'/],
  ];
  for (const [label, type, change, text] of cases) {
    const name = await declareExchange(setup, 'direct', base, `redeclare-${label}`);
    const ch = await broker.channel(conn);
    await rejectsWithCode(ch.assertExchange(name, type, { ...base, ...change }), 406, text);
    assert.equal((await channelClosed(ch)).code, 406, label);
    // The original exchange is untouched.
    await setup.assertExchange(name, 'direct', base);
  }
});

test('redeclaring an exchange with a different alternate-exchange fails with 406', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const cases = [
    ['changed', { alternateExchange: 'ae-one' }, { alternateExchange: 'ae-two' }],
    ['removed', { alternateExchange: 'ae-one' }, {}],
    ['added', {}, { alternateExchange: 'ae-one' }],
  ];
  for (const [label, first, second] of cases) {
    const name = await declareExchange(setup, 'direct', first, `ae-${label}`);
    const ch = await broker.channel(conn);
    await rejectsWithCode(
      ch.assertExchange(name, 'direct', { durable: false, ...second }),
      406,
      /inequivalent arg 'alternate-exchange'/,
    );
    // The same alternate-exchange again is fine.
    await setup.assertExchange(name, 'direct', { durable: false, ...first });
  }
});

test('exchange arguments other than alternate-exchange are not compared on redeclare', async () => {
  // RabbitMQ only checks alternate-exchange for equivalence; any other
  // argument may differ (or be missing) on a redeclare.
  const { ch } = await broker.connectWithChannel();
  const name = await declareExchange(ch, 'direct', { arguments: { 'x-foo': 1 } });
  await ch.assertExchange(name, 'direct', { durable: false, arguments: { 'x-foo': 2 } });
  await ch.assertExchange(name, 'direct', { durable: false });
  await ch.assertExchange(name, 'direct', { durable: false, arguments: { other: 'x' } });
  await ch.checkExchange(name);
});

test('an alternate-exchange argument that is not a string fails with 406', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const name = exchangeName('ae-type');
  await rejectsWithCode(
    ch.assertExchange(name, 'direct', { durable: false, arguments: { 'alternate-exchange': 5 } }),
    406,
    /invalid type .* for arg 'alternate-exchange'/,
  );
  assert.equal(await exchangeExists(conn, name), false);
});

test('declaring a new amq.* exchange fails with 403 ACCESS_REFUSED; the prefix is case sensitive', async () => {
  const conn = await broker.connect();
  const name = `amq.${uniqueName('routing-reserved')}`;
  const ch = await broker.channel(conn);
  await rejectsWithCode(ch.assertExchange(name, 'direct', { durable: false }), 403, /reserved prefix 'amq\.\*'/);
  assert.equal((await channelClosed(ch)).code, 403);
  // It was not created, and a passive declare of a missing amq.* name is 404.
  const probe = await broker.channel(conn);
  await rejectsWithCode(probe.checkExchange(name), 404, /NOT_FOUND/);

  const upperName = `AMQ.${uniqueName('routing-upper')}`;
  createdExchanges.push(upperName);
  const ok = await broker.channel(conn);
  await ok.assertExchange(upperName, 'direct', { durable: false });
  await ok.deleteExchange(upperName);
});

test('amq.direct cannot be deleted (403) nor redeclared with another type (406)', async () => {
  const conn = await broker.connect();
  const del = await broker.channel(conn);
  await rejectsWithCode(del.deleteExchange('amq.direct'), 403, /ACCESS_REFUSED/);
  const redeclare = await broker.channel(conn);
  await rejectsWithCode(redeclare.assertExchange('amq.direct', 'fanout', { durable: true }), 406, /inequivalent arg 'type'/);
  const check = await broker.channel(conn);
  await check.assertExchange('amq.direct', 'direct', { durable: true });
});

test('declaring, deleting or binding the default exchange fails with 403 ACCESS_REFUSED', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const queue = await declareQueue(setup);
  const other = await declareExchange(setup, 'direct');
  const operations = {
    'exchange.declare': (ch) => ch.assertExchange('', 'direct', { durable: true }),
    'exchange.declare passive': (ch) => ch.checkExchange(''),
    'exchange.delete': (ch) => ch.deleteExchange(''),
    'queue.bind': (ch) => ch.bindQueue(queue, '', 'k'),
    'queue.unbind': (ch) => ch.unbindQueue(queue, '', queue),
    'exchange.bind with "" as source': (ch) => ch.bindExchange(other, '', 'k'),
    'exchange.bind with "" as destination': (ch) => ch.bindExchange('', other, 'k'),
  };
  for (const [label, op] of Object.entries(operations)) {
    const ch = await broker.channel(conn);
    await rejectsWithCode(op(ch), 403, /operation not permitted on the default exchange/);
    assert.equal((await channelClosed(ch)).code, 403, label);
  }
  // The default exchange still routes by queue name.
  setup.sendToQueue(queue, Buffer.from('still routed'));
  assert.equal((await getMessage(setup, queue)).content.toString(), 'still routed');
});

test('an unknown exchange type closes the connection with 503 COMMAND_INVALID', async () => {
  const conn = await broker.connect();
  const ch = await broker.channel(conn);
  const name = exchangeName('bad-type');
  const err = await expectConnectionClose(conn, () => ch.assertExchange(name, 'no-such-type', { durable: false }));
  assert.equal(err.code, 503);
  assert.match(err.message, /COMMAND_INVALID - unknown exchange type 'no-such-type'/);
  assert.equal(await exchangeExists(await broker.connect(), name), false);
});

test('redeclaring an existing exchange with an unknown type closes the connection with 503', async () => {
  // The type is validated before the existing exchange is looked at.
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const name = await declareExchange(setup, 'direct');
  const err = await expectConnectionClose(conn, () => setup.assertExchange(name, 'no-such-type', { durable: false }));
  assert.equal(err.code, 503);
  assert.match(err.message, /COMMAND_INVALID - unknown exchange type 'no-such-type'/);
});

// ---------------------------------------------------------------------------
// exchange.delete
// ---------------------------------------------------------------------------

test('deleting a missing exchange succeeds', async () => {
  const { ch } = await broker.connectWithChannel();
  assert.deepEqual(await ch.deleteExchange(uniqueName('routing-missing')), {});
  assert.deepEqual(await ch.deleteExchange(uniqueName('routing-missing'), { ifUnused: true }), {});
});

test('delete ifUnused fails with 406 while the exchange is a binding source, then succeeds', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const queue = await declareQueue(setup);

  // Bound to a queue.
  const withQueue = await declareExchange(setup, 'direct');
  await setup.bindQueue(queue, withQueue, 'k');
  let ch = await broker.channel(conn);
  await rejectsWithCode(ch.deleteExchange(withQueue, { ifUnused: true }), 406, /in use/);
  assert.equal(await exchangeExists(conn, withQueue), true);
  await setup.unbindQueue(queue, withQueue, 'k');
  await setup.deleteExchange(withQueue, { ifUnused: true });
  assert.equal(await exchangeExists(conn, withQueue), false);

  // Source of an exchange-to-exchange binding.
  const source = await declareExchange(setup, 'fanout', {}, 'src');
  const destination = await declareExchange(setup, 'fanout', {}, 'dst');
  await setup.bindExchange(destination, source, '');
  ch = await broker.channel(conn);
  await rejectsWithCode(ch.deleteExchange(source, { ifUnused: true }), 406, /in use/);
  // Being only a binding *destination* does not count as "used".
  await setup.deleteExchange(destination, { ifUnused: true });
  assert.equal(await exchangeExists(conn, destination), false);
  // ...and that deletion removed the binding, so the source is unused now.
  await setup.deleteExchange(source, { ifUnused: true });
  assert.equal(await exchangeExists(conn, source), false);
});

test('deleting an exchange removes its bindings', async () => {
  const { ch } = await broker.connectWithChannel();
  const queue = await declareQueue(ch);
  const exchange = await declareExchange(ch, 'fanout');
  await ch.bindQueue(queue, exchange, '');
  ch.publish(exchange, '', Buffer.from('before'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['before']]);

  await ch.deleteExchange(exchange);
  await ch.assertExchange(exchange, 'fanout', { durable: false });
  ch.publish(exchange, '', Buffer.from('after'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [[]], 'the recreated exchange has no bindings');
});

// ---------------------------------------------------------------------------
// direct / fanout / topic
// ---------------------------------------------------------------------------

test('direct exchange: exact, case-sensitive key match to every bound queue', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'direct',
    { q1: { key: 'red' }, q2: { key: 'red' }, q3: { key: 'Red' }, q4: { key: '' }, q5: { key: 'red.*' } },
    { m1: { key: 'red' }, m2: { key: 'RED' }, m3: { key: '' }, m4: { key: 'red.x' }, m5: { key: 'red.*' } },
  );
  assert.deepEqual(got, { q1: ['m1'], q2: ['m1'], q3: [], q4: ['m3'], q5: ['m5'] });
});

test('fanout exchange: every bound queue gets every message, whatever the keys', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'fanout',
    { q1: { key: '' }, q2: { key: 'some-key' } },
    { m1: { key: '' }, m2: { key: 'other' } },
  );
  assert.deepEqual(got, { q1: ['m1', 'm2'], q2: ['m1', 'm2'] });
});

test('topic exchange: * is exactly one word, # is zero or more', async () => {
  const { ch } = await broker.connectWithChannel();
  const bindings = {
    star: { key: '*' },
    hash: { key: '#' },
    aStar: { key: 'a.*' },
    aHash: { key: 'a.#' },
    aHashB: { key: 'a.#.b' },
    starBStar: { key: '*.b.*' },
  };
  const messages = Object.fromEntries(['', 'a', 'a.b', 'a.x.b', 'a.b.c', 'x.b.y'].map((k) => [`[${k}]`, { key: k }]));
  const got = await routingTable(ch, 'topic', bindings, messages);
  assert.deepEqual(got, {
    star: ['[a]'],
    hash: ['[]', '[a]', '[a.b]', '[a.x.b]', '[a.b.c]', '[x.b.y]'],
    aStar: ['[a.b]'],
    aHash: ['[a]', '[a.b]', '[a.x.b]', '[a.b.c]'],
    aHashB: ['[a.b]', '[a.x.b]'],
    starBStar: ['[a.b.c]', '[x.b.y]'],
  });
});

test('a queue whose bindings overlap gets one copy of a message matching several', async () => {
  const { ch } = await broker.connectWithChannel();
  const exchange = await declareExchange(ch, 'topic');
  const queue = await declareQueue(ch);
  for (const key of ['a.*', '#.b', 'a.b', '#']) await ch.bindQueue(queue, exchange, key);
  ch.publish(exchange, 'a.b', Buffer.from('once'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['once']]);
});

// ---------------------------------------------------------------------------
// headers exchange
// ---------------------------------------------------------------------------

test('headers exchange: x-match all, any, all-with-x, any-with-x and the x- keys', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    {
      all: { args: { 'x-match': 'all', 'x-k': 1, b: 2 } },
      any: { args: { 'x-match': 'any', 'x-k': 1, b: 2 } },
      allWithX: { args: { 'x-match': 'all-with-x', 'x-k': 1, b: 2 } },
      anyWithX: { args: { 'x-match': 'any-with-x', 'x-k': 1, b: 2 } },
      allEmpty: { args: { 'x-match': 'all' } },
      anyEmpty: { args: { 'x-match': 'any' } },
      noArgs: { args: {} },
      anyOnlyX: { args: { 'x-match': 'any', 'x-k': 1 } },
      allOnlyX: { args: { 'x-match': 'all', 'x-k': 1 } },
    },
    {
      onlyX: { headers: { 'x-k': 1 } },
      onlyB: { headers: { b: 2 } },
      both: { headers: { 'x-k': 1, b: 2 } },
      none: { headers: {} },
      xAndWrongB: { headers: { 'x-k': 1, b: 3 } },
      xMatchHeader: { headers: { 'x-match': 'any', b: 2 } },
    },
  );
  assert.deepEqual(got, {
    // x- keys of the binding are ignored by all/any...
    all: ['onlyB', 'both', 'xMatchHeader'],
    any: ['onlyB', 'both', 'xMatchHeader'],
    // ...and take part in all-with-x/any-with-x.
    allWithX: ['both'],
    anyWithX: ['onlyX', 'onlyB', 'both', 'xAndWrongB', 'xMatchHeader'],
    // all over nothing matches everything, any over nothing matches nothing.
    allEmpty: ['onlyX', 'onlyB', 'both', 'none', 'xAndWrongB', 'xMatchHeader'],
    anyEmpty: [],
    noArgs: ['onlyX', 'onlyB', 'both', 'none', 'xAndWrongB', 'xMatchHeader'],
    anyOnlyX: [],
    allOnlyX: ['onlyX', 'onlyB', 'both', 'none', 'xAndWrongB', 'xMatchHeader'],
  });
});

test('headers exchange: a binding without x-match means all; a message without headers', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    { implicitAll: { args: { a: 1, b: 2 } }, any: { args: { 'x-match': 'any', a: 1 } } },
    { a: { headers: { a: 1 } }, ab: { headers: { a: 1, b: 2, c: 3 } }, noHeaders: {} },
  );
  assert.deepEqual(got, { implicitAll: ['ab'], any: ['a', 'ab'] });
});

test('headers exchange: integers of every width compare by value', async () => {
  const { ch } = await broker.connectWithChannel();
  const widths = { byte: 'byte', short: 'short', int: 'int', long: 'long', uint8: 'uint8', uint32: 'uint32' };
  const bindings = Object.fromEntries(
    Object.entries(widths).map(([n, t]) => [n, { args: { 'x-match': 'all', a: typed(t, 1) } }]),
  );
  const messages = Object.fromEntries(
    Object.entries(widths).map(([n, t]) => [`msg-${n}`, { headers: { a: typed(t, 1) } }]),
  );
  messages['msg-long-2'] = { headers: { a: typed('long', 2) } };
  messages['msg-string'] = { headers: { a: '1' } };
  messages['msg-bool'] = { headers: { a: true } };
  const got = await routingTable(ch, 'headers', bindings, messages);
  const everyWidth = Object.keys(widths).map((n) => `msg-${n}`);
  assert.deepEqual(got, Object.fromEntries(Object.keys(widths).map((n) => [n, everyWidth])));
});

test('headers exchange: integers, floats and timestamps with equal values match each other', async () => {
  // RabbitMQ compares numeric header values by value (Erlang ==), whatever
  // their field type.
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    {
      int: { args: { 'x-match': 'all', a: typed('int', 1) } },
      double: { args: { 'x-match': 'all', a: typed('double', 1) } },
      float: { args: { 'x-match': 'all', a: typed('float', 1) } },
      timestamp: { args: { 'x-match': 'all', a: typed('timestamp', 1) } },
      floatHalf: { args: { 'x-match': 'all', a: typed('float', 1.5) } },
    },
    {
      int: { headers: { a: typed('int', 1) } },
      long: { headers: { a: typed('long', 1) } },
      double: { headers: { a: typed('double', 1) } },
      float: { headers: { a: typed('float', 1) } },
      timestamp: { headers: { a: typed('timestamp', 1) } },
      doubleHalf: { headers: { a: typed('double', 1.5) } },
    },
  );
  const one = ['int', 'long', 'double', 'float', 'timestamp'];
  assert.deepEqual(got, { int: one, double: one, float: one, timestamp: one, floatHalf: ['doubleHalf'] });
});

test('headers exchange: strings match byte arrays with the same bytes; not numbers, booleans or decimals', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    {
      string: { args: { 'x-match': 'all', a: '1' } },
      bytes: { args: { 'x-match': 'all', a: Buffer.from('1') } },
      bool: { args: { 'x-match': 'all', a: true } },
      decimal: { args: { 'x-match': 'all', a: typed('decimal', { places: 0, digits: 1 }) } },
    },
    {
      string: { headers: { a: '1' } },
      bytes: { headers: { a: Buffer.from('1') } },
      int: { headers: { a: 1 } },
      bool: { headers: { a: true } },
      decimal: { headers: { a: typed('decimal', { places: 0, digits: 1 }) } },
      otherString: { headers: { a: '01' } },
    },
  );
  assert.deepEqual(got, { string: ['string', 'bytes'], bytes: ['string', 'bytes'], bool: ['bool'], decimal: ['decimal'] });
});

test('headers exchange: a void binding value matches on presence only', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    {
      allVoid: { args: { 'x-match': 'all', a: null } },
      anyVoid: { args: { 'x-match': 'any', a: null, b: 2 } },
      allOne: { args: { 'x-match': 'all', a: 1 } },
    },
    {
      int: { headers: { a: 1 } },
      string: { headers: { a: 'zz' } },
      none: { headers: {} },
      onlyB: { headers: { b: 2 } },
      void: { headers: { a: null } },
    },
  );
  // A void value in the message does not stand for "any value".
  assert.deepEqual(got, {
    allVoid: ['int', 'string', 'void'],
    anyVoid: ['int', 'string', 'onlyB', 'void'],
    allOne: ['int'],
  });
});

test('headers exchange: arrays and tables compare structurally', async () => {
  const { ch } = await broker.connectWithChannel();
  const got = await routingTable(
    ch,
    'headers',
    { array: { args: { 'x-match': 'all', a: [1, 'two'] } }, table: { args: { 'x-match': 'all', a: { b: 1 } } } },
    {
      array: { headers: { a: [1, 'two'] } },
      reversed: { headers: { a: ['two', 1] } },
      table: { headers: { a: { b: 1 } } },
      otherTable: { headers: { a: { b: 2 } } },
    },
  );
  assert.deepEqual(got, { array: ['array'], table: ['table'] });
});

test('headers exchange: an x-match other than all/any/all-with-x/any-with-x fails queue.bind with 406', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const queue = await declareQueue(setup);
  const exchange = await declareExchange(setup, 'headers');
  const ch = await broker.channel(conn);
  await rejectsWithCode(
    ch.bindQueue(queue, exchange, '', { 'x-match': 'some' }),
    406,
    /Invalid x-match field value/,
  );
  assert.equal((await channelClosed(ch)).code, 406);
});

test('headers exchange: an x-match that is not a string fails queue.bind with 406', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const queue = await declareQueue(setup);
  const exchange = await declareExchange(setup, 'headers');
  const ch = await broker.channel(conn);
  await rejectsWithCode(ch.bindQueue(queue, exchange, '', { 'x-match': 1 }), 406, /Invalid x-match field type/);
  assert.equal((await channelClosed(ch)).code, 406);
});

// ---------------------------------------------------------------------------
// exchange-to-exchange bindings
// ---------------------------------------------------------------------------

test('exchange.bind chains: each hop applies its own routing', async () => {
  const { ch } = await broker.connectWithChannel();
  const a = await declareExchange(ch, 'direct', {}, 'chain-a');
  const b = await declareExchange(ch, 'topic', {}, 'chain-b');
  const c = await declareExchange(ch, 'fanout', {}, 'chain-c');
  const qb = await declareQueue(ch, 'qb');
  const qc = await declareQueue(ch, 'qc');
  await ch.bindExchange(b, a, 'x.y');
  await ch.bindQueue(qb, b, '*.y');
  await ch.bindExchange(c, b, 'x.#');
  await ch.bindQueue(qc, c, 'ignored-by-fanout');

  ch.publish(a, 'x.y', Buffer.from('through'));
  ch.publish(a, 'x.z', Buffer.from('stopped at a'));
  ch.publish(b, 'x.z', Buffer.from('into b'));
  ch.publish(b, 'q.y', Buffer.from('b only'));
  const [gotB, gotC] = await drainUpToMarker(ch, [qb, qc]);
  assert.deepEqual(gotB, ['through', 'b only']);
  assert.deepEqual(gotC, ['through', 'into b']);

  // Messages keep the exchange they were published to and their key.
  ch.publish(a, 'x.y', Buffer.from('fields'));
  const [msg] = await messagesUpToMarker(ch, qc);
  assert.equal(msg.fields.exchange, a);
  assert.equal(msg.fields.routingKey, 'x.y');
});

test('a queue reached through several exchanges gets one copy', async () => {
  const { ch } = await broker.connectWithChannel();
  const top = await declareExchange(ch, 'fanout', {}, 'top');
  const left = await declareExchange(ch, 'fanout', {}, 'left');
  const right = await declareExchange(ch, 'direct', {}, 'right');
  const queue = await declareQueue(ch);
  const onlyLeft = await declareQueue(ch, 'left-only');
  await ch.bindExchange(left, top, '');
  await ch.bindExchange(right, top, '');
  await ch.bindQueue(queue, left, '');
  await ch.bindQueue(queue, right, 'k');
  await ch.bindQueue(queue, top, '');
  await ch.bindQueue(onlyLeft, left, '');

  ch.publish(top, 'k', Buffer.from('diamond'));
  assert.deepEqual(await drainUpToMarker(ch, [queue, onlyLeft]), [['diamond'], ['diamond']]);
});

test('exchange binding cycles deliver exactly once and do not loop', async () => {
  const { ch } = await broker.connectWithChannel();
  const a = await declareExchange(ch, 'fanout', {}, 'cycle-a');
  const b = await declareExchange(ch, 'fanout', {}, 'cycle-b');
  const selfLoop = await declareExchange(ch, 'direct', {}, 'self');
  const qa = await declareQueue(ch, 'qa');
  const qb = await declareQueue(ch, 'qb');
  const qs = await declareQueue(ch, 'qself');
  await ch.bindExchange(b, a, '');
  await ch.bindExchange(a, b, '');
  await ch.bindQueue(qb, b, '');
  await ch.bindExchange(selfLoop, selfLoop, 'k');
  await ch.bindQueue(qs, selfLoop, 'k');

  ch.publish(a, '', Buffer.from('into a'));
  ch.publish(b, '', Buffer.from('into b'));
  ch.publish(selfLoop, 'k', Buffer.from('self'));
  assert.deepEqual(await drainUpToMarker(ch, [qb, qs]), [['into a', 'into b'], ['self']]);

  // With a queue on each side, both get each message once.
  await ch.bindQueue(qa, a, '');
  ch.publish(a, '', Buffer.from('both'));
  assert.deepEqual(await drainUpToMarker(ch, [qa, qb]), [['both'], ['both']]);
});

test('exchange.unbind stops the flow; unbinding something never bound succeeds', async () => {
  const { ch } = await broker.connectWithChannel();
  const source = await declareExchange(ch, 'direct', {}, 'src');
  const destination = await declareExchange(ch, 'fanout', {}, 'dst');
  const queue = await declareQueue(ch);
  await ch.bindQueue(queue, destination, '');
  await ch.bindExchange(destination, source, 'k1');
  await ch.bindExchange(destination, source, 'k2');

  ch.publish(source, 'k1', Buffer.from('one'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['one']]);

  await ch.unbindExchange(destination, source, 'k1');
  ch.publish(source, 'k1', Buffer.from('after unbind'));
  ch.publish(source, 'k2', Buffer.from('other binding'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['other binding']]);

  // Removing bindings that do not exist (any more) is not an error.
  assert.deepEqual(await ch.unbindExchange(destination, source, 'k1'), {});
  assert.deepEqual(await ch.unbindExchange(destination, source, 'never'), {});
  assert.deepEqual(await ch.unbindExchange(source, destination, ''), {});
});

test('exchange.unbind naming a missing exchange succeeds', async () => {
  const { ch } = await broker.connectWithChannel();
  const existing = await declareExchange(ch, 'direct');
  assert.deepEqual(await ch.unbindExchange(existing, uniqueName('routing-missing'), 'k'), {});
  assert.deepEqual(await ch.unbindExchange(uniqueName('routing-missing'), existing, 'k'), {});
  await ch.checkExchange(existing);
});

test('exchange.bind with a missing source or destination fails with 404 NOT_FOUND', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const existing = await declareExchange(setup, 'direct');
  const missing = uniqueName('routing-missing');
  let ch = await broker.channel(conn);
  await rejectsWithCode(ch.bindExchange(existing, missing, 'k'), 404, new RegExp(`no exchange '${missing}'`));
  assert.equal((await channelClosed(ch)).code, 404);
  ch = await broker.channel(conn);
  await rejectsWithCode(ch.bindExchange(missing, existing, 'k'), 404, new RegExp(`no exchange '${missing}'`));
  assert.equal(await exchangeExists(conn, missing), false);
});

test('deleting a destination exchange removes the exchange binding that pointed to it', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const source = await declareExchange(ch, 'fanout', {}, 'src');
  const destination = await declareExchange(ch, 'fanout', {}, 'dst');
  const queue = await declareQueue(ch);
  await ch.bindExchange(destination, source, '');
  await ch.bindQueue(queue, destination, '');
  await ch.deleteExchange(destination);
  await ch.assertExchange(destination, 'fanout', { durable: false });
  await ch.bindQueue(queue, destination, '');
  ch.publish(source, '', Buffer.from('to nowhere'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [[]]);
  // The source is unused now.
  await ch.deleteExchange(source, { ifUnused: true });
  assert.equal(await exchangeExists(conn, source), false);
});

// ---------------------------------------------------------------------------
// internal exchanges
// ---------------------------------------------------------------------------

test('publishing to an internal exchange closes the channel with 403 ACCESS_REFUSED', async () => {
  const conn = await broker.connect();
  const setup = await broker.channel(conn);
  const internal = await declareExchange(setup, 'fanout', { internal: true }, 'internal');
  const queue = await declareQueue(setup);
  await setup.bindQueue(queue, internal, '');

  const ch = await broker.channel(conn);
  ch.publish(internal, '', Buffer.from('refused'));
  const err = await channelClosed(ch);
  assert.equal(err.code, 403);
  assert.match(err.message, new RegExp(`ACCESS_REFUSED - cannot publish to internal exchange '${internal}'`));
  assert.deepEqual(await drainUpToMarker(setup, [queue]), [[]]);
  assert.deepEqual(conn.recordedErrors, []);
});

test('an internal exchange is reachable through an exchange binding', async () => {
  const { ch } = await broker.connectWithChannel();
  const front = await declareExchange(ch, 'topic', {}, 'front');
  const internal = await declareExchange(ch, 'direct', { internal: true }, 'internal');
  const queue = await declareQueue(ch);
  await ch.bindExchange(internal, front, 'orders.#');
  await ch.bindQueue(queue, internal, 'orders.new');
  ch.publish(front, 'orders.new', Buffer.from('via front'));
  ch.publish(front, 'orders.old', Buffer.from('not for the queue'));
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['via front']]);
});

// ---------------------------------------------------------------------------
// alternate exchanges
// ---------------------------------------------------------------------------

test('alternate-exchange receives only what the main exchange cannot route', async () => {
  const { ch } = await broker.connectWithChannel();
  const ae = await declareExchange(ch, 'fanout', {}, 'ae');
  const main = await declareExchange(ch, 'direct', { alternateExchange: ae }, 'main');
  const routed = await declareQueue(ch, 'routed');
  const unrouted = await declareQueue(ch, 'unrouted');
  await ch.bindQueue(routed, main, 'known');
  await ch.bindQueue(unrouted, ae, '');

  ch.publish(main, 'known', Buffer.from('routed'));
  ch.publish(main, 'unknown', Buffer.from('unroutable'));
  assert.deepEqual(await drainUpToMarker(ch, [routed, unrouted]), [['routed'], ['unroutable']]);

  // The alternate copy keeps the original exchange and routing key.
  ch.publish(main, 'other', Buffer.from('fields'));
  const [msg] = await messagesUpToMarker(ch, unrouted);
  assert.equal(msg.fields.exchange, main);
  assert.equal(msg.fields.routingKey, 'other');
});

test('mandatory: no basic.return when the alternate exchange routes, 312 when it does not', async () => {
  const { ch } = await broker.connectWithChannel();
  const returns = watchReturns(ch);
  const ae = await declareExchange(ch, 'direct', {}, 'ae');
  const main = await declareExchange(ch, 'direct', { alternateExchange: ae }, 'main');
  const queue = await declareQueue(ch);
  await ch.bindQueue(queue, ae, 'caught');

  ch.publish(main, 'caught', Buffer.from('saved by the AE'), { mandatory: true });
  ch.publish(main, 'dropped', Buffer.from('lost twice'), { mandatory: true });
  await returns.settle();
  assert.deepEqual(
    returns.returned.map((m) => [m.content.toString(), m.fields.replyCode, m.fields.replyText, m.fields.exchange, m.fields.routingKey]),
    [['lost twice', 312, 'NO_ROUTE', main, 'dropped']],
  );
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['saved by the AE']]);
});

test('an alternate exchange reached through an exchange binding applies at that hop', async () => {
  const { ch } = await broker.connectWithChannel();
  const returns = watchReturns(ch);
  const ae = await declareExchange(ch, 'fanout', {}, 'ae');
  const front = await declareExchange(ch, 'fanout', {}, 'front');
  const inner = await declareExchange(ch, 'direct', { alternateExchange: ae }, 'inner');
  const queue = await declareQueue(ch);
  await ch.bindExchange(inner, front, '');
  await ch.bindQueue(queue, ae, '');
  ch.publish(front, 'no-binding-in-inner', Buffer.from('caught'), { mandatory: true });
  await returns.settle();
  assert.deepEqual(returns.returned, []);
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [['caught']]);
});

// ---------------------------------------------------------------------------
// auto-delete exchanges
// ---------------------------------------------------------------------------

test('an auto-delete exchange goes when its last queue binding is removed', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const exchange = await declareExchange(ch, 'direct', { autoDelete: true }, 'autodelete');
  const q1 = await declareQueue(ch);
  const q2 = await declareQueue(ch);
  await ch.bindQueue(q1, exchange, 'a');
  await ch.bindQueue(q1, exchange, 'b');
  await ch.bindQueue(q2, exchange, 'a');

  await ch.unbindQueue(q1, exchange, 'a');
  await ch.unbindQueue(q1, exchange, 'b');
  assert.equal(await exchangeExists(conn, exchange), true, 'one binding is left');
  await ch.unbindQueue(q2, exchange, 'a');
  await eventually(async () => assert.equal(await exchangeExists(conn, exchange), false));
});

test('an auto-delete exchange goes when its only bound queue is deleted', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const exchange = await declareExchange(ch, 'fanout', { autoDelete: true }, 'autodelete');
  const queue = await declareQueue(ch);
  await ch.bindQueue(queue, exchange, '');
  await ch.deleteQueue(queue);
  await eventually(async () => assert.equal(await exchangeExists(conn, exchange), false));
});

test('an auto-delete exchange goes when the exclusive queue bound to it goes with its connection', async () => {
  const observer = await broker.connect();
  const setup = await broker.channel(observer);
  const exchange = await declareExchange(setup, 'fanout', { autoDelete: true }, 'autodelete');
  const owner = await broker.connect();
  const ownerCh = await broker.channel(owner);
  const queue = await declareQueue(ownerCh);
  await ownerCh.bindQueue(queue, exchange, '');
  assert.equal(await exchangeExists(observer, exchange), true);
  await owner.close();
  await eventually(async () => assert.equal(await exchangeExists(observer, exchange), false));
});

test('an auto-delete exchange goes when its last exchange binding (as source) is removed', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const source = await declareExchange(ch, 'fanout', { autoDelete: true }, 'autodelete-src');
  const destination = await declareExchange(ch, 'fanout', {}, 'dst');
  await ch.bindExchange(destination, source, '');
  await ch.unbindExchange(destination, source, '');
  await eventually(async () => assert.equal(await exchangeExists(conn, source), false));
});

test('an auto-delete exchange goes when the destination of its last exchange binding is deleted', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const source = await declareExchange(ch, 'fanout', { autoDelete: true }, 'autodelete-src');
  const destination = await declareExchange(ch, 'fanout', {}, 'dst');
  await ch.bindExchange(destination, source, '');
  await ch.deleteExchange(destination);
  await eventually(async () => assert.equal(await exchangeExists(conn, source), false));
});

test('an auto-delete exchange that never had a binding, or is only a destination, stays', async () => {
  const { conn, ch } = await broker.connectWithChannel();
  const never = await declareExchange(ch, 'direct', { autoDelete: true }, 'autodelete-never');
  const asDestination = await declareExchange(ch, 'fanout', { autoDelete: true }, 'autodelete-dst');
  const source = await declareExchange(ch, 'fanout', {}, 'src');
  await ch.bindExchange(asDestination, source, '');
  await ch.unbindExchange(asDestination, source, '');
  // Publishing through it does not delete it either.
  ch.publish(never, 'k', Buffer.from('unroutable'));
  const queue = await declareQueue(ch);
  assert.deepEqual(await drainUpToMarker(ch, [queue]), [[]]);
  assert.equal(await exchangeExists(conn, never), true);
  assert.equal(await exchangeExists(conn, asDestination), true);
});
