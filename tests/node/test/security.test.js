'use strict';
// Access control and limits, each checked on a Warren this file starts with
// its own flags:
//
//   * --load-definitions: users (with plain-text passwords), vhosts,
//     permissions, exchanges, queues and bindings imported at start; with a
//     definitions file no default guest user is created.
//   * Permissions, following RabbitMQ's access-control table: one test per
//     AMQP method, each with refused cases (channel.close 403 ACCESS_REFUSED
//     with RabbitMQ's exact text and the offending class/method id) and a
//     granted case that holds no more permission than the table requires.
//   * Refused logins (403 at authentication), vhost access (530 NOT_ALLOWED
//     at connection.open), loopback-only users (--loopback-users),
//     --max-message-size and --connection-max.
//
// Every broker here is spawned by this file, so the whole file is skipped
// when AMQP_URL points the suite at an external broker.
//
// amqplib reports a connection.close received in place of connection.open-ok
// without its reply code or text, so those cases are also checked with a
// minimal raw handshake (rawHandshake below) that reads the close frame.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const amqp = require('amqplib');
const {
  usingExternalBroker,
  spawnWarren,
  uniqueName,
  getMessage,
  deferred,
  withTimeout,
  watchChannel,
  channelClosed,
  channelErrors,
  closeQuietly,
  collector,
} = require('../helpers/broker');

const SKIP = usingExternalBroker()
  ? 'needs Warren started with its own flags (--load-definitions, --loopback-users, limits); AMQP_URL is set'
  : false;

// ---------------------------------------------------------------------------
// Definitions shared by the brokers below.
//
// Resource name prefixes say what user 'app' may do with them:
//   app.*  configure, write, read      cw.*  configure, write (no read)
//   cr.*   configure, read (no write)  ro.*  read only
//   wo.*   write only                  shared.*  nothing
// plus configure on any name containing "anywhere" (patterns are unanchored).
// 'gen' may only configure/read server-named queues and write to the default
// exchange (by its name amq.default); 'nobody' has '' for everything, which
// grants vhost access but no resource.

const APP_PASS = 'app-secret';
const GEN_PASS = 'gen-secret';
const NOBODY_PASS = 'nobody-secret';

const exchangeDef = (name, type) => ({
  name,
  vhost: '/',
  type,
  durable: true,
  auto_delete: false,
  internal: false,
  arguments: {},
});
const queueDef = (name, args = {}) => ({ name, vhost: '/', durable: true, auto_delete: false, arguments: args });
const bindingDef = (source, destination, destinationType, routingKey) => ({
  source,
  vhost: '/',
  destination,
  destination_type: destinationType,
  routing_key: routingKey,
  arguments: {},
});

const DEFINITIONS = {
  users: [
    { name: 'guest', password: 'guest', tags: ['administrator'] },
    { name: 'app', password: APP_PASS, tags: [] },
    { name: 'gen', password: GEN_PASS, tags: [] },
    { name: 'nobody', password: NOBODY_PASS, tags: [] },
  ],
  vhosts: [{ name: '/' }, { name: '/team' }],
  permissions: [
    { user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' },
    { user: 'guest', vhost: '/team', configure: '.*', write: '.*', read: '.*' },
    {
      user: 'app',
      vhost: '/',
      configure: '^(app|cw|cr)\\.|anywhere',
      write: '^(app|cw|wo)\\.',
      read: '^(app|cr|ro)\\.',
    },
    { user: 'gen', vhost: '/', configure: '^amq\\.gen-', write: '^amq\\.default$', read: '^amq\\.gen-' },
    { user: 'nobody', vhost: '/', configure: '', write: '', read: '' },
  ],
  exchanges: [
    exchangeDef('app.x', 'direct'),
    exchangeDef('ro.x', 'direct'),
    exchangeDef('wo.x', 'direct'),
    exchangeDef('shared.x', 'direct'),
    exchangeDef('def.x', 'topic'),
    exchangeDef('def.fan', 'fanout'),
  ],
  queues: [
    queueDef('app.q'),
    queueDef('ro.q'),
    queueDef('wo.q'),
    queueDef('shared.q'),
    queueDef('def.q'),
    queueDef('def.fanq'),
    queueDef('def.limited', { 'x-max-length': 1 }),
  ],
  bindings: [
    bindingDef('app.x', 'app.q', 'queue', 'app.rk'),
    bindingDef('def.x', 'def.q', 'queue', 'def.#'),
    bindingDef('def.x', 'def.fan', 'exchange', 'def.*'),
    bindingDef('def.fan', 'def.fanq', 'queue', ''),
  ],
};

// AMQP class/method ids, as carried by channel.close.
const METHOD = {
  exchangeDeclare: [40, 10],
  exchangeDelete: [40, 20],
  exchangeBind: [40, 30],
  exchangeUnbind: [40, 40],
  queueDeclare: [50, 10],
  queueBind: [50, 20],
  queuePurge: [50, 30],
  queueDelete: [50, 40],
  queueUnbind: [50, 50],
  basicConsume: [60, 20],
  basicPublish: [60, 40],
  basicGet: [60, 70],
};

// ---------------------------------------------------------------------------
// Helpers.

/** Write `definitions` as JSON into a fresh temporary directory. */
function writeDefinitions(definitions) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-security-'));
  const file = path.join(dir, 'definitions.json');
  fs.writeFileSync(file, JSON.stringify(definitions, null, 2));
  return { dir, file };
}

/**
 * Register before/after hooks (in the enclosing describe) that run a Warren
 * with the given extra arguments; `makeArgs(definitionsFile)` receives the
 * path of a file holding `definitions` when they are given.
 */
function ownWarren(makeArgs, definitions = null) {
  const state = { warren: null, dir: null };
  before(async () => {
    let file = null;
    if (definitions) {
      ({ dir: state.dir, file } = writeDefinitions(definitions));
    }
    state.warren = await spawnWarren({ extraArgs: makeArgs(file) });
  });
  after(async () => {
    if (state.warren) await stopWarren(state.warren);
    if (state.dir) fs.rmSync(state.dir, { recursive: true, force: true });
  });
  return state;
}

async function stopWarren(warren) {
  const { code, signal } = await warren.stop();
  if (code !== 0) {
    console.error(`warren exited with code ${code} signal ${signal}\n${warren.output()}`);
  }
}

/** amqp:// URL for a user on a vhost. */
function urlFor(port, user, pass, { vhost = '/', host = '127.0.0.1' } = {}) {
  return `amqp://${encodeURIComponent(user)}:${encodeURIComponent(pass)}@${host}:${port}/${encodeURIComponent(vhost)}`;
}

// Connections opened through connect() are closed after each test.
let opened = [];
afterEach(async () => {
  const conns = opened;
  opened = [];
  await Promise.all(conns.map((c) => closeQuietly(c)));
});

async function connect(url, socketOptions) {
  const conn = await amqp.connect(url, socketOptions);
  conn.recordedErrors = [];
  conn.on('error', (err) => conn.recordedErrors.push(err));
  opened.push(conn);
  return conn;
}

async function channel(conn, { confirm = false } = {}) {
  return watchChannel(confirm ? await conn.createConfirmChannel() : await conn.createChannel());
}

/** First non-internal IPv4 address of this machine, or null. */
function externalIPv4() {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if ((a.family === 'IPv4' || a.family === 4) && !a.internal) return a.address;
    }
  }
  return null;
}

// --- minimal raw AMQP handshake --------------------------------------------

function shortstr(s) {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length]), b]);
}
function longstr(b) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}
function u16(n) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function methodFrame(classId, methodId, args) {
  const payload = Buffer.concat([u16(classId), u16(methodId), args]);
  const header = Buffer.alloc(7);
  header.writeUInt8(1, 0); // method frame
  header.writeUInt16BE(0, 1); // channel 0
  header.writeUInt32BE(payload.length, 3);
  return Buffer.concat([header, payload, Buffer.from([0xce])]);
}

/**
 * Run the AMQP opening handshake by hand (PLAIN) and report how it ended:
 * { opened: true } on connection.open-ok (the connection is then closed
 * cleanly), or { opened: false, stage, code, text, classId, methodId } when
 * the server answered with connection.close. `stage` is the method the
 * close answered: 'start-ok' or 'open'.
 */
function rawHandshake({ port, user, pass, vhost = '/', host = '127.0.0.1' }) {
  const done = deferred();
  const sock = net.connect({ host, port });
  let buf = Buffer.alloc(0);
  let stage = 'start';
  let result = null;
  const send = (classId, methodId, args) => sock.write(methodFrame(classId, methodId, args));

  sock.on('error', (err) => done.reject(err));
  sock.on('close', () => {
    if (result) done.resolve(result);
    else done.reject(new Error(`socket closed during the handshake (waiting for the answer to ${stage})`));
  });
  sock.on('connect', () => sock.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(3);
      if (buf.length < 8 + size) return;
      const type = buf.readUInt8(0);
      const payload = buf.subarray(7, 7 + size);
      buf = buf.subarray(8 + size);
      if (type === 1) onMethod(payload.readUInt16BE(0), payload.readUInt16BE(2), payload.subarray(4));
    }
  });

  function onMethod(classId, methodId, args) {
    const id = `${classId}.${methodId}`;
    if (id === '10.10') {
      // connection.start -> start-ok, announcing authentication_failure_close
      // like every current client so that refusals come as connection.close.
      const caps = Buffer.concat([shortstr('authentication_failure_close'), Buffer.from('t'), Buffer.from([1])]);
      const props = Buffer.concat([shortstr('capabilities'), Buffer.from('F'), longstr(caps)]);
      stage = 'start-ok';
      send(
        10,
        11,
        Buffer.concat([
          longstr(props),
          shortstr('PLAIN'),
          longstr(Buffer.from(`\u0000${user}\u0000${pass}`, 'utf8')),
          shortstr('en_US'),
        ]),
      );
    } else if (id === '10.30') {
      // connection.tune -> tune-ok (no heartbeats) + open
      const channelMax = args.readUInt16BE(0);
      const frameMax = args.readUInt32BE(2);
      const tuneOk = Buffer.alloc(8);
      tuneOk.writeUInt16BE(channelMax, 0);
      tuneOk.writeUInt32BE(frameMax, 2);
      tuneOk.writeUInt16BE(0, 6);
      send(10, 31, tuneOk);
      stage = 'open';
      send(10, 40, Buffer.concat([shortstr(vhost), shortstr(''), Buffer.from([0])]));
    } else if (id === '10.41') {
      // connection.open-ok: close politely.
      result = { opened: true };
      send(10, 50, Buffer.concat([u16(200), shortstr('bye'), u16(0), u16(0)]));
    } else if (id === '10.51') {
      sock.end();
    } else if (id === '10.50') {
      const code = args.readUInt16BE(0);
      const textLen = args.readUInt8(2);
      const text = args.subarray(3, 3 + textLen).toString('utf8');
      const classOff = 3 + textLen;
      result = {
        opened: false,
        stage,
        code,
        text,
        classId: args.readUInt16BE(classOff),
        methodId: args.readUInt16BE(classOff + 2),
      };
      send(10, 51, Buffer.alloc(0));
      sock.end();
    } else {
      done.reject(new Error(`unexpected method ${id} during the handshake`));
      sock.destroy();
    }
  }

  return withTimeout(done.promise, 5000, 'the raw handshake to finish').finally(() => sock.destroy());
}

// --- permission assertions --------------------------------------------------

/**
 * Run `op(ch)` on a fresh channel of `conn` and assert that the server closes
 * that channel with 403 ACCESS_REFUSED, the exact RabbitMQ text and the
 * class/method of the refused operation. `op` may return a promise (an RPC,
 * which must then be rejected) or nothing (basic.publish). Afterwards a
 * sibling channel opened beforehand must still work and the connection must
 * not have seen an error.
 */
async function expectRefused(conn, op, { user = 'app', kind, type, name, text, method }) {
  const bystander = await channel(conn);
  const ch = await channel(conn);
  const expected = text ?? `ACCESS_REFUSED - ${kind} access to ${type} '${name}' in vhost '/' refused for user '${user}'`;

  const pending = op(ch);
  if (pending && typeof pending.then === 'function') {
    await assert.rejects(pending, (err) => {
      assert.equal(err.code, 403, `expected 403, got ${err.code}: ${err.message}`);
      return true;
    });
  }
  const err = await channelClosed(ch);
  assert.ok(err, 'the channel must be closed with an error');
  assert.equal(err.code, 403, `expected reply code 403, got ${err.code}: ${err.message}`);
  const m = /^Channel closed by server: 403 \(ACCESS-REFUSED\) with message "(.*)"$/s.exec(err.message);
  assert.ok(m, `unexpected channel.close: ${err.message}`);
  if (expected instanceof RegExp) assert.match(m[1], expected);
  else assert.equal(m[1], expected);
  assert.deepEqual([err.classId, err.methodId], method, `class/method id of the channel.close (${m[1]})`);

  // Only that channel is gone.
  await bystander.checkQueue('shared.q'); // passive declare needs no permission
  await bystander.close();
  assert.deepEqual(conn.recordedErrors, [], 'a refused operation must not become a connection error');
  return m[1];
}

/** Run `op(ch)` on a fresh channel and assert that it raised no error. */
async function expectGranted(conn, op) {
  const ch = await channel(conn);
  const result = await op(ch);
  assert.deepEqual(
    channelErrors(ch).map((e) => e.message),
    [],
    'the channel must stay open',
  );
  await ch.close();
  return result;
}

/** True if the exchange/queue exists (passive declare on a throwaway channel). */
async function exists(conn, kind, name) {
  const ch = await channel(conn);
  try {
    if (kind === 'exchange') await ch.checkExchange(name);
    else await ch.checkQueue(name);
    await ch.close();
    return true;
  } catch (err) {
    if (err.code === 404) return false;
    throw err;
  }
}

/** Resolve with the next basic.return on `ch` (for mandatory publishes). */
function nextReturn(ch) {
  const d = deferred();
  ch.once('return', (msg) => d.resolve(msg));
  return withTimeout(d.promise, 5000, 'a basic.return');
}

// ---------------------------------------------------------------------------

describe('definitions, permissions and logins', { skip: SKIP }, () => {
  const own = ownWarren((file) => ['--load-definitions', file], DEFINITIONS);
  const port = () => own.warren.port;
  const asGuest = () => connect(urlFor(port(), 'guest', 'guest'));
  const asApp = () => connect(urlFor(port(), 'app', APP_PASS));

  // --- --load-definitions -------------------------------------------------

  test('--load-definitions imports users, vhosts, exchanges, queues, arguments and bindings', async () => {
    const guest = await asGuest();
    for (const x of DEFINITIONS.exchanges) {
      assert.equal(await exists(guest, 'exchange', x.name), true, `exchange ${x.name} must exist`);
    }
    for (const q of DEFINITIONS.queues) {
      assert.equal(await exists(guest, 'queue', q.name), true, `queue ${q.name} must exist`);
    }

    // Exchange types were imported: an equivalent re-declare passes, another
    // type is refused with 406.
    const ch = await channel(guest);
    await ch.assertExchange('def.x', 'topic', { durable: true });
    const wrong = await channel(guest);
    await assert.rejects(wrong.assertExchange('def.fan', 'direct', { durable: true }), (err) => err.code === 406);

    // Queue and exchange-to-exchange bindings route. 'def.a.b' matches only
    // def.# (-> def.q); 'def.a' also matches def.* (-> def.fan -> def.fanq).
    ch.publish('def.x', 'def.a.b', Buffer.from('two words'));
    ch.publish('def.x', 'def.a', Buffer.from('one word'));
    assert.equal((await getMessage(ch, 'def.q')).content.toString(), 'two words');
    assert.equal((await getMessage(ch, 'def.q')).content.toString(), 'one word');
    assert.equal(
      (await getMessage(ch, 'def.fanq')).content.toString(),
      'one word',
      'only the message matching def.* may reach def.fanq via the exchange binding',
    );

    // Queue arguments were imported: x-max-length 1 keeps only the newest.
    const confirm = await channel(guest, { confirm: true });
    for (const body of ['m1', 'm2', 'm3']) confirm.sendToQueue('def.limited', Buffer.from(body));
    await confirm.waitForConfirms();
    const { messageCount } = await ch.checkQueue('def.limited');
    assert.equal(messageCount, 1, 'x-max-length from the definitions must apply');
    assert.equal((await getMessage(ch, 'def.limited')).content.toString(), 'm3');

    // A user with a plain-text password logs in with it.
    const app = await asApp();
    await (await channel(app)).checkQueue('app.q');
  });

  test('with --load-definitions the default guest user is not created', async () => {
    const { dir, file } = writeDefinitions({
      users: [{ name: 'solo', password: 'solo-pass', tags: ['administrator'] }],
      vhosts: [{ name: '/' }],
      permissions: [{ user: 'solo', vhost: '/', configure: '.*', write: '.*', read: '.*' }],
    });
    const warren = await spawnWarren({ extraArgs: ['--load-definitions', file] });
    try {
      await assert.rejects(amqp.connect(urlFor(warren.port, 'guest', 'guest')), (err) => {
        assert.match(err.message, /403 \(ACCESS-REFUSED\)/);
        assert.match(err.message, /"ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
        return true;
      });
      const solo = await connect(urlFor(warren.port, 'solo', 'solo-pass'));
      const { queue } = await (await channel(solo)).assertQueue('', { exclusive: true });
      assert.match(queue, /^amq\.gen-/);
      await solo.close();
    } finally {
      await stopWarren(warren);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // --- logins and vhost access -----------------------------------------

  test('a wrong password is refused with 403 ACCESS_REFUSED (PLAIN)', async () => {
    await assert.rejects(amqp.connect(urlFor(port(), 'app', 'not-the-password')), (err) => {
      assert.match(err.message, /403 \(ACCESS-REFUSED\)/);
      assert.match(err.message, /with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
      return true;
    });
    const raw = await rawHandshake({ port: port(), user: 'app', pass: 'not-the-password' });
    assert.equal(raw.opened, false);
    assert.equal(raw.stage, 'start-ok', 'the login is refused before connection.tune');
    assert.equal(raw.code, 403);
    assert.match(raw.text, /^ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
    // The right password works.
    await asApp();
  });

  test('an unknown user is refused with 403 ACCESS_REFUSED (PLAIN)', async () => {
    const user = uniqueName('ghost');
    await assert.rejects(amqp.connect(urlFor(port(), user, APP_PASS)), (err) => {
      assert.match(err.message, /403 \(ACCESS-REFUSED\)/);
      assert.match(err.message, /with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
      return true;
    });
    const raw = await rawHandshake({ port: port(), user, pass: APP_PASS });
    assert.equal(raw.opened, false);
    assert.equal(raw.code, 403);
    assert.match(raw.text, /^ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
  });

  test('a user without permissions on a vhost gets 530 NOT_ALLOWED at connection.open', async () => {
    await assert.rejects(
      amqp.connect(urlFor(port(), 'app', APP_PASS, { vhost: '/team' })),
      /Expected ConnectionOpenOk; got <ConnectionClose/,
    );
    const raw = await rawHandshake({ port: port(), user: 'app', pass: APP_PASS, vhost: '/team' });
    assert.equal(raw.opened, false);
    assert.equal(raw.stage, 'open', 'vhost access is checked at connection.open');
    assert.equal(raw.code, 530);
    assert.equal(raw.text, "NOT_ALLOWED - access to vhost '/team' refused for user 'app'");

    // The vhost exists and is open to a user with permissions there...
    const guest = await connect(urlFor(port(), 'guest', 'guest', { vhost: '/team' }));
    await (await channel(guest)).assertQueue('', { exclusive: true });
    // ...and 'app' still gets into '/', where it has permissions.
    assert.deepEqual(await rawHandshake({ port: port(), user: 'app', pass: APP_PASS }), { opened: true });
  });

  // --- the access-control table ---------------------------------------------

  test('exchange.declare needs configure on the exchange; passive declare needs nothing', async () => {
    const app = await asApp();
    const guest = await asGuest();

    const fresh = uniqueName('ro.x'); // read only: no configure
    await expectRefused(app, (ch) => ch.assertExchange(fresh, 'direct', { durable: false }), {
      kind: 'configure',
      type: 'exchange',
      name: fresh,
      method: METHOD.exchangeDeclare,
    });
    assert.equal(await exists(guest, 'exchange', fresh), false, 'a refused declare must not create the exchange');

    // Re-declaring an existing exchange is refused just the same.
    await expectRefused(app, (ch) => ch.assertExchange('shared.x', 'direct', { durable: true }), {
      kind: 'configure',
      type: 'exchange',
      name: 'shared.x',
      method: METHOD.exchangeDeclare,
    });

    // Configure alone is enough (cw.* has no read, cr.* no write).
    for (const name of [uniqueName('cw.x'), uniqueName('cr.x')]) {
      await expectGranted(app, (ch) => ch.assertExchange(name, 'fanout', { durable: false }));
      assert.equal(await exists(guest, 'exchange', name), true);
      await expectGranted(app, (ch) => ch.deleteExchange(name));
    }
    // Passive declares need no permission at all.
    await expectGranted(app, (ch) => ch.checkExchange('shared.x'));
    await expectGranted(app, (ch) => ch.checkExchange('wo.x'));
  });

  test('exchange.declare with alternate-exchange also needs read on the exchange and write on the AE', async () => {
    const app = await asApp();
    const guest = await asGuest();

    const unreadable = uniqueName('cw.x'); // configure + write, no read
    await expectRefused(app, (ch) => ch.assertExchange(unreadable, 'direct', { durable: false, alternateExchange: 'wo.ae' }), {
      kind: 'read',
      type: 'exchange',
      name: unreadable,
      method: METHOD.exchangeDeclare,
    });
    assert.equal(await exists(guest, 'exchange', unreadable), false);

    const readable = uniqueName('cr.x'); // configure + read
    await expectRefused(app, (ch) => ch.assertExchange(readable, 'direct', { durable: false, alternateExchange: 'ro.ae' }), {
      kind: 'write',
      type: 'exchange',
      name: 'ro.ae',
      method: METHOD.exchangeDeclare,
    });
    assert.equal(await exists(guest, 'exchange', readable), false);

    // Write on the AE (write-only wo.*) and configure + read on the exchange suffice.
    await expectGranted(app, (ch) => ch.assertExchange(readable, 'direct', { durable: false, alternateExchange: 'wo.ae' }));
    assert.equal(await exists(guest, 'exchange', readable), true);
    await expectGranted(app, (ch) => ch.deleteExchange(readable));
  });

  test('re-declaring an existing exchange/queue with its AE/DLX needs only configure', async () => {
    // RabbitMQ checks read + AE/DLX write only when the declare creates the
    // exchange or queue (rabbit_channel: inside the lookup's not_found branch);
    // an equivalent re-declare of an existing one needs configure alone.
    const app = await asApp();
    const guest = await asGuest();
    const g = await channel(guest);
    const exchange = uniqueName('cw.x'); // configure + write, no read
    const queue = uniqueName('cw.q');
    await g.assertExchange(exchange, 'direct', { durable: false, alternateExchange: 'wo.ae' });
    await g.assertQueue(queue, { durable: false, deadLetterExchange: 'wo.dlx' });

    await expectGranted(app, (ch) => ch.assertExchange(exchange, 'direct', { durable: false, alternateExchange: 'wo.ae' }));
    await expectGranted(app, (ch) => ch.assertQueue(queue, { durable: false, deadLetterExchange: 'wo.dlx' }));
    await g.deleteExchange(exchange);
    await g.deleteQueue(queue);
  });

  test('exchange.delete needs configure on the exchange', async () => {
    const app = await asApp();
    const guest = await asGuest();

    await expectRefused(app, (ch) => ch.deleteExchange('ro.x'), {
      kind: 'configure',
      type: 'exchange',
      name: 'ro.x',
      method: METHOD.exchangeDelete,
    });
    assert.equal(await exists(guest, 'exchange', 'ro.x'), true, 'a refused delete must not delete');

    const name = uniqueName('cr.x');
    await (await channel(guest)).assertExchange(name, 'direct', { durable: false });
    await expectGranted(app, (ch) => ch.deleteExchange(name));
    assert.equal(await exists(guest, 'exchange', name), false);
  });

  test('queue.declare needs configure on the queue, server-named ones included; passive needs nothing', async () => {
    const app = await asApp();
    const guest = await asGuest();

    const fresh = uniqueName('wo.q'); // write only: no configure
    await expectRefused(app, (ch) => ch.assertQueue(fresh, { durable: false }), {
      kind: 'configure',
      type: 'queue',
      name: fresh,
      method: METHOD.queueDeclare,
    });
    assert.equal(await exists(guest, 'queue', fresh), false, 'a refused declare must not create the queue');

    await expectRefused(app, (ch) => ch.assertQueue('shared.q', { durable: true }), {
      kind: 'configure',
      type: 'queue',
      name: 'shared.q',
      method: METHOD.queueDeclare,
    });

    // A server-named queue is checked under the name the server picked.
    await expectRefused(app, (ch) => ch.assertQueue('', { exclusive: true }), {
      text: /^ACCESS_REFUSED - configure access to queue 'amq\.gen-[^']+' in vhost '\/' refused for user 'app'$/,
      method: METHOD.queueDeclare,
    });

    for (const name of [uniqueName('cw.q'), uniqueName('cr.q')]) {
      const ok = await expectGranted(app, (ch) => ch.assertQueue(name, { durable: false }));
      assert.equal(ok.queue, name);
      await expectGranted(app, (ch) => ch.deleteQueue(name));
    }
    await expectGranted(app, (ch) => ch.checkQueue('shared.q'));
    await expectGranted(app, (ch) => ch.checkQueue('wo.q'));
  });

  test('queue.declare with x-dead-letter-exchange also needs read on the queue and write on the DLX', async () => {
    const app = await asApp();
    const guest = await asGuest();

    const unreadable = uniqueName('cw.q');
    await expectRefused(app, (ch) => ch.assertQueue(unreadable, { durable: false, deadLetterExchange: 'wo.dlx' }), {
      kind: 'read',
      type: 'queue',
      name: unreadable,
      method: METHOD.queueDeclare,
    });
    assert.equal(await exists(guest, 'queue', unreadable), false);

    const readable = uniqueName('cr.q');
    await expectRefused(app, (ch) => ch.assertQueue(readable, { durable: false, deadLetterExchange: 'ro.dlx' }), {
      kind: 'write',
      type: 'exchange',
      name: 'ro.dlx',
      method: METHOD.queueDeclare,
    });
    assert.equal(await exists(guest, 'queue', readable), false);

    await expectGranted(app, (ch) => ch.assertQueue(readable, { durable: false, deadLetterExchange: 'wo.dlx' }));
    assert.equal(await exists(guest, 'queue', readable), true);
    await expectGranted(app, (ch) => ch.deleteQueue(readable));
  });

  test('queue.delete needs configure on the queue', async () => {
    const app = await asApp();
    const guest = await asGuest();

    await expectRefused(app, (ch) => ch.deleteQueue('ro.q'), {
      kind: 'configure',
      type: 'queue',
      name: 'ro.q',
      method: METHOD.queueDelete,
    });
    assert.equal(await exists(guest, 'queue', 'ro.q'), true, 'a refused delete must not delete');

    const name = uniqueName('cw.q');
    await (await channel(guest)).assertQueue(name, { durable: false });
    await expectGranted(app, (ch) => ch.deleteQueue(name));
    assert.equal(await exists(guest, 'queue', name), false);
  });

  test('queue.purge needs read on the queue', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const confirm = await channel(guest, { confirm: true });

    confirm.sendToQueue('wo.q', Buffer.from('stays'));
    await confirm.waitForConfirms();
    await expectRefused(app, (ch) => ch.purgeQueue('wo.q'), {
      kind: 'read',
      type: 'queue',
      name: 'wo.q',
      method: METHOD.queuePurge,
    });
    assert.equal((await confirm.checkQueue('wo.q')).messageCount, 1, 'a refused purge must not purge');
    await confirm.purgeQueue('wo.q');

    // Read alone (ro.q: no configure, no write) is enough.
    confirm.sendToQueue('ro.q', Buffer.from('goes'));
    await confirm.waitForConfirms();
    const { messageCount } = await expectGranted(app, (ch) => ch.purgeQueue('ro.q'));
    assert.equal(messageCount, 1);
    assert.equal((await confirm.checkQueue('ro.q')).messageCount, 0);
  });

  test('queue.bind needs write on the queue and read on the exchange', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const rk = uniqueName('rk');

    await expectRefused(app, (ch) => ch.bindQueue('ro.q', 'ro.x', rk), {
      kind: 'write',
      type: 'queue',
      name: 'ro.q',
      method: METHOD.queueBind,
    });
    await expectRefused(app, (ch) => ch.bindQueue('wo.q', 'wo.x', rk), {
      kind: 'read',
      type: 'exchange',
      name: 'wo.x',
      method: METHOD.queueBind,
    });

    // Write on the queue (write-only wo.q) and read on the exchange
    // (read-only ro.x) suffice; the binding then routes.
    await expectGranted(app, (ch) => ch.bindQueue('wo.q', 'ro.x', rk));
    const ch = await channel(guest);
    ch.publish('ro.x', rk, Buffer.from('via app binding'));
    assert.equal((await getMessage(ch, 'wo.q')).content.toString(), 'via app binding');
    await ch.unbindQueue('wo.q', 'ro.x', rk);
  });

  test('queue.unbind needs write on the queue and read on the exchange', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const rk = uniqueName('rk');
    const ch = await channel(guest);
    await ch.bindQueue('wo.q', 'ro.x', rk);

    await expectRefused(app, (c) => c.unbindQueue('ro.q', 'ro.x', rk), {
      kind: 'write',
      type: 'queue',
      name: 'ro.q',
      method: METHOD.queueUnbind,
    });
    await expectRefused(app, (c) => c.unbindQueue('wo.q', 'wo.x', rk), {
      kind: 'read',
      type: 'exchange',
      name: 'wo.x',
      method: METHOD.queueUnbind,
    });

    await expectGranted(app, (c) => c.unbindQueue('wo.q', 'ro.x', rk));
    // The binding is gone: a mandatory publish comes back.
    const returned = nextReturn(ch);
    ch.publish('ro.x', rk, Buffer.from('unroutable'), { mandatory: true });
    assert.equal((await returned).content.toString(), 'unroutable');
  });

  test('exchange.bind needs write on the destination and read on the source', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const rk = uniqueName('rk');

    await expectRefused(app, (ch) => ch.bindExchange('ro.x', 'app.x', rk), {
      kind: 'write',
      type: 'exchange',
      name: 'ro.x',
      method: METHOD.exchangeBind,
    });
    await expectRefused(app, (ch) => ch.bindExchange('app.x', 'wo.x', rk), {
      kind: 'read',
      type: 'exchange',
      name: 'wo.x',
      method: METHOD.exchangeBind,
    });

    // destination wo.x (write only) <- source ro.x (read only)
    await expectGranted(app, (ch) => ch.bindExchange('wo.x', 'ro.x', rk));
    const ch = await channel(guest);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, 'wo.x', rk);
    ch.publish('ro.x', rk, Buffer.from('via exchange binding'));
    assert.equal((await getMessage(ch, queue)).content.toString(), 'via exchange binding');
    await ch.unbindExchange('wo.x', 'ro.x', rk);
  });

  test('exchange.unbind needs write on the destination and read on the source', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const rk = uniqueName('rk');
    const ch = await channel(guest);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, 'wo.x', rk);
    await ch.bindExchange('wo.x', 'ro.x', rk);

    await expectRefused(app, (c) => c.unbindExchange('ro.x', 'app.x', rk), {
      kind: 'write',
      type: 'exchange',
      name: 'ro.x',
      method: METHOD.exchangeUnbind,
    });
    await expectRefused(app, (c) => c.unbindExchange('app.x', 'wo.x', rk), {
      kind: 'read',
      type: 'exchange',
      name: 'wo.x',
      method: METHOD.exchangeUnbind,
    });

    await expectGranted(app, (c) => c.unbindExchange('wo.x', 'ro.x', rk));
    const returned = nextReturn(ch);
    ch.publish('ro.x', rk, Buffer.from('unroutable'), { mandatory: true });
    assert.equal((await returned).content.toString(), 'unroutable');
  });

  test('basic.publish needs write on the exchange (the default exchange as amq.default)', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const rk = uniqueName('rk');
    const ch = await channel(guest);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, 'ro.x', rk);
    await ch.bindQueue(queue, 'wo.x', rk);

    await expectRefused(app, (c) => c.publish('ro.x', rk, Buffer.from('refused')), {
      kind: 'write',
      type: 'exchange',
      name: 'ro.x',
      method: METHOD.basicPublish,
    });
    await expectRefused(app, (c) => c.sendToQueue(queue, Buffer.from('refused too')), {
      kind: 'write',
      type: 'exchange',
      name: 'amq.default',
      method: METHOD.basicPublish,
    });
    // Neither refused message was routed: the next message the queue holds is
    // one sent afterwards.
    ch.sendToQueue(queue, Buffer.from('marker'));
    assert.equal((await getMessage(ch, queue)).content.toString(), 'marker');

    // Write alone (write-only wo.x) is enough to publish.
    await expectGranted(app, async (c) => {
      c.publish('wo.x', rk, Buffer.from('granted'));
      // A round trip on the same channel orders after the publish.
      await c.checkExchange('wo.x');
    });
    assert.equal((await getMessage(ch, queue)).content.toString(), 'granted');
  });

  test('basic.get needs read on the queue', async () => {
    const app = await asApp();
    const guest = await asGuest();
    const confirm = await channel(guest, { confirm: true });

    await expectRefused(app, (ch) => ch.get('wo.q', { noAck: true }), {
      kind: 'read',
      type: 'queue',
      name: 'wo.q',
      method: METHOD.basicGet,
    });

    const body = uniqueName('get-me');
    confirm.sendToQueue('ro.q', Buffer.from(body));
    await confirm.waitForConfirms();
    const msg = await expectGranted(app, (ch) => getMessage(ch, 'ro.q'));
    assert.equal(msg.content.toString(), body);
  });

  test('basic.consume needs read on the queue', async () => {
    const app = await asApp();
    const guest = await asGuest();

    await expectRefused(app, (ch) => ch.consume('wo.q', () => {}, { noAck: true }), {
      kind: 'read',
      type: 'queue',
      name: 'wo.q',
      method: METHOD.basicConsume,
    });

    const ch = await channel(app);
    const got = collector();
    await ch.consume('ro.q', got.onMessage, { noAck: true });
    const body = uniqueName('consume-me');
    (await channel(guest)).sendToQueue('ro.q', Buffer.from(body));
    const [msg] = await got.waitFor(1);
    assert.equal(msg.content.toString(), body);
    assert.deepEqual(channelErrors(ch), []);
  });

  // --- pattern semantics and other users -------------------------------------

  test('permission patterns are unanchored regular expressions', async () => {
    const app = await asApp();
    // configure is '^(app|cw|cr)\.|anywhere': the second branch matches
    // anywhere in the name...
    const inside = `x.anywhere.${uniqueName('q')}`;
    await expectGranted(app, (ch) => ch.assertQueue(inside, { durable: false }));
    await expectGranted(app, (ch) => ch.deleteQueue(inside));
    // ...while the anchored branch and the escaped dot are honoured.
    for (const name of [`x${uniqueName('app.q')}`, uniqueName('appXq')]) {
      await expectRefused(app, (ch) => ch.assertQueue(name, { durable: false }), {
        kind: 'configure',
        type: 'queue',
        name,
        method: METHOD.queueDeclare,
      });
    }
  });

  test("an empty pattern ('') grants nothing, but still gives access to the vhost", async () => {
    const nobody = await connect(urlFor(port(), 'nobody', NOBODY_PASS));
    const user = 'nobody';
    await expectRefused(nobody, (ch) => ch.assertQueue('', { exclusive: true }), {
      text: /^ACCESS_REFUSED - configure access to queue 'amq\.gen-[^']+' in vhost '\/' refused for user 'nobody'$/,
      method: METHOD.queueDeclare,
    });
    await expectRefused(nobody, (ch) => ch.sendToQueue('shared.q', Buffer.from('x')), {
      user,
      kind: 'write',
      type: 'exchange',
      name: 'amq.default',
      method: METHOD.basicPublish,
    });
    await expectRefused(nobody, (ch) => ch.get('shared.q'), {
      user,
      kind: 'read',
      type: 'queue',
      name: 'shared.q',
      method: METHOD.basicGet,
    });
    await expectGranted(nobody, (ch) => ch.checkQueue('shared.q'));
  });

  test('the default exchange is checked as amq.default and server-named queues as amq.gen-*', async () => {
    // 'gen': configure/read '^amq\.gen-', write '^amq\.default$'.
    const gen = await connect(urlFor(port(), 'gen', GEN_PASS));
    const ch = await channel(gen);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    assert.match(queue, /^amq\.gen-/);
    const got = collector();
    await ch.consume(queue, got.onMessage, { noAck: true });
    ch.sendToQueue(queue, Buffer.from('through amq.default'));
    assert.equal((await got.waitFor(1))[0].content.toString(), 'through amq.default');
    assert.deepEqual(channelErrors(ch), []);

    await expectRefused(gen, (c) => c.publish('amq.direct', queue, Buffer.from('x')), {
      user: 'gen',
      kind: 'write',
      type: 'exchange',
      name: 'amq.direct',
      method: METHOD.basicPublish,
    });
    const named = uniqueName('named');
    await expectRefused(gen, (c) => c.assertQueue(named, { exclusive: true }), {
      user: 'gen',
      kind: 'configure',
      type: 'queue',
      name: named,
      method: METHOD.queueDeclare,
    });
  });

  test('a refused operation leaves other channels and connections working', async () => {
    const app = await asApp();
    const sibling = await channel(app);
    const otherApp = await asApp();
    const otherCh = await channel(otherApp);
    const guest = await asGuest();
    const guestCh = await channel(guest);

    const victim = await channel(app);
    victim.publish('shared.x', 'rk', Buffer.from('refused'));
    const err = await channelClosed(victim);
    assert.equal(err?.code, 403, err?.message);

    // Everything else still works, including new channels on the same connection.
    const fresh = await channel(app);
    for (const [label, ch] of [
      ['sibling', sibling],
      ['fresh', fresh],
      ['other app connection', otherCh],
      ['guest', guestCh],
    ]) {
      const name = uniqueName(label === 'guest' ? 'shared.q' : 'app.q');
      await ch.assertQueue(name, { exclusive: true });
      await ch.bindQueue(name, 'app.x', name);
      ch.publish('app.x', name, Buffer.from(label));
      assert.equal((await getMessage(ch, name)).content.toString(), label, `${label} channel`);
    }
    assert.deepEqual(app.recordedErrors, []);
    assert.deepEqual(otherApp.recordedErrors, []);
    assert.deepEqual(guest.recordedErrors, []);
  });

  test('end to end as app: publish to app.x, routed to app.q, consumed back', async () => {
    const app = await asApp();
    const pub = await channel(app, { confirm: true });
    const sub = await channel(app);
    const got = collector();
    await sub.consume('app.q', got.onMessage, { noAck: false });

    const body = uniqueName('hello');
    pub.publish('app.x', 'app.rk', Buffer.from(body), { contentType: 'text/plain', messageId: body });
    await pub.waitForConfirms();
    const [msg] = await got.waitFor(1);
    assert.equal(msg.content.toString(), body);
    assert.equal(msg.properties.messageId, body);
    assert.equal(msg.fields.exchange, 'app.x');
    assert.equal(msg.fields.routingKey, 'app.rk');
    sub.ack(msg);
    // The ack is accepted (a bad ack would close the channel) and the queue is empty.
    assert.equal((await sub.checkQueue('app.q')).messageCount, 0);
    assert.deepEqual([...channelErrors(pub), ...channelErrors(sub)], []);
  });
});

// ---------------------------------------------------------------------------

const EXTERNAL_IPV4 = externalIPv4();

describe(
  'loopback-only users',
  { skip: SKIP || (!EXTERNAL_IPV4 && 'this machine has no non-internal IPv4 address to connect from') },
  () => {
    // The harness always binds 127.0.0.1; --bind adds a wildcard listener,
    // which with --port 0 gets its own port, read from the startup output.
    const restricted = ownWarren((file) => ['--bind', '0.0.0.0', '--load-definitions', file], DEFINITIONS);
    const lifted = ownWarren((file) => ['--bind', '0.0.0.0', '--loopback-users', 'none', '--load-definitions', file], DEFINITIONS);

    function wildcardPort(warren) {
      const m = /Listening for AMQP on 0\.0\.0\.0:(\d+)/.exec(warren.output());
      assert.ok(m, `no 0.0.0.0 listener reported:\n${warren.output()}`);
      return Number(m[1]);
    }

    test('guest may log in only from a loopback address by default', async () => {
      const p = wildcardPort(restricted.warren);
      await assert.rejects(amqp.connect(urlFor(p, 'guest', 'guest', { host: EXTERNAL_IPV4 })), (err) => {
        assert.equal(
          err.message,
          'Handshake terminated by server: 403 (ACCESS-REFUSED) with message ' +
            '"ACCESS_REFUSED - user \'guest\' can only connect via localhost"',
        );
        return true;
      });
      // Same listener, loopback source: fine.
      const local = await connect(urlFor(p, 'guest', 'guest'));
      await (await channel(local)).assertQueue('', { exclusive: true });
      // Users not in the list may come from anywhere.
      const app = await connect(urlFor(p, 'app', APP_PASS, { host: EXTERNAL_IPV4 }));
      await (await channel(app)).checkQueue('app.q');
    });

    test('--loopback-users none lets guest log in from any address', async () => {
      const p = wildcardPort(lifted.warren);
      const conn = await connect(urlFor(p, 'guest', 'guest', { host: EXTERNAL_IPV4 }));
      const { queue } = await (await channel(conn)).assertQueue('', { exclusive: true });
      assert.match(queue, /^amq\.gen-/);
    });
  },
);

// ---------------------------------------------------------------------------

describe('--max-message-size', { skip: SKIP }, () => {
  const own = ownWarren(() => ['--max-message-size', '1024']);

  test('a body of exactly the maximum size is accepted', async () => {
    const conn = await connect(own.warren.url);
    const ch = await channel(conn);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(queue, Buffer.alloc(1024, 'a'));
    const msg = await getMessage(ch, queue);
    assert.equal(msg.content.length, 1024);
    assert.deepEqual(channelErrors(ch), []);
  });

  test('one byte more closes the channel with 406 PRECONDITION_FAILED', async () => {
    const conn = await connect(own.warren.url);
    const bystander = await channel(conn);
    const { queue } = await bystander.assertQueue('', { exclusive: true });

    for (const size of [1025, 300_000]) {
      // 300 000 bytes spans several body frames (frame_max 131072).
      const ch = await channel(conn);
      ch.sendToQueue(queue, Buffer.alloc(size, 'b'));
      const err = await channelClosed(ch);
      assert.ok(err, 'the channel must be closed with an error');
      assert.equal(err.code, 406, err.message);
      assert.equal(
        err.message,
        'Channel closed by server: 406 (PRECONDITION-FAILED) with message ' +
          `"PRECONDITION_FAILED - message size ${size} is larger than configured max size 1024"`,
      );
      assert.deepEqual([err.classId, err.methodId], METHOD.basicPublish);
    }

    // The oversized messages were not enqueued, and the connection and the
    // other channel are unaffected.
    bystander.sendToQueue(queue, Buffer.from('small'));
    assert.equal((await getMessage(bystander, queue)).content.toString(), 'small');
    assert.deepEqual(conn.recordedErrors, []);
  });
});

describe('--connection-max', { skip: SKIP }, () => {
  const own = ownWarren(() => ['--connection-max', '2']);

  test('a connection beyond the limit gets 530 NOT_ALLOWED; closing one frees a slot', async () => {
    const { url, port } = own.warren;
    const first = await connect(url);
    const second = await connect(url);

    await assert.rejects(amqp.connect(url), /Expected ConnectionOpenOk; got <ConnectionClose/);
    const raw = await rawHandshake({ port, user: 'guest', pass: 'guest' });
    assert.equal(raw.opened, false);
    assert.equal(raw.stage, 'open', 'the limit is applied at connection.open');
    assert.equal(raw.code, 530);
    assert.equal(raw.text, 'NOT_ALLOWED - connection refused: node connection limit (2) is reached');

    // The connections already open are unaffected.
    await (await channel(first)).assertQueue('', { exclusive: true });
    await (await channel(second)).assertQueue('', { exclusive: true });

    await first.close(); // resolves on connection.close-ok
    const third = await connect(url);
    await (await channel(third)).assertQueue('', { exclusive: true });

    // Back at the limit.
    const again = await rawHandshake({ port, user: 'guest', pass: 'guest' });
    assert.equal(again.code, 530, JSON.stringify(again));
  });
});
