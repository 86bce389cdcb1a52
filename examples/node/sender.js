// Publish a single "Hello World!" message to the `event_queue` queue.
//
// Usage: node sender.js   (the broker at $AMQP_URL, default localhost:5672)
//
// Like the classic tutorial program it is modelled on, this sender never
// closes its connection: stop it with Ctrl-C once "Sent" has been printed.

const amqp = require('amqplib/callback_api');

const QUEUE = 'event_queue';
const MESSAGE = 'Hello World!';

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

    // A transient queue: it does not survive a broker restart.
    channel.assertQueue(QUEUE, { durable: false });

    // Publish through the default exchange, which routes by queue name.
    channel.sendToQueue(QUEUE, Buffer.from(MESSAGE));
    console.log(`Sent ${MESSAGE}`);
  });
});
