// Preloaded (node --require) into amqplib's own test run: the tests listed for "amqplib" in
// exclusions.txt are reported as skipped with their reason ("# SKIP excluded: REASON" in TAP)
// instead of being run. A test is named by its describe() path and its own name, joined by " > ",
// e.g. "Callback API > connect > at all".
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const nodeTest = require('node:test');

const reasons = new Map();
for (const line of fs.readFileSync(path.join(__dirname, 'exclusions.txt'), 'utf8').split('\n')) {
  const parts = line.split('|').map((s) => s.trim());
  if (parts.length >= 3 && parts[0] === 'amqplib') reasons.set(parts[1], parts.slice(2).join(' | '));
}
const stack = [];

function split(args) {
  // (name, fn) | (name, options, fn) | (name, options) | (fn)
  const [name, a, b] = args;
  if (typeof a === 'function') return { name, options: {}, fn: a };
  return { name, options: a || {}, fn: b };
}

const describe = nodeTest.describe;
const it = nodeTest.it;

function wrappedDescribe(...args) {
  const { name, options, fn } = split(args);
  if (typeof fn !== 'function') return describe(...args);
  return describe(name, options, function (...inner) {
    stack.push(name);
    try {
      return fn.apply(this, inner);
    } finally {
      stack.pop();
    }
  });
}
function wrappedIt(...args) {
  const { name, options, fn } = split(args);
  const full = [...stack, name].join(' > ');
  if (reasons.has(full)) {
    return it(name, { ...options, skip: `excluded: ${reasons.get(full)}` }, fn);
  }
  return it(name, options, fn);
}
// describe.skip, it.only and the like keep working (unfiltered).
Object.assign(wrappedDescribe, describe);
Object.assign(wrappedIt, it);
for (const key of ['describe', 'suite']) nodeTest[key] = wrappedDescribe;
for (const key of ['it', 'test']) nodeTest[key] = wrappedIt;
