"""A downstream that is down for a while (FACTLOG_DOWNSTREAM_DOWN_S seconds, 8 by default; `make faults`
uses 60): the function's HTTP target answers 503 until it recovers. Nothing is lost or skipped, nothing is
dead-lettered, and each partition's events are first delivered in offset order."""
import http.server
import json
import os
import threading
import time

from conftest import free_port, wait_until

DOWN_S = float(os.environ.get("FACTLOG_DOWNSTREAM_DOWN_S", "8"))

APP = """
streams:
  orders: {{ partitions: 2 }}
  orders-dlq: {{ partitions: 1 }}
functions:
  sink:
    http: http://127.0.0.1:{port}/sink
    timeout: 5s
    triggers:
      - stream: orders
        start: earliest
        ordering: partition
        batch_size: 20
        retry: {{ attempts: 1000, base: 50ms, max: 1s }}
        on_failure: orders-dlq
"""


class Sink(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()
    up_at = 0.0
    failures = 0
    delivered = []  # (partition, offset) in delivery order

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Sink.lock:
            if time.monotonic() < Sink.up_at:
                Sink.failures += 1
                self.send_response(503)
                self.end_headers()
                return
            Sink.delivered.extend((e["partition"], e["offset"]) for e in json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_downstream_down_then_back(factlog_ledger):
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        Sink.up_at = time.monotonic() + DOWN_S
        lg = factlog_ledger
        lg.start(APP.format(port=port), {"orders": 2, "orders-dlq": 1})
        receipts = lg.produce("orders", [("k%d" % (i % 9), {"i": i}, None) for i in range(200)])
        want = {(p, o) for _, p, o in receipts}
        wait_until(lambda: want <= set(Sink.delivered), DOWN_S + 60, "every event delivered", interval=0.2)
        with Sink.lock:
            assert Sink.failures >= 2, "the downstream was really down"
            first = {}
            for p, o in Sink.delivered:
                first.setdefault(p, [])
                if o not in first[p]:
                    first[p].append(o)
        for p, offs in first.items():
            assert offs == sorted(offs), "partition %d delivered out of order" % p
        assert lg.consume_all("orders-dlq", 1, timeout=2) == []
        ends = {}
        for _, p, o in receipts:
            ends[p] = max(ends.get(p, -1), o + 1)
        wait_until(lambda: lg.committed("sink", "orders") == ends, 30, "commits")
    finally:
        srv.shutdown()
        srv.server_close()
