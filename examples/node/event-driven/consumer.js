// What every consuming service of the demo does around its own business step:
//
//   * idempotency: a message whose message id it has already processed is
//     acknowledged and skipped (producers may send the same message twice,
//     e.g. after a lost publisher confirm);
//   * retries: a failed message is rejected (nack, no requeue); the broker
//     dead-letters it into the next delay queue and, once the delay has
//     passed, back to this service (see topology.js). The attempt number is
//     read from the message's x-death history, so the service keeps no state
//     for it; after the last attempt the rejection lands in the parking lot;
//   * correlation: every event it publishes carries the correlation id of
//     the message that caused it, and that message's id as `causation-id`.
//
// A service is { name, handle(payload, context) }; `handle` performs the work
// and returns the events to publish, [{ key, messageId, body }], or throws.

'use strict';

/** How many times `queue` has already rejected this message (RabbitMQ's x-death counts). */
function rejectionsBy(msg, queue) {
  const deaths = (msg.properties.headers && msg.properties.headers['x-death']) || [];
  const entry = deaths.find((d) => d.queue === queue && d.reason === 'rejected');
  return entry ? Number(entry.count) : 0;
}

/** Publish on a confirm channel and resolve once the broker has confirmed it. */
function publishConfirmed(ch, exchange, key, body, options) {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, key, Buffer.from(JSON.stringify(body)), options, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Start consuming for `service` on connection `conn`. `report(outcome, info)`
 * is called once per delivery with outcome 'processed', 'duplicate', 'retried'
 * or 'parked', and once per published event with 'published'.
 * Resolves to { processedIds } once the consumer is registered.
 */
async function startService(conn, { service, topo, retryDelaysMs, log, report }) {
  const { queue, delayQueues, parkingLot } = topo.names.services[service.name];
  const maxAttempts = topo.names.maxAttempts;
  // The service's record of the messages it has processed. A real service
  // keeps it in its database, written in the same transaction as the work.
  const processedIds = new Set();

  const ch = await conn.createConfirmChannel();
  ch.on('error', (err) => log(service.name, '-', `channel error: ${err.message}`));
  // One message at a time: the idempotency check and the record of a
  // processed id can then not interleave with another delivery of that id.
  await ch.prefetch(1);

  await ch.consume(
    queue,
    async (msg) => {
      if (msg === null) return; // cancelled by the broker (queue deleted)
      const { messageId, correlationId } = msg.properties;
      const attempt = rejectionsBy(msg, queue) + 1;
      const say = (text) => log(service.name, correlationId, text);

      if (processedIds.has(messageId)) {
        say(`message ${messageId} already processed: duplicate acked and skipped`);
        ch.ack(msg);
        report('duplicate', { messageId, correlationId });
        return;
      }

      try {
        if (!messageId) throw new Error('message has no message id, so it cannot be processed idempotently');
        const payload = JSON.parse(msg.content.toString());
        const events = await service.handle(payload, { attempt, messageId, correlationId, say });
        for (const event of events) {
          await publishConfirmed(ch, topo.names.events, event.key, event.body, {
            persistent: true,
            contentType: 'application/json',
            type: event.key,
            messageId: event.messageId,
            correlationId,
            appId: service.name,
            timestamp: Math.floor(Date.now() / 1000),
            headers: { 'causation-id': messageId },
          });
          report('published', { key: event.key, messageId: event.messageId, correlationId });
        }
        processedIds.add(messageId);
        ch.ack(msg);
        report('processed', { messageId, correlationId, attempt });
      } catch (err) {
        if (attempt < maxAttempts) {
          const delay = retryDelaysMs[attempt - 1];
          say(`attempt ${attempt} failed (${err.message}); retry in ${delay} ms via ${delayQueues[attempt - 1]}`);
          ch.nack(msg, false, false);
          report('retried', { messageId, correlationId, attempt });
        } else {
          say(`attempt ${attempt} of ${maxAttempts} failed (${err.message}); giving up: to ${parkingLot}`);
          ch.nack(msg, false, false);
          report('parked', { messageId, correlationId, attempt });
        }
      }
    },
    { noAck: false },
  );
  return { processedIds, channel: ch };
}

module.exports = { startService, rejectionsBy, publishConfirmed };
