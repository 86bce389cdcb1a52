// Preloaded (node --require) into amqplib's own test run. Some of its tests connect to
// "amqp://localhost" with no port, i.e. localhost:5672, rather than reading $URL. Instead of taking
// port 5672 on a shared machine, connections to localhost:5672 are sent to $CLIENT_SUITE_PORT (the
// broker under test). Nothing else changes.
'use strict';
const net = require('node:net');
const port = Number(process.env.CLIENT_SUITE_PORT);
const host = process.env.CLIENT_SUITE_HOST || '127.0.0.1';
const original = net.connect;
const local = new Set([undefined, 'localhost', '127.0.0.1', '::1']);
net.connect = net.createConnection = function (options, ...rest) {
  if (port && options && typeof options === 'object' && Number(options.port) === 5672 && local.has(options.host)) {
    options = { ...options, host, port };
  }
  return original.call(this, options, ...rest);
};
