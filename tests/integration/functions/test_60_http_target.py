"""An HTTP target gets CloudEvents batches; a 5xx is retried; a partial failure retries only that event."""
import http.server
import json
import threading

from conftest import free_port, wait_until

APP = """
streams:
  orders: {{ partitions: 2 }}
functions:
  hook:
    http: http://127.0.0.1:{port}/hook
    timeout: 5s
    triggers:
      - stream: orders
        start: earliest
        ordering: partition
        batch_size: 10
        retry: {{ attempts: 5, base: 10ms, max: 50ms }}
"""


class Target(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()
    batches = []
    statuses = []
    failed_once = set()
    first = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        events = json.loads(body)
        cls = Target
        with cls.lock:
            cls.batches.append((self.headers["Content-Type"], self.headers.get("factlog-invocation-id"), events))
            if cls.first:  # the first request fails as a whole
                cls.first = False
                self.send_response(503)
                self.end_headers()
                self.wfile.write(b"try later")
                cls.statuses.append(503)
                return
            failed = []
            for i, ev in enumerate(events):
                if ev["data"].get("fail_once") and ev["id"] not in cls.failed_once:
                    cls.failed_once.add(ev["id"])
                    failed.append(i)
            cls.statuses.append(200)
        reply = json.dumps({"status": "ok", "failed": failed} if failed else {"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *a):
        pass


def test_http_target(ledger):
    Target.batches, Target.statuses, Target.failed_once, Target.first = [], [], set(), True
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Target)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        lg = ledger
        lg.start(APP.format(port=port), {"orders": 2})
        n = 100
        recs = [("k%d" % (i % 5), {"i": i, "fail_once": i in (17, 64)},
                 [("ce_specversion", b"1.0"), ("ce_id", b"e%d" % i), ("ce_type", b"t"), ("ce_source", b"/s")])
                for i in range(n)]
        lg.produce("orders", recs)

        def delivered():
            with Target.lock:
                ok_ids = set()
                for (ctype, inv, evs), st in zip(Target.batches, Target.statuses):
                    if st == 200:
                        ok_ids |= {e["data"]["i"] for e in evs if e["data"]["i"] not in (17, 64)}
                return len(ok_ids) == n - 2 and len(Target.failed_once) == 2 and any(
                    e["data"]["i"] == 17 for _, _, evs in Target.batches[-20:] for e in evs)
        wait_until(delivered, 60, "every event delivered", interval=0.2)
        with Target.lock:
            assert all(ct == "application/cloudevents-batch+json" for ct, _, _ in Target.batches)
            assert all(inv and inv.startswith("hook-") for _, inv, _ in Target.batches)
            assert 503 in Target.statuses
            assert max(len(evs) for _, _, evs in Target.batches) <= 10
            # the events listed as failed were delivered again, alone or in a later batch
            counts = {}
            for _, _, evs in Target.batches:
                for e in evs:
                    counts[e["data"]["i"]] = counts.get(e["data"]["i"], 0) + 1
            assert counts[17] >= 2 and counts[64] >= 2
        if lg.kind == "factlog":
            assert lg.describe("hook")["stats"]["retries"] >= 2
    finally:
        srv.shutdown()
        srv.server_close()
