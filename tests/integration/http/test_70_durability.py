"""Durability: every receipted event survives SIGKILL of the server and a restart on the same data."""
import http.client
import threading
import time

from conftest import ce


def test_receipts_survive_sigkill(server):
    topic, nparts = "dur.t", 3
    server.create_topic(topic, nparts)
    receipts = {}  # id -> receipt, only for 200 answers received before the kill
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def poster(w):
        n = 0
        while not stop.is_set():
            try:
                if n % 3 == 0:
                    evs = [ce("w%d-%d" % (w, n + j), source="/dur", partitionkey="k%d" % ((n + j) % 7),
                              data={"w": w, "n": n + j}) for j in range(20)]
                    r = server.post_batch(topic, evs)
                    if r.status == 200:
                        with lock:
                            for e, rc in zip(evs, r.json()):
                                receipts[e["id"]] = rc
                    n += 20
                else:
                    eid = "w%d-%d" % (w, n)
                    if n % 3 == 1:
                        r = server.post_structured(topic, ce(eid, source="/dur", data={"w": w, "n": n}))
                    else:
                        r = server.post_binary(topic, {"specversion": "1.0", "id": eid, "source": "/dur",
                                                       "type": "com.example.test"},
                                               b'{"w": %d, "n": %d}' % (w, n), "application/json")
                    if r.status == 200:
                        with lock:
                            receipts[eid] = r.json()
                    n += 1
                if r.status != 200:
                    errors.append(r)
                    return
            except (OSError, http.client.HTTPException):
                return  # the server died under us: fine, this request has no receipt

    threads = [threading.Thread(target=poster, args=(w,), daemon=True) for w in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    with lock:
        n_before = len(receipts)
    server.kill9()  # mid-traffic, by PID
    stop.set()
    for t in threads:
        t.join(35)
    assert not any(t.is_alive() for t in threads), "a poster hung after the kill"
    assert not errors, "non-200 answers before the kill: %r" % errors[:3]
    assert n_before > 50, "only %d events receipted in 1.5 s" % n_before
    with lock:
        want = dict(receipts)

    server.start()  # same ports, same data directory
    hwms = server.hwms(topic)
    got = {}
    for p in range(nparts):
        for e in server.read_all(topic, p):
            got[(p, e["offset"])] = e
    missing = []
    for eid, rc in want.items():
        e = got.get((rc["partition"], rc["offset"]))
        if e is None or e["id"] != eid:
            missing.append((eid, rc, e and e["id"]))
    assert not missing, "%d of %d receipted events did not read back after SIGKILL + restart " \
        "(hwms %r), e.g. %r" % (len(missing), len(want), hwms, missing[:5])
    # no receipt was handed out twice
    assert len({(rc["partition"], rc["offset"]) for rc in want.values()}) == len(want)
    # and the restarted server takes writes after what survived
    r = server.post_structured(topic, ce("after-restart", source="/dur", partitionkey="k0"))
    assert r.status == 200, r
    rc = r.json()
    assert rc["offset"] == hwms[rc["partition"]], (rc, hwms)
