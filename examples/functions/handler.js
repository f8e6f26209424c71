#!/usr/bin/env node
// A factlog function in Node.js (no npm packages): counts events per partition key.
//
// The protocol (docs/functions.md): factlog writes one request line per batch on stdin,
//   {"id": "...", "function": "...", "attempt": 1, "events": [CloudEvent, ...]}
// and reads one reply line on stdout,
//   {"id": "<the same id>", "status": "ok", "emit": [{"topic": ..., "cause": INDEX, ...}, ...]}
// stdout carries replies only; logs go to stderr (console.error), which factlog appends to the
// function's log (`factlog functions logs NAME`).
//
// For every event this worker adds one to the count of its partitionkey and emits a com.example.counted
// event with the running count to $COUNTS_TOPIC (default "counts"), keyed like its cause. The counts live
// in this process's memory, so the app file runs exactly one worker (scale: {min: 1, max: 1}).
'use strict';
const readline = require('readline');

const TOPIC = process.env.COUNTS_TOPIC || 'counts';
const NAME = process.env.FACTLOG_FUNCTION || 'handler.js';
let counts = new Map();

// The reply to one request. The counts change only when the whole batch succeeded.
function handle(req) {
  const next = new Map(counts);
  const emit = req.events.map((ev, i) => {
    const key = ev.partitionkey; // the Kafka record key; undefined when the record has none
    const keyed = key !== undefined && key !== null;
    const name = keyed ? key : '(none)';
    const count = (next.get(name) || 0) + 1;
    next.set(name, count);
    const out = { topic: TOPIC, cause: i, type: 'com.example.counted', data: { key: name, count } };
    if (keyed) out.partitionkey = key; // same key, so one key's counts stay in order on one partition
    return out;
  });
  counts = next;
  return { id: req.id, status: 'ok', emit };
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on('line', (line) => {
  const req = JSON.parse(line);
  let reply;
  try {
    reply = handle(req);
  } catch (e) { // the whole batch failed: factlog retries it (or bisects it)
    reply = { id: req.id, status: 'error', error: String(e && e.stack ? e.stack.split('\n')[0] : e) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n'); // synchronous on a pipe
  if (reply.status === 'ok') {
    console.error(`${NAME}: ${req.id} attempt ${req.attempt}: ${reply.emit.length} event(s), ` +
      `${counts.size} key(s) counted`);
  } else {
    console.error(`${NAME}: ${req.id} attempt ${req.attempt} failed: ${reply.error}`);
  }
});
rl.on('close', () => process.exit(0));
