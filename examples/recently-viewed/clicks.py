#!/usr/bin/env python3
"""Click-stream generator for the recently-viewed example, and its click-to-shelf benchmark.

Realistic traffic: many customers, a skewed product popularity (Zipf: a few products get most views),
and a rate profile with bursts ("a wall of traffic" after a marketing email). Clicks go to factlog over
HTTP (CloudEvents batches), over the Kafka protocol (confluent-kafka, CloudEvents binary binding), or
both at once, keyed by customer so one customer's clicks stay in order on one partition.

Every Nth click (--check-every) is read back through the shelf API with its receipt
(GET /shelf/C?after=P:O): the answer must show the click applied (read-your-writes). The time from
sending the click to that answer is the click-to-shelf latency, printed as percentiles at the end.

    clicks.py --profile 1000:10                     # 1,000 clicks/s for 10 s, half HTTP, half Kafka
    clicks.py --profile 2000:5,50000:4,2000:5       # a burst of 50,000 clicks/s for 4 s
    clicks.py --count 200000 --profile 0:0          # 200,000 clicks as fast as they go

--log FILE writes one JSON line per click ({"c","p","part","off","via"}) and per check, so that a test
can compute every shelf independently. Needs python3-confluent-kafka for --protocol kafka or both.
"""
import argparse
import bisect
import http.client
import itertools
import json
import queue
import random
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

SOURCE = "/web/recently-viewed"
TYPE = "com.example.product.viewed"


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


class Http:
    """A keep-alive connection to an HTTP server, reopened once when the server closed it."""

    def __init__(self, url, timeout=30):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout, self.conn = u.hostname, u.port or 80, timeout, None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


class Generator:
    def __init__(self, o):
        self.o = o
        self.rng = random.Random(o.seed)
        self.run = "%x" % (o.seed if o.seed is not None else random.getrandbits(48))
        w = [1.0 / (i + 1) ** o.zipf for i in range(o.products)]
        self.cum = list(itertools.accumulate(w))
        self.seq = 0
        self.seg = 0                           # the profile segment being sent
        self.lock = threading.Lock()           # log file, counters, latencies
        self.log = open(o.log, "a") if o.log else None
        self.sent = {"http": 0, "kafka": 0}
        self.acked = {"http": 0, "kafka": 0}
        self.errors = []
        self.lat_ms = []
        self.checks_ok = 0
        self.checks_bad = []
        self.segments = []                     # (rate asked, seconds, clicks sent) per profile segment
        self.checker = ThreadPoolExecutor(max_workers=o.check_threads) if o.api and o.check_every else None
        self.checker_local = threading.local()
        self.http_q = queue.Queue(maxsize=64)
        self.http_threads = []
        self.producer = None
        if o.protocol in ("http", "both"):
            for _ in range(o.http_connections):
                t = threading.Thread(target=self.http_sender, daemon=True)
                t.start()
                self.http_threads.append(t)
        if o.protocol in ("kafka", "both"):
            from confluent_kafka import Producer  # Debian: python3-confluent-kafka
            self.producer = Producer({
                "bootstrap.servers": o.bootstrap, "acks": "all", "enable.idempotence": True,
                "linger.ms": 1, "partitioner": "murmur2_random",  # the HTTP gateway's (and Java's) choice
                "queue.buffering.max.messages": 1000000})
            # Learn the topic's partitions before the first click: librdkafka otherwise holds the clicks
            # produced meanwhile for up to a second (seen with linger.ms > 0).
            self.producer.list_topics(o.topic, timeout=10)

    # -- clicks ---------------------------------------------------------------------------------------

    def click(self):
        self.seq += 1
        customer = "c%06d" % self.rng.randrange(self.o.customers)
        product = "p%05d" % bisect.bisect_left(self.cum, self.rng.random() * self.cum[-1])
        return {"id": "%s-%d" % (self.run, self.seq), "c": customer, "p": product, "seg": self.seg,
                "check": self.o.check_every > 0 and self.seq % self.o.check_every == 0}

    def receipt(self, click, via, partition, offset, t_sent):
        with self.lock:
            self.acked[via] += 1
            if self.log:
                self.log.write(json.dumps({"c": click["c"], "p": click["p"], "part": partition, "off": offset,
                                           "via": via}) + "\n")
        if click["check"] and self.checker:
            self.checker.submit(self.check, click, partition, offset, t_sent)

    def failed(self, via, n, why):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append("%s: %s" % (via, why))

    # -- HTTP: CloudEvents batches, receipts in the answer ----------------------------------------------

    def http_sender(self):
        conn = Http(self.o.http)
        path = "/v1/topics/%s/events" % urllib.parse.quote(self.o.topic)
        while True:
            item = self.http_q.get()
            if item is None:
                return
            clicks, t_sent = item
            body = json.dumps([{"specversion": "1.0", "id": c["id"], "source": SOURCE, "type": TYPE,
                                "partitionkey": c["c"], "datacontenttype": "application/json",
                                "data": {"customer": c["c"], "product": c["p"]}} for c in clicks])
            try:
                status, data = conn.request("POST", path, body,
                                            {"Content-Type": "application/cloudevents-batch+json"})
                if status != 200:
                    raise RuntimeError("HTTP %d %s" % (status, data[:200]))
                receipts = json.loads(data)
            except Exception as e:  # noqa: BLE001 -- report and go on; the click is not on the ledger
                self.failed("http", len(clicks), e)
                continue
            for c, r in zip(clicks, receipts):
                self.receipt(c, "http", r["partition"], r["offset"], t_sent)

    # -- Kafka: binary-mode CloudEvents (ce_ headers), key = customer -----------------------------------

    def kafka_send(self, clicks, t_sent):
        for c in clicks:
            def done(err, msg, c=c):
                if err is not None:
                    self.failed("kafka", 1, err)
                else:
                    self.receipt(c, "kafka", msg.partition(), msg.offset(), t_sent)
            headers = [("ce_specversion", b"1.0"), ("ce_id", c["id"].encode()), ("ce_source", SOURCE.encode()),
                       ("ce_type", TYPE.encode()), ("content-type", b"application/json")]
            value = json.dumps({"customer": c["c"], "product": c["p"]}).encode()
            while True:
                try:
                    self.producer.produce(self.o.topic, value=value, key=c["c"].encode(), headers=headers,
                                          on_delivery=done)
                    break
                except BufferError:
                    self.producer.poll(0.01)
        self.producer.poll(0)

    # -- read-your-writes checks --------------------------------------------------------------------------

    def check(self, click, partition, offset, t_sent):
        api = getattr(self.checker_local, "api", None)
        if api is None:
            api = self.checker_local.api = Http(self.o.api, timeout=60)
        path = "/shelf/%s?after=%d:%d&timeout_ms=%d" % (click["c"], partition, offset, self.o.check_timeout_ms)
        try:
            status, data = api.request("GET", path)
            t = time.monotonic()
            body = json.loads(data)
        except Exception as e:  # noqa: BLE001
            status, body, t = 0, {"error": str(e)}, time.monotonic()
        a = body.get("as_of") if isinstance(body, dict) else None
        ok = (status == 200 and a is not None and a["partition"] == partition and a["offset"] >= offset
              and (a["offset"] > offset or body["products"][:1] == [click["p"]]))
        with self.lock:
            if ok:
                self.checks_ok += 1
                self.lat_ms.append((click["seg"], (t - t_sent) * 1000.0))
            elif len(self.checks_bad) < 20:
                self.checks_bad.append({"click": click, "receipt": [partition, offset], "status": status,
                                        "answer": body})
            if self.log:
                self.log.write(json.dumps({"check": click["c"], "p": click["p"], "after": [partition, offset],
                                           "status": status, "answer": body}) + "\n")

    # -- pacing -------------------------------------------------------------------------------------------

    def send(self, clicks, t_sent, via):
        with self.lock:
            self.sent[via] += len(clicks)
        if via == "http":
            self.http_q.put((clicks, t_sent))
        else:
            self.kafka_send(clicks, t_sent)

    def go(self):
        o = self.o
        profile = [(int(r), float(s)) for r, s in (seg.split(":") for seg in o.profile.split(","))]
        vias = ["http", "kafka"] if o.protocol == "both" else [o.protocol]
        chunk_i = 0
        total = 0
        t_start = time.monotonic()
        for self.seg, (rate, seconds) in enumerate(profile):
            t0 = time.monotonic()
            done = 0
            while o.count == 0 or total < o.count:
                now = time.monotonic()
                if seconds > 0 and now - t0 >= seconds:
                    break
                due = int((now - t0) * rate) - done if rate > 0 else o.chunk
                if o.count:
                    due = min(due, o.count - total)
                if due <= 0:
                    if self.producer:
                        self.producer.poll(0.001)
                    else:
                        time.sleep(0.001)
                    continue
                while due > 0:
                    n = min(due, o.chunk)
                    clicks = [self.click() for _ in range(n)]
                    self.send(clicks, time.monotonic(), vias[chunk_i % len(vias)])
                    chunk_i += 1
                    due -= n
                    done += n
                    total += n
                if rate <= 0 and self.producer:
                    while len(self.producer) > 200000:
                        self.producer.poll(0.01)
            self.segments.append((rate, time.monotonic() - t0, done))
            print("clicks.py: %d clicks/s for %.1f s: %d sent" % (rate, time.monotonic() - t0, done),
                  file=sys.stderr, flush=True)
            if o.count and total >= o.count:
                break
        t_sent_all = time.monotonic() - t_start
        for _ in self.http_threads:
            self.http_q.put(None)
        for t in self.http_threads:
            t.join()
        if self.producer:
            self.producer.flush(60)
        t_acked_all = time.monotonic() - t_start
        if self.checker:
            self.checker.shutdown(wait=True)
        if self.log:
            self.log.close()
        return total, t_sent_all, t_acked_all

    def report(self, total, t_sent, t_acked):
        r = {"clicks": total, "seconds": round(t_sent, 3), "clicks_per_s": round(total / t_sent) if t_sent else 0,
             "acked_seconds": round(t_acked, 3), "sent": self.sent, "acked": self.acked,
             "errors": self.errors, "checks": self.checks_ok + len(self.checks_bad),
             "checks_failed": len(self.checks_bad), "failed_checks": self.checks_bad[:5]}
        def summary(xs):
            return {"checks": len(xs), "p50": round(percentile(xs, 50), 2), "p99": round(percentile(xs, 99), 2),
                    "p999": round(percentile(xs, 99.9), 2), "max": round(max(xs), 2)}
        if self.lat_ms:
            r["click_to_shelf_ms"] = summary([x for _, x in self.lat_ms])
            r["segments"] = []
            for i, (rate, secs, n) in enumerate(self.segments):
                seg = {"rate": rate, "seconds": round(secs, 2), "clicks": n}
                xs = [x for j, x in self.lat_ms if j == i]
                if xs:
                    seg["click_to_shelf_ms"] = summary(xs)
                r["segments"].append(seg)
        return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--http", default="http://127.0.0.1:8080", help="factlog's HTTP address")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092", help="factlog's Kafka address")
    ap.add_argument("--api", default="http://127.0.0.1:8081", help="the shelf API ('' for no checks)")
    ap.add_argument("--topic", default="clicks")
    ap.add_argument("--protocol", choices=["http", "kafka", "both"], default="both")
    ap.add_argument("--profile", default="1000:10", help="RATE:SECONDS,... (rate 0: as fast as possible)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many clicks (0: when the profile ends)")
    ap.add_argument("--customers", type=int, default=10000)
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--zipf", type=float, default=1.1, help="product popularity skew")
    ap.add_argument("--chunk", type=int, default=200, help="clicks per HTTP batch / Kafka burst")
    ap.add_argument("--http-connections", type=int, default=4)
    ap.add_argument("--check-every", type=int, default=100, help="read back every Nth click (0: none)")
    ap.add_argument("--check-threads", type=int, default=32)
    ap.add_argument("--check-timeout-ms", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--log", help="append every click and check to this file (JSON lines)")
    o = ap.parse_args()
    if not o.api:
        o.check_every = 0
    g = Generator(o)
    total, t_sent, t_acked = g.go()
    r = g.report(total, t_sent, t_acked)
    print(json.dumps(r))
    lat = r.get("click_to_shelf_ms")
    print("clicks.py: %d clicks in %.2f s (%d/s; HTTP %d, Kafka %d), all acknowledged after %.2f s; %d errors"
          % (total, t_sent, r["clicks_per_s"], g.acked["http"], g.acked["kafka"], t_acked, len(g.errors)),
          file=sys.stderr)
    if lat:
        print("clicks.py: click-to-shelf (read-your-writes) over %d checks: p50 %.1f ms, p99 %.1f ms, "
              "p99.9 %.1f ms, max %.1f ms; %d checks failed"
              % (r["checks"], lat["p50"], lat["p99"], lat["p999"], lat["max"], r["checks_failed"]), file=sys.stderr)
        for seg in r["segments"]:
            if "click_to_shelf_ms" in seg:
                x = seg["click_to_shelf_ms"]
                print("clicks.py:   clicks sent at %6d/s for %5.1f s (%d/s achieved): p50 %7.1f ms, p99 %7.1f ms "
                      "(%d checks)" % (seg["rate"], seg["seconds"], seg["clicks"] / seg["seconds"] if seg["seconds"] else 0,
                                       x["p50"], x["p99"], x["checks"]), file=sys.stderr)
    sys.exit(1 if g.errors or g.checks_bad or sum(g.acked.values()) != total else 0)


if __name__ == "__main__":
    main()
