// The two consuming services' business steps. Each takes the message's JSON
// payload and returns the events to publish, or throws; consumer.js adds
// idempotency, retries and correlation around them.
//
//   billing   order.placed      -> charges the card  -> payment.captured
//   shipping  payment.captured  -> books a delivery  -> order.shipped
//
// Their outside worlds are simulated, deterministically, so that the demo
// shows each failure path on every run:
//   * the payment gateway times out on the first N attempts for the test
//     cards `tok_flaky_N`, and can never charge `tok_garbled`;
//   * the warehouse in Reykjavik is busy on the first attempt.

'use strict';

/** The fake payment gateway: charges a card or throws. */
function chargeCard(card, amount, attempt) {
  if (card === 'tok_garbled') throw new Error('payment gateway: card token unreadable');
  const flaky = /^tok_flaky_(\d+)$/.exec(card);
  if (flaky && attempt <= Number(flaky[1])) throw new Error('payment gateway timeout');
  return { paymentId: `pay-${card.slice(-4)}-${Math.round(amount * 100)}` };
}

/** The fake warehouse: books a delivery or throws. */
function bookDelivery(city, attempt) {
  if (city === 'Reykjavik' && attempt === 1) throw new Error('warehouse busy');
  return { trackingNumber: `TRK-${city.slice(0, 3).toUpperCase()}-${Date.now() % 100000}` };
}

// What each service has done, by order id (the demo checks exactly-once on it).
const ledger = { charges: new Map(), shipments: new Map() };

const billing = {
  name: 'billing',
  async handle(order, { attempt, say }) {
    const { paymentId } = chargeCard(order.card, order.total, attempt);
    ledger.charges.set(order.orderId, (ledger.charges.get(order.orderId) || 0) + 1);
    say(`order ${order.orderId}: charged ${order.total.toFixed(2)} on attempt ${attempt} -> payment.captured`);
    return [
      {
        key: 'payment.captured',
        // Derived from the order, so the same payment always has the same id.
        messageId: `payment-captured-${order.orderId}`,
        body: { orderId: order.orderId, paymentId, amount: order.total, city: order.city, attempts: attempt },
      },
    ];
  },
};

const shipping = {
  name: 'shipping',
  async handle(payment, { attempt, say }) {
    const { trackingNumber } = bookDelivery(payment.city, attempt);
    ledger.shipments.set(payment.orderId, (ledger.shipments.get(payment.orderId) || 0) + 1);
    say(`order ${payment.orderId}: shipped to ${payment.city} on attempt ${attempt} -> order.shipped`);
    return [
      {
        key: 'order.shipped',
        messageId: `order-shipped-${payment.orderId}`,
        body: { orderId: payment.orderId, trackingNumber, attempts: attempt },
      },
    ];
  },
};

module.exports = { billing, shipping, ledger };
