"""GET /metrics carries the functions' figures next to the ledger's: invocations, errors, events by
outcome, lag, workers, and the latest replay's progress; promtool accepts the whole page."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import factlog_bin, handler_cmd, read_out, wait_until

APP = """
streams:
  m: {{ partitions: 2 }}
functions:
  met:
    run: {run}
    triggers:
      - stream: m
        start: earliest
        batch_size: 10
        filter: {{ data: {{ keep: [true] }} }}
"""


def metric(text, name, labels):
    m = re.search(r"^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return int(m.group(1)) if m else None


def test_function_metrics(factlog_ledger):
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (scripts/install-deps test installs prometheus)", pytrace=False)
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(APP.format(run=handler_cmd(out)), {"m": 2})
    lg.produce("m", [("k%d" % (i % 5), {"i": i, "keep": i % 4 != 0}, None) for i in range(40)])
    wait_until(lambda: len(read_out(out)) >= 30, 60, "30 events processed", interval=0.2)
    wait_until(lambda: lg.describe("met")["lag"] == 0, 30, "lag 0", interval=0.2)

    r = subprocess.run([factlog_bin(), "replay", "met", "--from", "earliest", "--url", lg.server.base],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    page = lg.server.get("/metrics")
    assert page.status == 200
    text = page.body.decode()
    lab = 'function="met"'
    assert metric(text, "factlog_function_invocations_total", lab) >= 1
    assert metric(text, "factlog_function_errors_total", lab) == 0
    assert metric(text, "factlog_function_events_total", lab + ',outcome="ok"') >= 30
    assert metric(text, "factlog_function_events_total", lab + ',outcome="filtered"') >= 10
    assert metric(text, "factlog_function_lag", lab) == 0
    assert metric(text, "factlog_function_workers", lab) >= 0
    assert metric(text, "factlog_function_replay_events", lab) == 40
    assert metric(text, "factlog_function_replay_events_done", lab) == 40
    assert "factlog_partition_high_watermark{" in text  # the ledger's own part is still there
    chk = subprocess.run(["promtool", "check", "metrics"], input=page.body, capture_output=True, timeout=30)
    assert chk.returncode == 0, chk.stdout.decode() + chk.stderr.decode()
