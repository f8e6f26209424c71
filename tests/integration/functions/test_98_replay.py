"""Replay: a range of history through a function (`factlog replay`, POST /v1/functions/NAME/replay), without
moving its live position; `then live` hands the live trigger over at the boundary; an interrupted replay resumes.

The handler writes one line per processed event with its invocation id FUNCTION-TRIGGER-N: replay invocations
have TRIGGER 1000 + the live trigger's index, so a line tells who processed the event.
"""
import collections
import json
import os
import subprocess
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import factlog_bin, handler_cmd, read_out, wait_until

STREAMS = """
streams:
  orders: { partitions: 3 }
"""

APP = STREAMS.replace("{", "{{").replace("}", "}}") + """
functions:
  rep:
    run: {run}
    scale: {{ max: {max_workers} }}
    triggers:
      - stream: orders
        start: latest
        ordering: {ordering}
        concurrency: 2
        batch_size: {batch}
"""


def is_replay(row):
    return row["inv"].split("-")[-2] == "1000"


def deploy(lg, yaml):
    """Writes the app file (a restart runs it too) and deploys it to the running server."""
    with open(lg.app_path, "w") as f:
        f.write(yaml)
    r = lg.server.request("POST", "/v1/app?path=" + lg.app_path, yaml, {"Content-Type": "application/yaml"})
    assert r.status == 200, r


def wait_assigned(lg, name, partitions=3):
    wait_until(lambda: len(lg.describe(name)["triggers"][0]["partitions"]) == partitions, 30,
               "the live trigger assigned", interval=0.1)


def post_replay(lg, name, body):
    return lg.server.request("POST", "/v1/functions/%s/replay" % name, body, {"Content-Type": "application/json"})


def wait_replay(lg, name, timeout=120, states=("done",)):
    def ended():
        r = lg.describe(name).get("replay")
        return r is not None and r["state"] in ("done", "failed", "cancelled")
    wait_until(ended, timeout, "the replay ended", interval=0.2)
    r = lg.describe(name)["replay"]
    assert r["state"] in states, r
    return r


def run_cli(*args, timeout=120):
    p = subprocess.run([factlog_bin()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_replay_range_once_in_key_order(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(STREAMS, {"orders": 3})
    n = 2000
    history = lg.produce("orders", [("k%d" % (i % 40), {"i": i}, None) for i in range(n)])
    deploy(lg, APP.format(run=handler_cmd(out), max_workers=4, batch=20, ordering="key"))
    wait_assigned(lg, "rep")
    # `latest` is resolved when the trigger first fetches: produce until every partition processed something
    live = []
    deadline = time.monotonic() + 30
    while len({r["partition"] for r in read_out(out)}) < 3:
        assert time.monotonic() < deadline, "the live trigger processed nothing"
        live += lg.produce("orders", [("k%d" % (i % 40), {"i": n + len(live) + i}, None) for i in range(6)])
        time.sleep(0.2)
    live += lg.produce("orders", [("k%d" % (i % 40), {"i": n + len(live) + i}, None) for i in range(30)])
    hwm = {p: max(o for _, q, o in history + live if q == p) + 1 for p in range(3)}
    wait_until(lambda: lg.committed("rep", "orders") == hwm, 30, "the live group committed", interval=0.2)
    nlive = len(read_out(out))

    rc, text, err = run_cli("replay", "rep", "--from", "earliest", "--url", lg.server.base)
    assert rc == 0, (text, err)
    assert "replay of rep done: %d events" % (n + len(live)) in text, text
    assert all(line.startswith("replay ") for line in text.splitlines()), text

    rows = read_out(out)
    replayed = [r for r in rows if is_replay(r)]
    assert sorted((r["partition"], r["offset"]) for r in replayed) == \
        sorted((p, o) for _, p, o in history + live), "every event of the range exactly once"
    # an independent computation: each key's values in offset order, straight from what was produced
    want = {}
    for i, (key, p, o) in enumerate(history + live):
        want.setdefault(key.decode(), []).append(i)
    got = {}
    for r in replayed:
        got.setdefault(r["key"], []).append(r["data"]["i"])
    assert got == want, "per key: the same events in the same order"
    assert sum(1 for r in rows if not is_replay(r)) == nlive, "the live trigger processed nothing again"
    assert lg.committed("rep", "orders") == hwm, "the live group's position did not move"
    assert lg.committed("rep.replay", "orders") == hwm

    rc, text, err = run_cli("functions", "describe", "rep", "--url", lg.server.base)
    assert rc == 0, err
    rp = json.loads(text)["replay"]
    assert rp["state"] == "done" and rp["events_total"] == rp["events_done"] == n + len(live)
    assert rp["then"] is None and rp["eta_seconds"] == 0 and rp["finished"] is not None
    assert {x["partition"]: (x["from"], x["to"]) for x in rp["partitions"]} == {p: (0, hwm[p]) for p in range(3)}
    assert json.loads(text)["state"] == "running"


class BackgroundProducer:
    """Produces keyed records until stopped; remembers every receipt."""

    def __init__(self, bootstrap):
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                           "partitioner": "murmur2_random", "enable.idempotence": True})
        self.receipts = []
        self.stop = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            def cb(err, msg):
                if err is not None:
                    self.errors.append(err)
                else:
                    self.receipts.append((msg.partition(), msg.offset()))
            self.p.produce("orders", key=("k%d" % (i % 25)).encode(), value=json.dumps({"i": i}).encode(),
                           headers=[("content-type", b"application/json")], on_delivery=cb)
            i += 1
            self.p.poll(0)
            time.sleep(0.002)
        assert self.p.flush(30) == 0

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)


def finish_then_live(lg, out, bp, rp):
    """After a `then live` replay ended with bp producing throughout: waits until every produced event was
    processed and checks the hand-over: the live trigger processed exactly the events at or past the
    boundary, once each, and its group committed the end. Returns (rows, receipts, boundary)."""
    assert not bp.errors, bp.errors
    receipts = set(bp.receipts)
    assert len(receipts) == len(bp.receipts)
    wait_until(lambda: {(r["partition"], r["offset"]) for r in read_out(out)} >= receipts, 60,
               "every event processed", interval=0.2)
    boundary = {x["partition"]: x["to"] for x in rp["partitions"]}
    rows = read_out(out)
    live_after = sorted((r["partition"], r["offset"]) for r in rows
                        if not is_replay(r) and r["offset"] >= boundary[r["partition"]])
    assert live_after == sorted((p, o) for p, o in receipts if o >= boundary[p]), \
        "the live trigger processed exactly the events at or past the boundary, once each"
    hwm = {p: max(o for q, o in receipts if q == p) + 1 for p in range(3)}
    wait_until(lambda: lg.committed("rep", "orders") == hwm, 30, "the live group committed everything",
               interval=0.2)
    d = lg.describe("rep")
    assert d["state"] == "running" and d["triggers"][0]["state"] == "running", d
    return rows, receipts, boundary


def start_then_live(lg, out, delay_ms, max_workers):
    """Starts the app (a live trigger on orders, key order) and returns a BackgroundProducer to enter; the
    caller posts the replay with post_then_live once live traffic flows."""
    lg.start(APP.format(run=handler_cmd(out, DELAY_MS=delay_ms), max_workers=max_workers, batch=10,
                        ordering="key"), {"orders": 3})
    wait_assigned(lg, "rep")
    return BackgroundProducer(lg.bootstrap)


def post_then_live(lg, out):
    """Once the live trigger processed 300 events: POST a replay from earliest, then live."""
    wait_until(lambda: len(read_out(out)) >= 300, 60, "live events processed", interval=0.1)
    r = post_replay(lg, "rep", {"from": "earliest", "then": "live"})
    assert r.status == 202, r
    assert r.json()["then"] == "live"


def test_replay_then_live_with_producer_running(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    with start_then_live(lg, out, delay_ms=1, max_workers=4) as bp:
        post_then_live(lg, out)
        rp = wait_replay(lg, "rep")
        n_at_done = len(bp.receipts)
        wait_until(lambda: len(bp.receipts) >= n_at_done + 300, 60, "more produced after the hand-over",
                   interval=0.1)
    rows, receipts, boundary = finish_then_live(lg, out, bp, rp)
    assert all(x["from"] == 0 for x in rp["partitions"])
    replayed = sorted((r["partition"], r["offset"]) for r in rows if is_replay(r))
    assert replayed == sorted((p, o) for p, o in receipts if o < boundary[p]), \
        "the replay processed exactly the events below the boundary, once each"
    live_before = [(r["partition"], r["offset"]) for r in rows
                   if not is_replay(r) and r["offset"] < boundary[r["partition"]]]
    assert len(live_before) == len(set(live_before)), "before the replay, live processed each event once"


def interrupt(lg, how):
    """Stops the server mid-replay: kill -9, or SIGTERM (the replay stops with its function and commits)."""
    if how == "kill9":
        lg.server.kill9()
    else:
        lg.server.stop()
    time.sleep(0.5)  # workers orphaned by kill -9 finish the line they are writing


def record_path(lg, name):
    return os.path.join(lg.root, "data", "functions", name + ".replay")


def start_server(lg, name="rep"):
    """Starts the server again and waits until it runs function name (its ports open a little earlier)."""
    lg.server.start()
    wait_until(lambda: lg.server.get("/v1/functions/" + name).status == 200, 10, "function %s started" % name,
               interval=0.05)


def history_then_function(lg, out, n):
    """n keyed events on orders, then function rep (start: latest), partition order: what was done is
    contiguous up to the batch in flight, so what an interruption makes it redo is bounded. Returns the
    receipts [(key, partition, offset)]."""
    lg.start(STREAMS, {"orders": 3})
    history = lg.produce("orders", [("k%d" % (i % 40), {"i": i}, None) for i in range(n)])
    deploy(lg, APP.format(run=handler_cmd(out, DELAY_MS=6), max_workers=2, batch=10, ordering="partition"))
    wait_assigned(lg, "rep")
    return history


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_replay_resumes_by_itself_after_a_restart(factlog_ledger, how):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    n = 3000
    history = history_then_function(lg, out, n)
    r = post_replay(lg, "rep", {"from": "earliest", "to": "latest"})
    assert r.status == 202, r
    first_id = r.json()["id"]
    assert os.path.exists(record_path(lg, "rep")), "the request is recorded before it is accepted"
    wait_until(lambda: len(read_out(out)) >= 400, 60, "part of the range replayed", interval=0.05)
    interrupt(lg, how)
    before = read_out(out)
    assert len(before) < n, "the interruption came too late to test anything"
    with open(record_path(lg, "rep")) as f:
        rec = json.load(f)
    assert rec["id"] == first_id and rec["to"] == "latest" and rec["then_live"] is False, rec
    assert sorted(tuple(x) for x in rec["ranges"]) == \
        sorted((p, 0, sum(1 for _, q, _ in history if q == p)) for p in range(3)), rec

    start_server(lg)  # no new request: the function's start resumes the recorded replay
    rp = wait_replay(lg, "rep")
    assert rp["id"] == first_id and rp["recovered"] is True and rp["to"] == "latest", rp
    assert not os.path.exists(record_path(lg, "rep")), "an ended replay leaves no record"
    rows = read_out(out)
    after = [(r["partition"], r["offset"]) for r in rows[len(before):]]
    assert all(is_replay(r) for r in rows), "the live trigger (start: latest) had nothing to do"
    assert {(r["partition"], r["offset"]) for r in rows} == {(p, o) for _, p, o in history}, \
        "every event of the range processed at least once"
    resumed = {x["partition"]: x for x in rp["partitions"]}
    assert any(x["resumed"] and x["from"] > 0 for x in resumed.values()), rp
    assert sorted(after) == sorted((p, o) for _, p, o in history if o >= resumed[p]["from"]), \
        "the resumed replay processed the rest of its range once, nothing below its resume point"
    again = set(after) & {(r["partition"], r["offset"]) for r in before}
    if how == "sigterm":
        assert not again, "a clean stop commits what was done: %d processed again" % len(again)
    else:
        # at most the batch in flight and the last one done but not yet committed, per partition
        assert len(again) <= 3 * 2 * 10, "only the last uncommitted batches are processed again: %d" % len(again)
    # an independent computation: each partition's values in offset order, from what was produced
    want = {}
    for i, (_, p, o) in enumerate(history):
        want.setdefault(p, []).append(i)
    got = {}
    for r in sorted(rows, key=lambda r: (r["partition"], r["offset"])):
        if not got.get(r["partition"]) or got[r["partition"]][-1] != r["data"]["i"]:
            got.setdefault(r["partition"], []).append(r["data"]["i"])
    assert got == want
    assert rp["events_total"] == sum(x["to"] - x["from"] for x in rp["partitions"])
    rc, text, err = run_cli("functions", "describe", "rep", "--url", lg.server.base)
    assert rc == 0, err
    d = json.loads(text)
    assert d["replay"]["recovered"] is True and d["replay"]["state"] == "done" and d["state"] == "running", d


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_replay_then_live_resumes_after_a_restart_with_a_producer_running(factlog_ledger, how):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    with start_then_live(lg, out, delay_ms=2, max_workers=2) as bp:
        post_then_live(lg, out)
        wait_until(lambda: sum(1 for r in read_out(out) if is_replay(r)) >= 150, 60, "part of the range replayed",
                   interval=0.05)
        interrupt(lg, how)
        with open(record_path(lg, "rep")) as f:
            rec = json.load(f)
        assert rec["then_live"] is True and "ranges" in rec, rec
        boundary = {p: end for p, _, end in rec["ranges"]}
        live_below = sorted((r["partition"], r["offset"]) for r in read_out(out)
                            if not is_replay(r) and r["offset"] < boundary[r["partition"]])
        nrows_before = len(read_out(out))
        start_server(lg)
        d = lg.describe("rep")
        assert d["triggers"][0]["state"] == "stopped for a replay", "the live trigger waits for the hand-over"
        rp = wait_replay(lg, "rep", timeout=180)
        assert rp["recovered"] is True and rp["then"] == "live", rp
        assert {x["partition"]: x["to"] for x in rp["partitions"]} == boundary, "the recorded boundary holds"
        n_at_done = len(bp.receipts)
        wait_until(lambda: len(bp.receipts) >= n_at_done + 300, 60, "more produced after the hand-over",
                   interval=0.1)
    rows, receipts, _ = finish_then_live(lg, out, bp, rp)
    assert not os.path.exists(record_path(lg, "rep"))
    replayed = [(r["partition"], r["offset"]) for r in rows if is_replay(r)]
    assert set(replayed) == {(p, o) for p, o in receipts if o < boundary[p]}, \
        "the replay processed every event below the boundary, and nothing past it"
    # after the restart the replay starts each partition where its group committed, and nothing below
    resumed_from = {x["partition"]: x["from"] for x in rp["partitions"]}
    again = [(r["partition"], r["offset"]) for r in rows[nrows_before:] if is_replay(r)]
    assert all(o >= resumed_from[p] for p, o in again), "nothing below the resume point processed again"
    assert sorted(again) == sorted((p, o) for p, o in receipts if resumed_from[p] <= o < boundary[p]), \
        "after the restart, the replay processed the rest of its range once"
    if how == "sigterm":
        assert len(replayed) == len(set(replayed)), "a clean stop: each replayed event once"
    else:  # done but not yet committed when killed (key order: events of other keys may run ahead)
        assert max(collections.Counter(replayed).values()) <= 2
    assert sorted((r["partition"], r["offset"]) for r in rows
                  if not is_replay(r) and r["offset"] < boundary[r["partition"]]) == live_below, \
        "after the restart the live trigger processed nothing below the boundary"
    assert len(live_below) == len(set(live_below))
    # an independent computation: per key, the values produced at or past the boundary, in order
    by_off = {}
    for r in rows:
        by_off[(r["partition"], r["offset"])] = r
    want, got = {}, {}
    for p, o in sorted(receipts):
        if o >= boundary[p]:
            r = by_off[(p, o)]
            want.setdefault(r["key"], []).append(r["data"]["i"])
    for r in rows:
        if not is_replay(r) and r["offset"] >= boundary[r["partition"]]:
            got.setdefault(r["key"], []).append(r["data"]["i"])
    assert got == {k: sorted(v) for k, v in want.items()}, "per key, live events in produce order"


def slow_function(lg, out, n):
    """n keyed events on orders, then function rep (start: latest) with a slow handler, one worker."""
    lg.start(STREAMS, {"orders": 3})
    lg.produce("orders", [("k%d" % (i % 10), {"i": i}, None) for i in range(n)])
    deploy(lg, APP.format(run=handler_cmd(out, DELAY_MS=20), max_workers=1, batch=5, ordering="key"))
    wait_assigned(lg, "rep")


def test_replay_cli_follows_a_replay_across_a_restart(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    history = history_then_function(lg, out, 2000)
    cli = subprocess.Popen([factlog_bin(), "replay", "rep", "--from", "earliest", "--url", lg.server.base],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(read_out(out)) >= 300, 60, "part of the range replayed", interval=0.05)
        interrupt(lg, "kill9")
        assert cli.poll() is None, "the command waits for the server to come back"
        start_server(lg)
        text, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)
    assert cli.returncode == 0, (text, err)
    assert "replay of rep done: " in text.decode(), text
    assert {(r["partition"], r["offset"]) for r in read_out(out)} == {(p, o) for _, p, o in history}
    assert lg.describe("rep")["replay"]["recovered"] is True


def test_replay_record_removed_when_cancelled_or_function_removed(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    slow_function(lg, out, 600)
    assert post_replay(lg, "rep", {"from": "earliest"}).status == 202
    assert lg.server.request("DELETE", "/v1/functions/rep/replay").status == 202
    wait_replay(lg, "rep", states=("cancelled",))
    assert not os.path.exists(record_path(lg, "rep")), "a cancelled replay is not resumed"
    lg.server.stop()
    start_server(lg)
    assert "replay" not in lg.describe("rep"), "nothing resumed after the restart"
    # a function that leaves the app takes its unfinished replay with it
    assert post_replay(lg, "rep", {"from": "earliest"}).status == 202
    deploy(lg, STREAMS)
    assert not os.path.exists(record_path(lg, "rep"))
    # ... also when it left the app while the server was down
    deploy(lg, APP.format(run=handler_cmd(out, DELAY_MS=20), max_workers=1, batch=5, ordering="key"))
    wait_assigned(lg, "rep")
    assert post_replay(lg, "rep", {"from": "earliest"}).status == 202
    lg.server.stop()
    assert os.path.exists(record_path(lg, "rep")), "a replay stopped with the server keeps its record"
    with open(lg.app_path, "w") as f:
        f.write(STREAMS)
    lg.server.start()
    wait_until(lambda: not os.path.exists(record_path(lg, "rep")), 10, "the record dropped", interval=0.05)
    # a record that cannot be used is set aside with a note, and the function starts normally
    deploy(lg, APP.format(run=handler_cmd(out), max_workers=1, batch=5, ordering="key"))
    lg.server.stop()
    with open(record_path(lg, "rep"), "w") as f:
        f.write('{"version": 1, "id": "zz"}')
    start_server(lg)
    wait_assigned(lg, "rep")
    assert "replay" not in lg.describe("rep")
    assert os.path.exists(record_path(lg, "rep") + ".bad") and not os.path.exists(record_path(lg, "rep"))


def test_replay_bad_input_conflict_and_cancel(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    slow_function(lg, out, 1500)
    r = post_replay(lg, "nope", {"from": "earliest"})
    assert r.status == 404 and r.json()["error"] == "not_found", r
    for body in ({"from": "yesterday"}, {}, {"from": "earliest", "then": "dead"}, {"from": "earliest", "x": 1},
                 {"from": "earliest", "stream": "other"}, {"from": "earliest", "to": "2026-13-01T00:00:00Z"},
                 {"from": -5}, [1]):
        r = post_replay(lg, "rep", body)
        assert r.status == 400 and r.json()["error"] == "invalid_request", (body, r)
    rc, text, err = run_cli("replay", "rep", "--from", "soon", "--url", lg.server.base)
    assert rc == 1 and "from:" in err, (rc, text, err)
    assert lg.server.get("/v1/functions/rep/replay").status == 404
    r = post_replay(lg, "rep", {"from": "0", "to": "@99999999999999"})  # offset, epoch ms
    assert r.status == 202, r
    assert r.json()["state"] == "starting" and r.json()["from"] == "0"
    r2 = post_replay(lg, "rep", {"from": "earliest"})
    assert r2.status == 409 and r2.json()["error"] == "conflict", r2
    rc, text, err = run_cli("replay", "rep", "--from", "earliest", "--url", lg.server.base)
    assert rc == 1 and "running" in err, (rc, text, err)
    wait_until(lambda: lg.describe("rep")["replay"]["events_done"] > 0, 30, "the replay progresses", interval=0.1)
    g = lg.server.get("/v1/functions/rep/replay").json()
    assert g["state"] == "running" and g["events_total"] == 1500 and g["rate_per_second"] >= 0
    rc, text, err = run_cli("replay", "rep", "--cancel", "--url", lg.server.base)
    assert rc == 0, err
    rp = wait_replay(lg, "rep", states=("cancelled",))
    assert rp["events_done"] < 1500
    r = lg.server.request("DELETE", "/v1/functions/rep/replay")
    assert r.status == 404, r
    assert lg.describe("rep")["state"] == "running"
