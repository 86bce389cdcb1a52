'use strict';
// Broker lifecycle and small shared utilities for the Node end-to-end suite.
//
// Two modes:
//   * AMQP_URL set   -> use that broker as-is (this is how the suite is run
//                       against a real RabbitMQ to check that every assertion
//                       encodes RabbitMQ's behaviour). Nothing is spawned.
//   * AMQP_URL unset -> spawn Warren (`$WARREN_BIN`, or <repo>/target/debug/warren)
//                       on an ephemeral port, wait for it to report that it is
//                       ready, and stop it with SIGTERM at the end.
//
// Typical use in a test file:
//
//   const { useBroker } = require('../helpers/broker');
//   const broker = useBroker();           // registers before/after hooks
//   test('x', async () => {
//     const conn = await broker.connect(); // closed automatically after the test
//     const ch = await broker.channel(conn);
//   });

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { before, after, afterEach } = require('node:test');
const amqp = require('amqplib');

// tests/node/helpers -> repository root.
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const STARTUP_TIMEOUT_MS = 10_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

const LISTENING_RE = /Listening for AMQP on (\S+):(\d+)/;
// The management API / UI and Prometheus ports (0 asked, so each broker gets free ones).
const HTTP_RE = /Listening for HTTP on (\S+):(\d+)/;
const PROMETHEUS_RE = /Listening for Prometheus on (\S+):(\d+)/;
const READY_LINE = 'Server startup complete';

/** Path of the Warren binary the suite will run. */
function warrenBinary() {
  return process.env.WARREN_BIN || path.join(REPO_ROOT, 'target', 'debug', 'warren');
}

/** True when the suite talks to an externally managed broker. */
function usingExternalBroker() {
  return Boolean(process.env.AMQP_URL);
}

/**
 * Spawn Warren and resolve once it has printed both its listening line and
 * its startup-complete line. Resolves to a handle:
 *   { url, port, process, output(), stop() }
 */
function spawnWarren({ extraArgs = [] } = {}) {
  const bin = warrenBinary();
  if (!fs.existsSync(bin)) {
    return Promise.reject(
      new Error(`Warren binary not found at ${bin}; build it (cargo build) or set WARREN_BIN / AMQP_URL`),
    );
  }

  // Run from a scratch directory so whatever the broker may write (data,
  // logs) never lands in the repository and never leaks between test files.
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-node-e2e-'));
  const child = spawn(bin, ['--bind', '127.0.0.1', '--port', '0', '--management-port', '0', '--prometheus-port', '0', '--stream-port', '0', ...extraArgs], {
    cwd: workDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env },
  });

  // Keep the tail of the broker's output for error messages. Both pipes are
  // drained for the broker's whole lifetime so it can never block on a full
  // pipe buffer.
  const tail = [];
  const remember = (stream, line) => {
    tail.push(`[${stream}] ${line}`);
    if (tail.length > 200) tail.shift();
  };
  const output = () => tail.join('\n');

  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const handle = {
    process: child,
    output,
    exited,
    url: null,
    port: null,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
        }, SHUTDOWN_TIMEOUT_MS);
        const result = await exited;
        clearTimeout(timer);
        fs.rmSync(workDir, { recursive: true, force: true });
        return result;
      }
      fs.rmSync(workDir, { recursive: true, force: true });
      return exited;
    },
  };

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      fs.rmSync(workDir, { recursive: true, force: true });
      reject(new Error(`${err.message}\n--- warren output ---\n${output()}`));
    };
    const timer = setTimeout(
      () => fail(new Error(`Warren did not report "${READY_LINE}" within ${STARTUP_TIMEOUT_MS} ms`)),
      STARTUP_TIMEOUT_MS,
    );

    readline.createInterface({ input: child.stderr }).on('line', (line) => remember('stderr', line));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      remember('stdout', line);
      if (settled) return;
      const m = LISTENING_RE.exec(line);
      if (m) {
        handle.port = Number(m[2]);
        handle.url = `amqp://guest:guest@127.0.0.1:${handle.port}`;
      }
      const h = HTTP_RE.exec(line);
      if (h && handle.httpPort == null) handle.httpPort = Number(h[2]);
      const pr = PROMETHEUS_RE.exec(line);
      if (pr && handle.prometheusPort == null) handle.prometheusPort = Number(pr[2]);
      if (line.includes(READY_LINE)) {
        if (handle.port === null) {
          fail(new Error('Warren reported startup complete without a "Listening for AMQP on" line'));
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolve(handle);
      }
    });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`Warren exited during startup (code ${code}, signal ${signal})`)));
  });
}

/** Short random suffix so concurrently running suites never share a name. */
function uniqueName(prefix = 'node-e2e') {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

/**
 * Poll `fn` until it returns (or resolves) without throwing, and return its
 * value. If it keeps failing past `timeoutMs`, the last error is rethrown so
 * the test failure explains what was still wrong.
 */
async function eventually(fn, timeoutMs = 5000, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) {
        err.message = `eventually() gave up after ${timeoutMs} ms: ${err.message}`;
        throw err;
      }
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * basic.get from `queue` until a message is there (publishing is asynchronous,
 * so a message may need a moment to be routed). Returns the message.
 */
function getMessage(ch, queue, { noAck = true, timeoutMs = 5000 } = {}) {
  return eventually(async () => {
    const msg = await ch.get(queue, { noAck });
    if (!msg) throw new Error(`queue ${queue} is still empty`);
    return msg;
  }, timeoutMs);
}

/** A promise together with its resolve/reject functions. */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Reject if `promise` does not settle within `ms` (labelled for diagnostics). */
function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Per-channel bookkeeping: the first error the server closed it with.
const channelState = new WeakMap();

/**
 * Start recording a channel's errors and closure. amqplib throws if a channel
 * emits 'error' with no listener, which would kill the test process, so every
 * channel the suite opens goes through here.
 */
function watchChannel(ch) {
  const state = { errors: [] };
  state.closed = new Promise((resolve) => {
    ch.on('error', (err) => state.errors.push(err));
    ch.once('close', () => resolve(state.errors[0] || null));
  });
  channelState.set(ch, state);
  return ch;
}

/**
 * Resolve with the error the server closed `ch` with (or null for a clean
 * close). Fails if the channel is still open after `timeoutMs`.
 */
function channelClosed(ch, timeoutMs = 5000) {
  const state = channelState.get(ch);
  if (!state) throw new Error('channelClosed() needs a channel opened through broker.channel()');
  return withTimeout(state.closed, timeoutMs, 'the channel to be closed');
}

/** Errors the server has reported on a watched channel so far. */
function channelErrors(ch) {
  return channelState.get(ch)?.errors ?? [];
}

/**
 * Register before/after hooks for the current test file and return an object
 * giving access to the broker and to tracked connections.
 */
function useBroker() {
  let warren = null;
  let url = null;
  let opened = [];

  before(async () => {
    if (usingExternalBroker()) {
      url = process.env.AMQP_URL;
    } else {
      warren = await spawnWarren();
      url = warren.url;
    }
  });

  // Close whatever a test left open so the next test starts from a clean slate.
  afterEach(async () => {
    const conns = opened;
    opened = [];
    await Promise.all(conns.map((c) => closeQuietly(c)));
  });

  after(async () => {
    if (warren) {
      const { code, signal } = await warren.stop();
      if (code !== 0) {
        // The dedicated shutdown test asserts the exit status; here we only
        // make the problem visible without masking the file's real results.
        console.error(`warren exited with code ${code} signal ${signal}\n${warren.output()}`);
      }
    }
  });

  const api = {
    /** amqp:// URL of the broker under test (available once `before` ran). */
    get url() {
      if (!url) throw new Error('broker not started yet (use inside a test)');
      return url;
    },
    /** The spawned Warren handle, or null when AMQP_URL is used. */
    get warren() {
      return warren;
    },
    /** Base URL of the management API: MGMT_URL with an external broker, else Warren's. */
    get mgmtUrl() {
      if (usingExternalBroker()) return process.env.MGMT_URL || null;
      return warren ? `http://127.0.0.1:${warren.httpPort}` : null;
    },
    /** One management API call as guest: `{ status, json }`. */
    async http(method, path, body) {
      const res = await fetch(api.mgmtUrl + path, {
        method,
        headers: {
          authorization: 'Basic ' + Buffer.from('guest:guest').toString('base64'),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : null };
    },
    /** URL with extra query parameters, e.g. urlWith({ heartbeat: 1 }). */
    urlWith(params) {
      const u = new URL(api.url);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
      return u.toString();
    },
    /**
     * Open a connection that is closed automatically after the test. Server
     * initiated connection errors are recorded on `conn.recordedErrors`
     * instead of crashing the process.
     */
    async connect(target = api.url, options) {
      const conn = await amqp.connect(target, options);
      conn.recordedErrors = [];
      conn.on('error', (err) => conn.recordedErrors.push(err));
      opened.push(conn);
      return conn;
    },
    /** Open a (watched) channel; pass { confirm: true } for a ConfirmChannel. */
    async channel(conn, { confirm = false } = {}) {
      const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
      return watchChannel(ch);
    },
    /** Connection plus one channel, the common case. */
    async connectWithChannel(options = {}) {
      const conn = await api.connect();
      const ch = await api.channel(conn, options);
      return { conn, ch };
    },
  };
  return api;
}

async function closeQuietly(conn) {
  try {
    await conn.close();
  } catch {
    // Already closed by the server or by the test itself.
  }
}

/**
 * Collect what a consumer callback is given (messages, or null for a server
 * cancel). `waitFor(n)` resolves once at least n deliveries arrived;
 * `cancelled()` resolves on basic.cancel from the server.
 */
function collector() {
  const messages = [];
  const waiters = [];
  const cancel = deferred();
  let cancelledFlag = false;
  const onMessage = (msg) => {
    if (msg === null) {
      cancelledFlag = true;
      cancel.resolve();
      return;
    }
    messages.push(msg);
    for (const w of waiters.slice()) {
      if (messages.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(messages);
      }
    }
  };
  const waitFor = (n, timeoutMs = 5000) => {
    if (messages.length >= n) return Promise.resolve(messages);
    const d = deferred();
    waiters.push({ n, resolve: d.resolve });
    return withTimeout(d.promise, timeoutMs, `${n} deliveries (got ${messages.length})`);
  };
  return {
    messages,
    onMessage,
    waitFor,
    cancelled: (timeoutMs = 5000) => withTimeout(cancel.promise, timeoutMs, 'a basic.cancel from the server'),
    get wasCancelled() {
      return cancelledFlag;
    },
  };
}

module.exports = {
  collector,
  REPO_ROOT,
  warrenBinary,
  usingExternalBroker,
  spawnWarren,
  useBroker,
  uniqueName,
  eventually,
  getMessage,
  deferred,
  withTimeout,
  watchChannel,
  channelClosed,
  channelErrors,
  closeQuietly,
};
