// The event producer: the order service publishes one `order.placed` event
// per order to the events exchange, with publisher confirms.
//
// Every order gets a correlation id (as if it came from the id of the web
// request that placed it), carried by every event that follows from it, and a
// message id derived from the order, its idempotency key. Some orders are
// sent more than once with the same message id, as a producer does when it
// publishes again after a lost confirm; consumers must ignore the copies.

'use strict';

const crypto = require('node:crypto');
const { publishConfirmed } = require('./consumer');

/**
 * The orders the demo places. `copies` > 1 sends the same message again;
 * the cards and cities steer the simulated failures (see services.js).
 */
const ORDERS = [
  { orderId: 1001, customer: 'ada', total: 42.5, card: 'tok_visa', city: 'Lisbon' },
  { orderId: 1002, customer: 'grace', total: 18.0, card: 'tok_visa', city: 'Oslo', copies: 2 },
  { orderId: 1003, customer: 'alan', total: 99.9, card: 'tok_flaky_1', city: 'Turin' },
  { orderId: 1004, customer: 'edsger', total: 7.25, card: 'tok_visa', city: 'Delft', copies: 3 },
  { orderId: 1005, customer: 'barbara', total: 64.0, card: 'tok_flaky_3', city: 'Boston' },
  { orderId: 1006, customer: 'donald', total: 12.0, card: 'tok_garbled', city: 'Madison' },
  { orderId: 1007, customer: 'margaret', total: 250.0, card: 'tok_visa', city: 'Reykjavik' },
  { orderId: 1008, customer: 'ken', total: 5.0, card: 'tok_visa', city: 'Murray Hill' },
];

/**
 * Publish every order (and its copies) and wait for the broker's confirms.
 * Returns [{ orderId, messageId, correlationId, copies }].
 */
async function placeOrders(conn, { topo, orders = ORDERS, log, report }) {
  const ch = await conn.createConfirmChannel();
  ch.on('error', (err) => log('orders', '-', `channel error: ${err.message}`));
  const placed = [];
  for (const order of orders) {
    const { copies = 1, ...body } = order;
    const correlationId = crypto.randomUUID();
    const messageId = `order-placed-${order.orderId}`;
    for (let copy = 1; copy <= copies; copy++) {
      log('orders', correlationId, copy === 1
        ? `order ${order.orderId} placed (${body.customer}, ${body.total.toFixed(2)}): order.placed as ${messageId}`
        : `order ${order.orderId} sent again (copy ${copy}, same message id ${messageId})`);
      await publishConfirmed(ch, topo.names.events, 'order.placed', body, {
        persistent: true,
        contentType: 'application/json',
        type: 'order.placed',
        messageId,
        correlationId,
        appId: 'orders',
        timestamp: Math.floor(Date.now() / 1000),
      });
      report('published', { key: 'order.placed', messageId, correlationId });
    }
    placed.push({ orderId: order.orderId, messageId, correlationId, copies });
  }
  await ch.close();
  return placed;
}

module.exports = { ORDERS, placeOrders };
