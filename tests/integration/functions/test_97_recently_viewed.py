"""examples/recently-viewed end to end: the example's own app file, function (shelf.py), read API (api.py)
and click generator (clicks.py), against `factlog serve`.

RV_CLICKS clicks (200,000 by default) go in over HTTP and the Kafka protocol at once, in two halves with a
kill -9 of factlog between them while the function is still working through the first half. Afterwards
every customer's shelf equals the one computed here from the click list (each click's receipt gives its
place in the customer's order), and every click the generator read back through the API with its
receipt (read-your-writes) came back with a shelf that includes it and equals the fold of the customer's
clicks up to the position the API reported. A click that is not a click lands in the dead-letter topic.
"""
import json
import os
import sqlite3
import subprocess
import urllib.request

from conftest import free_port, port_open, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "recently-viewed")
PY = "/usr/bin/python3"
CLICKS = int(os.environ.get("RV_CLICKS", "200000"))


def example_app():
    with open(os.path.join(EXAMPLE, "factlog.yml")) as f:
        text = f.read()
    assert text.count("run: python3 shelf.py") == 1, "the example no longer runs `python3 shelf.py`"
    return text.replace("run: python3 shelf.py", "run: %s %s/shelf.py" % (PY, EXAMPLE))


def get_json(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def fold(products):
    """The shelf after viewing `products` in order: newest first, ten distinct."""
    shelf = []
    for p in products:
        shelf = ([p] + [x for x in shelf if x != p])[:10]
    return shelf


def read_clicks(log):
    """The generator's log: (clicks, checks)."""
    clicks, checks = [], []
    with open(log) as f:
        for line in f:
            rec = json.loads(line)
            (checks if "check" in rec else clicks).append(rec)
    return clicks, checks


def check_shelves(lg, db, clicks, extra=()):
    """Waits until the function processed every click (and the extra (partition, offset)s), then compares
    every customer's shelf in the database with the fold of the customer's clicks in ledger order."""
    last = {}
    for c in clicks:
        last[c["part"]] = max(last.get(c["part"], -1), c["off"])
    for p, off in extra:
        last[p] = max(last.get(p, -1), off)
    for p, off in sorted(last.items()):
        status = lg.server.get("/v1/groups/shelf/wait?topic=clicks&partition=%d&offset=%d&timeout_ms=120000"
                               % (p, off), timeout=130).status
        assert status == 200, "partition %d offset %d not processed\n%s" % (p, off, lg.log_tail())
    by_customer = {}
    for c in clicks:
        by_customer.setdefault(c["c"], []).append((c["part"], c["off"], c["p"]))
    for cust, cs in by_customer.items():
        assert len({p for p, _, _ in cs}) == 1, "customer %s on several partitions: %s" % (cust, cs[:5])
        cs.sort()
    want = {cust: fold([p for _, _, p in cs]) for cust, cs in by_customer.items()}
    conn = sqlite3.connect(db)
    rows = {c: (json.loads(p), part, off) for c, p, part, off in
            conn.execute('SELECT customer, products, partition, "offset" FROM shelf')}
    conn.close()
    assert set(rows) == set(want), "customers: %d in the database, %d clicked" % (len(rows), len(want))
    wrong = [c for c in want if rows[c][0] != want[c] or rows[c][2] != by_customer[c][-1][1]]
    assert not wrong, "%d shelves differ, e.g. %s: %s, want %s" % (
        len(wrong), wrong[0], rows[wrong[0]], want[wrong[0]])
    return want, by_customer


def run_clicks(lg, api, log, count, seed, check_every):
    argv = [PY, os.path.join(EXAMPLE, "clicks.py"), "--http", lg.server.base, "--bootstrap", lg.bootstrap,
            "--api", api, "--protocol", "both", "--count", str(count), "--profile", "0:0", "--chunk", "500",
            "--customers", "5000", "--check-every", str(check_every), "--check-timeout-ms", "60000",
            "--seed", str(seed), "--log", log]
    r = subprocess.run(argv, capture_output=True, timeout=600)
    assert r.returncode == 0, "clicks.py exited %d\n%s\n%s\n%s" % (
        r.returncode, r.stdout.decode()[-3000:], r.stderr.decode()[-3000:], lg.log_tail())
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_recently_viewed(factlog_ledger, tmp_path):
    lg = factlog_ledger
    lg.start(example_app(), {"clicks": 6, "clicks-dlq": 1})
    db = os.path.join(lg.server.data_dir, "functions", "shelf", "shelf.db")
    port = free_port()
    api_log = open(os.path.join(lg.root, "api.log"), "wb")
    api = subprocess.Popen([PY, os.path.join(EXAMPLE, "api.py"), "--db", db, "--listen", "127.0.0.1:%d" % port,
                            "--factlog", lg.server.base], stdout=api_log, stderr=api_log)
    api_log.close()
    base = "http://127.0.0.1:%d" % port
    try:
        wait_until(lambda: port_open(port), 20, "the shelf API on %d" % port)
        assert get_json(base + "/shelf/nobody") == (200, {"customer": "nobody", "products": [], "as_of": None})
        status, body = get_json(base + "/shelf/nobody?after=zz")
        assert status == 400 and "PARTITION:OFFSET" in body["error"]

        log = str(tmp_path / "clicks.log")
        half = CLICKS // 2
        r1 = run_clicks(lg, base, log, half, 1, 0)  # no read-backs: it ends as soon as all are acknowledged
        assert r1["acked"]["http"] > half // 4 and r1["acked"]["kafka"] > half // 4, r1
        # kill -9 while the function is (most likely) still behind: it resumes at its committed position
        # and sees some clicks again, which the shelf must not apply twice
        lag_at_kill = lg.server.get("/v1/functions/shelf").json()["lag"]
        lg.kill_functions()
        lg.start_functions()
        lg.wait_topics({"clicks": 6})
        # after the restart the function catches up, and every shelf so far is right
        check_shelves(lg, db, read_clicks(log)[0])
        r2 = run_clicks(lg, base, log, CLICKS - half, 2, 125)

        # a click without a product: retried, then dead-lettered; nothing else changes
        resp = lg.server.post_structured("clicks", {"specversion": "1.0", "id": "bad-1", "source": "/test",
                                                    "type": "com.example.product.viewed", "partitionkey": "c000001",
                                                    "datacontenttype": "application/json",
                                                    "data": {"customer": "c000001"}})
        assert resp.status == 200, resp
        bad = resp.json()

        clicks, checks = read_clicks(log)
        assert len(clicks) == CLICKS, "%d clicks logged of %d" % (len(clicks), CLICKS)
        assert len(checks) == r2["checks"] == (CLICKS - half) // 125
        want, by_customer = check_shelves(lg, db, clicks, extra=[(bad["partition"], bad["offset"])])
        # the API serves the same (a sample; the database holds all)
        for cust in sorted(want)[::50]:
            status, body = get_json(base + "/shelf/%s" % cust)
            assert status == 200 and body["products"] == want[cust], (cust, body, want[cust])

        # read-your-writes: each check's answer includes its click and is exactly the shelf as of the
        # position it reports (the fold of the customer's clicks up to that offset)
        for ch in checks:
            assert ch["status"] == 200, ch
            a, (p, o) = ch["answer"]["as_of"], ch["after"]
            assert a["partition"] == p and a["offset"] >= o, ch
            cs = by_customer[ch["check"]]
            assert (p, o, ch["p"]) in cs, "the checked click is not in the log: %s" % ch
            assert ch["answer"]["products"] == fold([x for _, off, x in cs if off <= a["offset"]]), ch
            assert ch["p"] in ch["answer"]["products"] or \
                len({x for _, off, x in cs if o < off <= a["offset"]}) >= 10, ch

        # the poison click went to the dead-letter topic with the reason; c000001's shelf is untouched
        dl = lg.consume_all("clicks-dlq", 1, timeout=30)
        assert len(dl) == 1, lg.log_tail()
        h = {k: v.decode() for k, v in dl[0].headers()}
        assert h["factlog-function"] == "shelf" and "data.product" in h["factlog-error"], h
        assert (int(h["factlog-partition"]), int(h["factlog-offset"])) == (bad["partition"], bad["offset"])
        if "c000001" in want:
            assert get_json(base + "/shelf/c000001")[1]["products"] == want["c000001"]
        fn = lg.server.get("/v1/functions/shelf").json()
        assert fn["stats"]["dead_lettered"] == 1 and fn["lag"] == 0, fn
        with open(os.path.join(lg.server.data_dir, "functions", "shelf.log")) as f:
            skipped = sum(int(line.split(": ")[2].split()[0]) for line in f if "applied before, skipped" in line)
        print("recently-viewed: %d clicks, %d customers, %d checks; lag at the kill %s, %d redelivered clicks "
              "skipped; generator %s, %s"
              % (len(clicks), len(want), len(checks), lag_at_kill, skipped, r1, r2.get("click_to_shelf_ms")))
    finally:
        api.terminate()
        try:
            api.wait(timeout=10)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait(timeout=10)
