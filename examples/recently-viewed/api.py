#!/usr/bin/env python3
"""The read side of the recently-viewed example: a customer's shelf as JSON (standard library only).

    GET /shelf/CUSTOMER                      the shelf as the `shelf` function last wrote it
    GET /shelf/CUSTOMER?after=P:O            ... once the function has processed clicks offset O of
                                             partition P (the receipt of the customer's last click):
                                             read-your-writes
    GET /healthz

Answers {"customer", "products": [newest first], "as_of": {"topic", "partition", "offset"} | null}.
With `after`, the API first asks factlog's wait endpoint
(GET /v1/groups/shelf/wait?topic=clicks&partition=P&offset=O) whether the function's consumer group has
committed past that offset, which it does only after the click is in the database. A click the
function has not reached within `timeout_ms` (default 5000) gets 504 with a JSON body saying so.

Usage: api.py --db PATH [--listen 127.0.0.1:8081] [--factlog http://127.0.0.1:8080]
              [--group shelf] [--topic clicks]
"""
import argparse
import http.client
import http.server
import json
import re
import sqlite3
import threading
import urllib.parse

ROUTE = re.compile(r"^/shelf/([^/?]{1,256})$")


class Api(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, opts):
        super().__init__(addr, Handler)
        self.opts = opts
        u = urllib.parse.urlsplit(opts.factlog)
        self.factlog_host, self.factlog_port = u.hostname, u.port or 80
        self.local = threading.local()

    def db(self):
        """One read-only connection per thread (sqlite3 connections are not shared across threads)."""
        db = getattr(self.local, "db", None)
        if db is None:
            db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(self.opts.db), uri=True, timeout=10)
            self.local.db = db
        return db

    def wait(self, partition, offset, timeout_ms):
        """factlog's answer to "has the group processed this click?": (HTTP status, JSON body)."""
        q = urllib.parse.urlencode({"topic": self.opts.topic, "partition": partition, "offset": offset,
                                    "timeout_ms": timeout_ms})
        conn = getattr(self.local, "factlog", None)
        for attempt in (1, 2):  # a kept-alive connection the server closed in the meantime: once more
            if conn is None:
                conn = http.client.HTTPConnection(self.factlog_host, self.factlog_port, timeout=timeout_ms / 1000 + 5)
                self.local.factlog = conn
            try:
                conn.request("GET", "/v1/groups/%s/wait?%s" % (urllib.parse.quote(self.opts.group), q))
                r = conn.getresponse()
                return r.status, json.loads(r.read() or b"{}")
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = self.local.factlog = None
                if attempt == 2:
                    raise


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms delayed ACKs

    def log_message(self, fmt, *args):  # quiet: one line per request would drown the benchmark
        pass

    def answer(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/healthz":
            return self.answer(200, {"status": "ok"})
        m = ROUTE.match(u.path)
        if not m:
            return self.answer(404, {"error": "unknown route %s; try GET /shelf/CUSTOMER[?after=P:O]" % u.path})
        customer = urllib.parse.unquote(m.group(1))
        q = urllib.parse.parse_qs(u.query)
        try:
            timeout_ms = int(q.get("timeout_ms", ["5000"])[0])
            if not 0 <= timeout_ms <= 300000:
                raise ValueError
        except ValueError:
            return self.answer(400, {"error": "timeout_ms must be an integer from 0 to 300000"})
        if "after" in q:
            am = re.match(r"^(\d{1,9}):(\d{1,19})$", q["after"][0])
            if not am:
                return self.answer(400, {"error": "after must be PARTITION:OFFSET, the receipt of a click"})
            try:
                status, body = self.server.wait(int(am.group(1)), int(am.group(2)), timeout_ms)
            except (OSError, http.client.HTTPException, ValueError) as e:
                return self.answer(503, {"error": "factlog is not reachable at %s: %s" % (self.server.opts.factlog, e)})
            if status == 408:
                return self.answer(504, {"error": "the %s function has not processed click %s within %d ms"
                                         % (self.server.opts.group, q["after"][0], timeout_ms),
                                         "committed": body.get("committed")})
            if status != 200:
                return self.answer(502, {"error": "factlog's wait endpoint answered %d" % status, "factlog": body})
        try:
            row = self.server.db().execute('SELECT products, topic, partition, "offset" FROM shelf WHERE customer = ?',
                                           (customer,)).fetchone()
        except sqlite3.OperationalError as e:  # e.g. the function has not created the database yet
            if "no such table" not in str(e) and "unable to open" not in str(e):
                return self.answer(503, {"error": "the shelf database: %s" % e})
            row = None
        if row is None:
            return self.answer(200, {"customer": customer, "products": [], "as_of": None})
        return self.answer(200, {"customer": customer, "products": json.loads(row[0]),
                                 "as_of": {"topic": row[1], "partition": row[2], "offset": row[3]}})


def main():
    ap = argparse.ArgumentParser(description="The recently-viewed shelf API")
    ap.add_argument("--db", required=True, help="the shelf function's SQLite database")
    ap.add_argument("--listen", default="127.0.0.1:8081")
    ap.add_argument("--factlog", default="http://127.0.0.1:8080", help="factlog's HTTP address")
    ap.add_argument("--group", default="shelf", help="the function's consumer group (its name)")
    ap.add_argument("--topic", default="clicks")
    opts = ap.parse_args()
    host, _, port = opts.listen.rpartition(":")
    srv = Api((host, int(port)), opts)
    print("shelf API on http://%s:%d" % srv.server_address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
