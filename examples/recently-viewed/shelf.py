#!/usr/bin/env python3
"""The `shelf` function of the recently-viewed example: keeps each customer's last ten distinct viewed
products, newest first, in SQLite.

factlog invokes it with batches of click events (docs/functions.md has the protocol): one JSON request
line on stdin per batch, one reply line on stdout. A click is a CloudEvent whose data is
{"customer": ID, "product": ID}; the customer id is also the partition key, so one customer's clicks
are on one partition, in order, and ordering `key` hands them to us one batch at a time.

Delivery is at least once: after a crash or restart factlog hands us again clicks we may already have
applied. Each shelf row therefore remembers the position (partition, offset) of the last click it
applied, and a click at or below it is skipped. Applying a batch and recording the position happen in one
SQLite transaction, synchronous=FULL, so the shelf is exactly the fold of the clicks up to that position,
also after kill -9 or a power cut, and a reader can tell how far the shelf is.

The database is $SHELF_DB, or shelf.db in $FACTLOG_STATE_DIR (the directory factlog gives each
function, under its data directory). Several workers may run at once: they share the file, and SQLite
serializes their transactions (WAL mode, busy timeout).
"""
import json
import os
import sqlite3
import sys
import time

SHELF_SIZE = 10
NAME = os.environ.get("FACTLOG_FUNCTION", "shelf")

SCHEMA = """
CREATE TABLE IF NOT EXISTS shelf (
    customer   TEXT PRIMARY KEY,
    products   TEXT NOT NULL,       -- JSON array, newest first, at most 10, distinct
    topic      TEXT NOT NULL,       -- where the last applied click is
    partition  INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""


def db_path():
    if os.environ.get("SHELF_DB"):
        return os.environ["SHELF_DB"]
    return os.path.join(os.environ.get("FACTLOG_STATE_DIR", "."), "shelf.db")


def open_db(path):
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def push(products, product):
    """The shelf after viewing `product`: it moves to the front, the shelf keeps ten."""
    out = [product] + [p for p in products if p != product]
    return out[:SHELF_SIZE]


def click_of(ev):
    """(customer, product) of a click event, or a reason why it is not one."""
    data = ev.get("data")
    if not isinstance(data, dict):
        return None, "data is not a JSON object"
    customer, product = data.get("customer", ev.get("partitionkey")), data.get("product")
    if not isinstance(customer, str) or not customer or not isinstance(product, str) or not product:
        return None, "a click needs data.customer and data.product (strings)"
    return (customer, product), None


def handle(db, req):
    events = req["events"]
    failed, errors, clicks = [], [], []
    for i, ev in enumerate(events):
        c, why = click_of(ev)
        if c is None:
            failed.append(i)  # a poison click: factlog retries it, then dead-letters it
            errors.append("event %d (%s/%s): %s" % (i, ev.get("partition"), ev.get("offset"), why))
        else:
            clicks.append((c[0], c[1], ev["topic"], ev["partition"], ev["offset"]))
    now = int(time.time() * 1000)
    db.execute("BEGIN IMMEDIATE")
    try:
        shelves = {}
        skipped = 0
        for customer, product, topic, partition, offset in clicks:
            if customer not in shelves:
                row = db.execute('SELECT products, topic, partition, "offset" FROM shelf WHERE customer = ?',
                                 (customer,)).fetchone()
                shelves[customer] = [json.loads(row[0]), row[1], row[2], row[3], False] if row else \
                    [[], None, None, -1, False]
            s = shelves[customer]
            if s[1] == topic and s[2] == partition and offset <= s[3]:
                skipped += 1  # applied before (a redelivery)
                continue
            s[0] = push(s[0], product)
            s[1], s[2], s[3], s[4] = topic, partition, offset, True
        db.executemany('INSERT OR REPLACE INTO shelf (customer, products, topic, partition, "offset", updated_ms) '
                       'VALUES (?, ?, ?, ?, ?, ?)',
                       [(c, json.dumps(s[0]), s[1], s[2], s[3], now) for c, s in shelves.items() if s[4]])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    reply = {"id": req["id"], "status": "ok"}
    if skipped:
        sys.stderr.write("%s: %s: %d click(s) applied before, skipped\n" % (NAME, req["id"], skipped))
    if failed:
        reply["failed"] = failed
        reply["error"] = "; ".join(errors[:3])
    return reply


def main():
    db = open_db(db_path())
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = handle(db, req)
        except Exception as e:  # e.g. the disk is full: the whole batch fails and is retried
            reply = {"id": req["id"], "status": "error", "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if reply.get("error"):
            sys.stderr.write("%s: %s attempt %d: %s\n" % (NAME, req["id"], req["attempt"], reply["error"]))
            sys.stderr.flush()


if __name__ == "__main__":
    main()
