// The demo's exchanges, queues and bindings, as plain data, and the two
// operations on them: declare everything, and delete the demo's queues.
//
// Everything is named `<prefix>.*` (prefix `orders-demo` unless DEMO_PREFIX
// says otherwise), so several runs can share a broker without meeting.
//
// For every consuming service S (billing, shipping) with retry delays
// d1..dK, this builds:
//
//   <prefix>.events    topic  -- S's routing keys -->  <prefix>.S
//   <prefix>.S         (x-dead-letter-exchange <prefix>.S.dlx)
//   <prefix>.S.dlx     direct -- S's routing keys -->  <prefix>.S.delay-1
//                             -- S.attempt-2     -->  <prefix>.S.delay-2
//                             ...
//                             -- S.attempt-(K+1) -->  <prefix>.S.parking-lot
//   <prefix>.S.delay-n (x-message-ttl dn, dead-letters to <prefix>.retry
//                       with routing key S.attempt-(n+1))
//   <prefix>.retry     direct -- S.attempt-2..(K+1) --> <prefix>.S
//
// A message S rejects goes to S's dead-letter exchange under its current
// routing key, which says how many attempts it has had: the original key
// after the first, `S.attempt-n` after the n-th (the delay queue that held it
// renamed it). So the broker alone walks a failing message through the delay
// levels and, after K + 1 attempts, into the parking lot, with RabbitMQ's
// x-death history recording every step. Nothing here needs a plugin.
//
// The delay queues dead-letter into `<prefix>.retry`, not back into the
// events exchange: re-publishing `order.placed` there would deliver the
// retried message again to every subscriber (the event store, other
// services), not only to the one that failed it.

'use strict';

/** The consuming services: their name and the event keys they subscribe to. */
const SERVICES = [
  { name: 'billing', subscribes: ['order.placed'] },
  { name: 'shipping', subscribes: ['payment.captured'] },
];

/**
 * Names and declarations for a given prefix and list of retry delays (ms).
 * Returns { exchanges, queues, bindings, names } where `names` gives the
 * queues and exchanges by role:
 *   names.events, names.retry, names.auditQueue,
 *   names.services[S] = { queue, dlx, delayQueues: [...], parkingLot, attemptKey(n) }
 */
function topology({ prefix, retryDelaysMs }) {
  const events = `${prefix}.events`;
  const retry = `${prefix}.retry`;
  const auditQueue = `${prefix}.audit`;
  const maxAttempts = retryDelaysMs.length + 1;

  const exchanges = [
    { name: events, type: 'topic' },
    { name: retry, type: 'direct' },
  ];
  const queues = [{ name: auditQueue, arguments: {} }];
  // The event store keeps every event: it sees all of them.
  const bindings = [{ queue: auditQueue, exchange: events, key: '#' }];
  const services = {};

  for (const { name, subscribes } of SERVICES) {
    const queue = `${prefix}.${name}`;
    const dlx = `${prefix}.${name}.dlx`;
    const parkingLot = `${prefix}.${name}.parking-lot`;
    const attemptKey = (n) => `${name}.attempt-${n}`;
    // The routing keys a message has when it fails its n-th attempt.
    const keysAfterAttempt = (n) => (n === 1 ? subscribes : [attemptKey(n)]);

    exchanges.push({ name: dlx, type: 'direct' });
    queues.push({ name: queue, arguments: { 'x-dead-letter-exchange': dlx } });
    for (const key of subscribes) bindings.push({ queue, exchange: events, key });

    const delayQueues = retryDelaysMs.map((ttl, i) => {
      const attempt = i + 1;
      const delayQueue = `${prefix}.${name}.delay-${attempt}`;
      queues.push({
        name: delayQueue,
        arguments: {
          'x-message-ttl': ttl,
          'x-dead-letter-exchange': retry,
          'x-dead-letter-routing-key': attemptKey(attempt + 1),
        },
      });
      for (const key of keysAfterAttempt(attempt)) bindings.push({ queue: delayQueue, exchange: dlx, key });
      // Back from the delay queue, the message is routed to this service only.
      bindings.push({ queue, exchange: retry, key: attemptKey(attempt + 1) });
      return delayQueue;
    });

    queues.push({ name: parkingLot, arguments: {} });
    for (const key of keysAfterAttempt(maxAttempts)) bindings.push({ queue: parkingLot, exchange: dlx, key });

    services[name] = { queue, dlx, delayQueues, parkingLot, attemptKey, subscribes };
  }

  return { exchanges, queues, bindings, names: { events, retry, auditQueue, services, maxAttempts } };
}

/** Declare every exchange, queue and binding (all durable). */
async function declareTopology(ch, topo) {
  for (const x of topo.exchanges) await ch.assertExchange(x.name, x.type, { durable: true });
  for (const q of topo.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
  for (const b of topo.bindings) await ch.bindQueue(b.queue, b.exchange, b.key);
}

/**
 * Delete the demo's queues (and with them their messages and bindings), so a
 * run starts from nothing and may use other retry delays than the last one
 * (a queue cannot be re-declared with a different x-message-ttl). The
 * exchanges stay: re-declaring them identically is harmless.
 */
async function deleteQueues(ch, topo) {
  for (const q of topo.queues) await ch.deleteQueue(q.name);
}

/** Delete the demo's exchanges too (used to clean up after tests). */
async function deleteExchanges(ch, topo) {
  for (const x of topo.exchanges) await ch.deleteExchange(x.name);
}

module.exports = { SERVICES, topology, declareTopology, deleteQueues, deleteExchanges };
