"""EventBridge-style filters: every operator, on CloudEvent attributes and JSON data; filtered events are
counted, not invoked."""
import os

from conftest import handler_cmd, read_out, wait_until

FILTERS = {
    "exact": "{ data: { color: [red] } }",
    "prefix": "{ type: [ { prefix: com.shop. } ] }",
    "suffix": "{ source: [ { suffix: /eu } ] }",
    "anybut": "{ data: { color: [ { anything-but: [red, blue] } ] } }",
    "numeric": "{ data: { price: [ { numeric: [\">\", 10, \"<=\", 20] } ] } }",
    "exists": "{ data: { coupon: [ { exists: true } ] } }",
    "absent": "{ data: { coupon: [ { exists: false } ] } }",
    "either": "{ $or: [ { data: { color: [red] } }, { data: { price: [ { numeric: [\">\", 90] } ] } } ] }",
}


def expected(name, ev):
    d = ev["data"]
    return {
        "exact": d.get("color") == "red",
        "prefix": ev["type"].startswith("com.shop."),
        "suffix": ev["source"].endswith("/eu"),
        "anybut": "color" in d and d["color"] not in ("red", "blue"),
        "numeric": isinstance(d.get("price"), (int, float)) and 10 < d["price"] <= 20,
        "exists": "coupon" in d,
        "absent": "coupon" not in d,
        "either": d.get("color") == "red" or (isinstance(d.get("price"), (int, float)) and d["price"] > 90),
    }[name]


def test_every_filter_operator(ledger):
    lg = ledger
    out = os.path.join(lg.root, "out.jsonl")
    app = "streams:\n  items: { partitions: 2 }\nfunctions:\n"
    for name, f in FILTERS.items():
        app += ("  %s:\n    run: %s\n    triggers:\n      - stream: items\n        start: earliest\n"
                "        batch_size: 25\n        filter: %s\n") % (name, handler_cmd(out), f)
    lg.start(app, {"items": 2})
    colors = ["red", "blue", "green", None]
    events = []
    for i in range(200):
        data = {"i": i, "price": (i * 7) % 100}
        if colors[i % 4]:
            data["color"] = colors[i % 4]
        if i % 5 == 0:
            data["coupon"] = "C%d" % i
        ev = {"type": "com.shop.item" if i % 3 else "org.other.item",
              "source": "/shop/eu" if i % 2 else "/shop/us", "data": data}
        events.append(ev)
    recs = []
    for i, ev in enumerate(events):
        headers = [("ce_specversion", b"1.0"), ("ce_id", str(i).encode()), ("ce_type", ev["type"].encode()),
                   ("ce_source", ev["source"].encode())]
        recs.append(("k%d" % i, ev["data"], headers))
    lg.produce("items", recs)
    want = {name: {e["data"]["i"] for e in events if expected(name, e)} for name in FILTERS}
    total = sum(len(v) for v in want.values())
    wait_until(lambda: len(read_out(out)) >= total, 60, "%d invocations" % total, interval=0.2)
    got = {name: set() for name in FILTERS}
    for r in read_out(out):
        got[r["fn"]].add(r["data"]["i"])
    for name in FILTERS:
        assert got[name] == want[name], "filter %s: extra %s missing %s" % (
            name, sorted(got[name] - want[name])[:10], sorted(want[name] - got[name])[:10])
        assert 0 < len(want[name]) < len(events), "filter %s is not a real test" % name
        if lg.kind == "factlog":  # the counters are served by factlog's HTTP API
            wait_until(lambda: lg.describe(name)["stats"]["filtered"] == len(events) - len(want[name]), 10,
                       "filtered count of %s" % name)
