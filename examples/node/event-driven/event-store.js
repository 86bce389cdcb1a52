// The storage consumer: keeps every event published on the events exchange
// (its queue is bound with `#`), once per message id, grouped by correlation
// id, so one order's whole story can be read back:
//   order.placed -> payment.captured -> order.shipped

'use strict';

async function startEventStore(conn, { topo, log, report }) {
  const events = new Map(); // message id -> the event as first received
  const ch = await conn.createChannel();
  ch.on('error', (err) => log('store', '-', `channel error: ${err.message}`));
  await ch.prefetch(50);
  await ch.consume(
    topo.names.auditQueue,
    (msg) => {
      if (msg === null) return;
      const { messageId, correlationId, type } = msg.properties;
      const duplicate = events.has(messageId);
      if (!duplicate) {
        events.set(messageId, {
          key: msg.fields.routingKey,
          type,
          messageId,
          correlationId,
          causationId: msg.properties.headers && msg.properties.headers['causation-id'],
          body: JSON.parse(msg.content.toString()),
        });
      }
      ch.ack(msg);
      report(duplicate ? 'stored-duplicate' : 'stored', { messageId, correlationId });
    },
    { noAck: false },
  );

  return {
    /** The stored events of one correlation id, in arrival order. */
    story(correlationId) {
      return [...events.values()].filter((e) => e.correlationId === correlationId);
    },
    get size() {
      return events.size;
    },
  };
}

module.exports = { startEventStore };
