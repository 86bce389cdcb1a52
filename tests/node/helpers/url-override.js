'use strict';
// Preload that points unchanged example programs at the broker under test.
//
//   WARREN_URL=amqp://guest:guest@127.0.0.1:PORT node -r ./url-override.js sender.js
//
// The examples hard-code 'amqp://localhost'. This module hooks Node's module
// loader so that whenever a program loads `amqplib` or
// `amqplib/callback_api` -- whichever copy it resolves -- that module's
// `connect` is wrapped to use $WARREN_URL instead of the URL it was given.
// Connection options and callbacks are passed through untouched. Without
// WARREN_URL the preload does nothing.

const Module = require('node:module');

const target = process.env.WARREN_URL;
const AMQPLIB_ENTRY_POINTS = new Set(['amqplib', 'amqplib/callback_api', 'amqplib/channel_api', 'amqplib/channel_api.js', 'amqplib/callback_api.js']);
const patched = new WeakSet();

/** Replace the URL argument of connect(url?, options?, callback?). */
function redirectConnect(originalConnect) {
  return function connectToBrokerUnderTest(...args) {
    if (typeof args[0] === 'function') {
      // callback_api's connect(callback) form: no URL given at all.
      args.unshift(target);
    } else {
      args[0] = target;
    }
    return originalConnect.apply(this, args);
  };
}

function patch(exports) {
  if (!exports || typeof exports.connect !== 'function' || patched.has(exports)) return;
  exports.connect = redirectConnect(exports.connect);
  patched.add(exports);
}

if (target) {
  const originalLoad = Module._load;
  Module._load = function loadWithAmqpRedirect(request, parent, isMain) {
    const exports = originalLoad.call(this, request, parent, isMain);
    if (AMQPLIB_ENTRY_POINTS.has(request)) patch(exports);
    return exports;
  };
}
