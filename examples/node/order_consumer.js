// Consume orders from the durable `orderQueue` queue, printing and
// acknowledging each one.
//
// Usage: node order_consumer.js   (the broker at $AMQP_URL, default localhost:5672)
//
// Runs until interrupted. Messages are acknowledged only after they have been
// handled, so an order is never lost if the consumer dies halfway.

const amqp = require('amqplib/callback_api');

const QUEUE = 'orderQueue';

// The broker: $AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5673/), else localhost:5672.
const URL = process.env.AMQP_URL || 'amqp://localhost';

amqp.connect(URL, (connectError, connection) => {
  if (connectError) {
    throw connectError;
  }

  connection.createChannel((channelError, channel) => {
    if (channelError) {
      throw channelError;
    }

    // Durable, so the queue definition survives a broker restart.
    channel.assertQueue(QUEUE, { durable: true });

    console.log(`Waiting for orders on ${QUEUE}. To exit press CTRL+C`);

    channel.consume(
      QUEUE,
      (message) => {
        // A null message means the broker cancelled the consumer.
        if (message === null) {
          return;
        }
        console.log(`Received order: ${message.content.toString()}`);
        channel.ack(message);
      },
      { noAck: false },
    );
  });
});
