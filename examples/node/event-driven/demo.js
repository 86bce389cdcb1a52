// The event-driven order demo, in one command: declares its topology, starts
// the consumers (billing, shipping, the event store), lets the order service
// place a fixed batch of orders, waits until every message has reached an
// end (processed, skipped as a duplicate, or parked), prints what happened
// and exits: 0 if every order was processed exactly once or parked, else 1.
//
// Usage: npm run demo   (in examples/node; or node event-driven/demo.js there)
//
// Environment:
//   AMQP_URL               the broker (default amqp://localhost)
//   DEMO_PREFIX            prefix of every exchange and queue (default orders-demo)
//   DEMO_RETRY_DELAYS_MS   delay before each retry, comma-separated (default 250,500,1000:
//                          three retries, so four attempts before the parking lot)
//   DEMO_TIMEOUT_MS        give up (exit 1) if not done by then (default 30000)
//
// Each run starts from nothing: the demo deletes and re-declares its own
// queues. It leaves the parked messages in the parking-lot queues, to be
// looked at (e.g. in the management UI) after it has exited.

'use strict';

const amqp = require('amqplib');
const { topology, declareTopology, deleteQueues, SERVICES } = require('./topology');
const { startService } = require('./consumer');
const { startEventStore } = require('./event-store');
const { placeOrders } = require('./order-service');
const services = require('./services');

// The broker: $AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5673/), else localhost:5672.
const URL = process.env.AMQP_URL || 'amqp://localhost';
const PREFIX = process.env.DEMO_PREFIX || 'orders-demo';
const RETRY_DELAYS_MS = (process.env.DEMO_RETRY_DELAYS_MS || '250,500,1000').split(',').map(Number);
const TIMEOUT_MS = Number(process.env.DEMO_TIMEOUT_MS || 30000);

if (RETRY_DELAYS_MS.length === 0 || !RETRY_DELAYS_MS.every((d) => Number.isInteger(d) && d >= 0)) {
  const given = process.env.DEMO_RETRY_DELAYS_MS;
  console.error(`DEMO_RETRY_DELAYS_MS must be a comma-separated list of milliseconds, not "${given}"`);
  process.exit(2);
}

const started = Date.now();

/** One log line: elapsed time, who, the start of the correlation id, what. */
function log(who, correlationId, text) {
  const elapsed = `+${String(Date.now() - started).padStart(5)}ms`;
  const corr = correlationId && correlationId !== '-' ? correlationId.slice(0, 8) : '-'.padEnd(8);
  console.log(`${elapsed} ${who.padEnd(8)} ${corr}  ${text}`);
}

/** Counters fed by every component's report(outcome, info). */
function newStats() {
  const stats = {
    published: new Map(), // routing key -> events published (and confirmed)
    services: {}, // name -> { processed, duplicate, retried, parked, retriesByCorrelation }
    stored: 0,
    storedDuplicates: 0,
  };
  for (const { name } of SERVICES) {
    stats.services[name] = { processed: 0, duplicate: 0, retried: 0, parked: 0, retriesByCorrelation: new Map() };
  }
  stats.reporter = (who) => (outcome, info) => {
    if (outcome === 'published') {
      stats.published.set(info.key, (stats.published.get(info.key) || 0) + 1);
    } else if (outcome === 'stored') {
      stats.stored++;
    } else if (outcome === 'stored-duplicate') {
      stats.storedDuplicates++;
    } else {
      const s = stats.services[who];
      s[outcome]++;
      if (outcome === 'retried') {
        s.retriesByCorrelation.set(info.correlationId, (s.retriesByCorrelation.get(info.correlationId) || 0) + 1);
      }
    }
  };
  return stats;
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/**
 * Whether every message has reached its end: each service has finished as
 * many deliveries as were published with its keys, the event store has
 * every event, and each parking lot holds what its service parked.
 */
async function settled(stats, topo, ch) {
  const totalPublished = sum([...stats.published.values()]);
  if (stats.stored + stats.storedDuplicates !== totalPublished) return false;
  for (const { name, subscribes } of SERVICES) {
    const s = stats.services[name];
    const expected = sum(subscribes.map((k) => stats.published.get(k) || 0));
    if (s.processed + s.duplicate + s.parked !== expected) return false;
  }
  for (const { name } of SERVICES) {
    const { messageCount } = await ch.checkQueue(topo.names.services[name].parkingLot);
    if (messageCount !== stats.services[name].parked) return false;
  }
  return true;
}

/**
 * Read the parking lots without taking the messages away: they are fetched
 * unacknowledged and go back to their queue when the channel closes.
 * Returns [{ service, queue, messageId, correlationId, deaths, firstDeath }].
 */
async function inspectParkingLots(conn, topo) {
  const ch = await conn.createChannel();
  const parked = [];
  for (const { name } of SERVICES) {
    const queue = topo.names.services[name].parkingLot;
    for (;;) {
      const msg = await ch.get(queue, { noAck: false });
      if (!msg) break;
      const headers = msg.properties.headers || {};
      parked.push({
        service: name,
        queue,
        messageId: msg.properties.messageId,
        correlationId: msg.properties.correlationId,
        body: JSON.parse(msg.content.toString()),
        deaths: headers['x-death'] || [],
        firstDeath: `${headers['x-first-death-reason']} by ${headers['x-first-death-queue']}`,
      });
    }
  }
  await ch.close(); // puts them back
  return parked;
}

function printSummary({ placed, stats, parked, store, topo }) {
  const { ledger } = services;
  const problems = [];
  const line = (text = '') => console.log(text);

  line();
  line('Summary');
  const copies = sum(placed.map((p) => p.copies));
  line(`  order service  ${placed.length} orders placed as ${copies} messages (${copies - placed.length} duplicates)`);
  for (const { name } of SERVICES) {
    const s = stats.services[name];
    line(
      `  ${name.padEnd(13)}  ${s.processed} processed, ${s.duplicate} duplicates skipped, ` +
        `${s.retried} ${s.retried === 1 ? 'retry' : 'retries'} through the delay queues, ${s.parked} parked`,
    );
  }
  line(`  event store    ${store.size} distinct events kept, ${stats.storedDuplicates} duplicate deliveries ignored`);
  line();
  line('  order  correlation id                        outcome');

  let shipped = 0;
  for (const { orderId, correlationId } of placed) {
    const charges = ledger.charges.get(orderId) || 0;
    const shipments = ledger.shipments.get(orderId) || 0;
    const parkedHere = parked.filter((p) => p.correlationId === correlationId);
    const retries = SERVICES.map(({ name }) => [name, stats.services[name].retriesByCorrelation.get(correlationId) || 0])
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${n} ${name} ${n === 1 ? 'retry' : 'retries'}`);
    const story = store.story(correlationId).map((e) => e.key);

    let outcome;
    if (shipments === 1 && parkedHere.length === 0) {
      shipped++;
      outcome = 'shipped';
    } else if (shipments === 0 && parkedHere.length === 1) {
      outcome = `parked by ${parkedHere[0].service}`;
    } else {
      outcome = `INCONSISTENT (${shipments} shipments, ${parkedHere.length} parked)`;
      problems.push(`order ${orderId}: ${outcome}`);
    }
    if (charges > 1) problems.push(`order ${orderId} was charged ${charges} times`);
    if (story[0] !== 'order.placed') problems.push(`order ${orderId}: no order.placed under its correlation id`);
    if (store.story(correlationId).some((e) => e.body.orderId !== orderId)) {
      problems.push(`order ${orderId}: an event of another order carries its correlation id`);
    }
    const detail = [retries.length ? `after ${retries.join(', ')}` : '', `events: ${story.join(' -> ')}`]
      .filter(Boolean)
      .join('; ');
    line(`  ${orderId}   ${correlationId}  ${outcome} (${detail})`);
  }

  for (const { name } of SERVICES) {
    const queue = topo.names.services[name].parkingLot;
    const here = parked.filter((p) => p.service === name);
    if (here.length === 0) continue;
    line();
    line(`  ${queue}: ${here.length} message(s), left there for inspection`);
    for (const p of here) {
      line(`    ${p.messageId} (correlation id ${p.correlationId}), first death: ${p.firstDeath}`);
      for (const d of p.deaths) line(`      x-death: ${d.reason} ${d.count}x in ${d.queue}`);
    }
  }

  line();
  const parkedCount = parked.length;
  if (problems.length === 0) {
    line(
      `OK: ${placed.length} orders, ${shipped} processed exactly once and shipped, ${parkedCount} parked; ` +
        `${copies - placed.length} duplicate messages ignored.`,
    );
  } else {
    for (const p of problems) line(`PROBLEM: ${p}`);
  }
  return problems.length === 0;
}

async function main() {
  const topo = topology({ prefix: PREFIX, retryDelaysMs: RETRY_DELAYS_MS });
  const stats = newStats();
  const connections = [];
  const connect = async (name) => {
    const conn = await amqp.connect(URL, { clientProperties: { connection_name: `${PREFIX} ${name}` } });
    conn.on('error', (err) => log(name, '-', `connection error: ${err.message}`));
    connections.push(conn);
    return conn;
  };

  try {
    // Topology, from scratch.
    const admin = await connect('admin');
    const ch = await admin.createChannel();
    await deleteQueues(ch, topo);
    await declareTopology(ch, topo);
    log('demo', '-', `connected to ${URL.replace(/\/\/[^@/]*@/, '//')}; declared ${topo.exchanges.length} exchanges and ` +
      `${topo.queues.length} queues under "${PREFIX}." (retry delays ${RETRY_DELAYS_MS.join(', ')} ms)`);

    // Consumers first, so they see every event.
    const store = await startEventStore(await connect('store'), { topo, log, report: stats.reporter('store') });
    for (const { name } of SERVICES) {
      await startService(await connect(name), {
        service: services[name],
        topo,
        retryDelaysMs: RETRY_DELAYS_MS,
        log,
        report: stats.reporter(name),
      });
    }

    // The producer.
    const placed = await placeOrders(await connect('orders'), { topo, log, report: stats.reporter('orders') });

    // Wait until every message has reached its end.
    const deadline = Date.now() + TIMEOUT_MS;
    while (!(await settled(stats, topo, ch))) {
      if (Date.now() > deadline) {
        const state = JSON.stringify(stats, (k, v) => (v instanceof Map ? Object.fromEntries(v) : v));
        log('demo', '-', `not done after ${TIMEOUT_MS} ms: ${state}`);
        return false;
      }
      await new Promise((r) => setTimeout(r, 20));
    }

    const parked = await inspectParkingLots(admin, topo);
    return printSummary({ placed, stats, parked, store, topo });
  } finally {
    for (const conn of connections.reverse()) {
      await conn.close().catch(() => {});
    }
  }
}

main().then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
  },
  (err) => {
    console.error(`demo failed: ${err.stack || err.message}`);
    process.exitCode = 1;
  },
);
