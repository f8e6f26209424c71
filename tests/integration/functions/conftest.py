"""Fixtures for the functions runtime's integration tests.

A `ledger` runs an app file's functions with real handler processes, on one of two clusters:
  factlog  `factlog serve --app FILE` (the runtime in process, against its own Kafka listener);
  mock     librdkafka's mock cluster with three brokers (tests/integration/functions/mock_cluster.c) and
           `factlog run --app FILE --bootstrap ...`: the same runtime against a cluster that is not factlog.
Records go in and come out with confluent-kafka. Every process is stopped by its PID; every wait is bounded.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "..", "lib")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from flserver import Server, ServerError, free_port, port_open, wait_until  # noqa: E402

HANDLER = os.path.join(HERE, "handler.py")


def factlog_bin():
    b = os.environ.get("FACTLOG_BIN")
    if not b or not os.access(b, os.X_OK):
        pytest.fail("FACTLOG_BIN is not set to an executable: run tests/integration/functions/run.sh",
                    pytrace=False)
    return os.path.abspath(b)


def read_out(path):
    """The handler's records: one dict per processed event (in the order they were written)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


class Ledger:
    def __init__(self, kind, root, binary):
        self.kind = kind
        self.root = root
        self.binary = binary
        self.app_path = os.path.join(root, "factlog.yml")
        self.server = None       # factlog
        self.mock = None         # mock: the cluster process
        self.runner = None       # mock: the `factlog run` process
        self.bootstrap = None
        self.run_log = os.path.join(root, "run.log")

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, app_yaml, topics):
        """Writes the app file; starts the cluster (topics: {name: partitions}) and the functions."""
        with open(self.app_path, "w") as f:
            f.write(app_yaml)
        if self.kind == "factlog":
            self.server = Server(self.binary, self.root, ["--app", self.app_path, "--group-initial-delay-ms", "0"])
            self.bootstrap = self.server.bootstrap
            self.server.start()
            self.wait_topics(topics)
        else:
            exe = os.environ.get("FACTLOG_MOCK_CLUSTER")
            if not exe:
                pytest.fail("FACTLOG_MOCK_CLUSTER is not set", pytrace=False)
            args = [exe, "3"] + ["%s:%d" % (t, p) for t, p in topics.items()]
            self.mock = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = self.mock.stdout.readline().decode().strip()
            assert line, "mock cluster printed no bootstrap servers"
            self.bootstrap = line
            self.start_runner()
        return self

    def start_runner(self):
        log = open(self.run_log, "ab")
        self.runner = subprocess.Popen(
            [self.binary, "run", "--app", self.app_path, "--bootstrap", self.bootstrap,
             "--log-dir", os.path.join(self.root, "functions")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def stop_functions(self):
        """Stops the functions cleanly (SIGTERM by PID): they finish in-flight work and commit."""
        if self.kind == "factlog":
            self.server.stop()
        else:
            self.runner.send_signal(signal.SIGTERM)
            rc = self.runner.wait(timeout=30)
            assert rc == 0, "factlog run exited %s\n%s" % (rc, self.log_tail())

    def kill_functions(self):
        if self.kind == "factlog":
            self.server.kill9()
        else:
            self.runner.kill()
            self.runner.wait(timeout=10)

    def start_functions(self):
        if self.kind == "factlog":
            self.server.start()
        else:
            self.start_runner()

    def close(self):
        for p in (self.runner, self.mock):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        if self.server is not None and self.server.proc is not None:
            try:
                self.server.stop()
            finally:
                if self.server.proc is not None:
                    self.server._kill(signal.SIGKILL, 10)

    def log_tail(self):
        parts = []
        if self.server is not None:
            parts.append(self.server.log_tail())
        if os.path.exists(self.run_log):
            with open(self.run_log, "rb") as f:
                parts.append("----- factlog run -----\n" + f.read()[-6000:].decode(errors="replace"))
        fdir = os.path.join(self.root, "functions") if self.kind == "mock" else \
            os.path.join(self.root, "data", "functions")
        if os.path.isdir(fdir):
            for n in sorted(os.listdir(fdir)):
                if not os.path.isfile(os.path.join(fdir, n)):
                    continue  # a function's state directory
                with open(os.path.join(fdir, n), "rb") as f:
                    parts.append("----- %s -----\n%s" % (n, f.read()[-4000:].decode(errors="replace")))
        return "\n".join(parts)

    # --- Kafka ------------------------------------------------------------------------------------
    def wait_topics(self, topics, timeout=15):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe"})
        try:
            def ready():
                md = c.list_topics(timeout=5)
                return all(t in md.topics and len(md.topics[t].partitions) == p and md.topics[t].error is None
                           for t, p in topics.items())
            wait_until(ready, timeout, "topics %s" % topics, interval=0.2)
        finally:
            c.close()

    def producer(self):
        return Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True})

    def produce(self, topic, records):
        """records: [(key, value_dict, headers_or_None)]; returns [(key, partition, offset)] in record order."""
        p = self.producer()
        receipts = [None] * len(records)

        def receipt(i):
            def cb(err, msg):
                assert err is None, err
                receipts[i] = (msg.key(), msg.partition(), msg.offset())
            return cb
        for i, (key, value, headers) in enumerate(records):
            while True:
                try:
                    p.produce(topic, key=key.encode() if key is not None else None,
                              value=json.dumps(value).encode(),
                              headers=[("content-type", b"application/json")] + list(headers or []),
                              on_delivery=receipt(i))
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        assert p.flush(60) == 0, "produce did not finish"
        assert None not in receipts
        return receipts

    def consume_all(self, topic, count, timeout=30):
        """Reads every record of topic from the start until count were read."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "check-%d" % time.monotonic_ns(),
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            md = c.list_topics(topic, timeout=10)
            c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
            out = []
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                out.append(m)
            return out
        finally:
            c.close()

    def committed(self, group, topic):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            md = c.list_topics(topic, timeout=10)
            tps = c.committed([TopicPartition(topic, p) for p in md.topics[topic].partitions], timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()

    # --- introspection (factlog only) ---------------------------------------------------------------
    def describe(self, name):
        r = self.server.get("/v1/functions/" + name)
        assert r.status == 200, r
        return r.json()


def _ledger(request, kind):
    root = tempfile.mkdtemp(prefix="factlog-fn-")
    lg = Ledger(kind, root, factlog_bin())
    try:
        yield lg
    finally:
        try:
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                sys.stderr.write(lg.log_tail() + "\n")
        except Exception as e:  # noqa: BLE001 -- never let the report keep the servers running
            sys.stderr.write("(no log tail: %s)\n" % e)
        try:
            lg.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["factlog", "mock"])
def ledger(request):
    """The same test on factlog and on librdkafka's three-broker mock cluster."""
    yield from _ledger(request, request.param)


@pytest.fixture
def factlog_ledger(request):
    """factlog only: for tests that read the runtime's state over HTTP."""
    yield from _ledger(request, "factlog")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def handler_cmd(out, **env):
    """The `run:` of a function using handler.py, writing its records to out."""
    parts = ["OUT=%s" % out] + ["%s=%s" % (k, v) for k, v in env.items()]
    return "env %s /usr/bin/python3 %s" % (" ".join(parts), HANDLER)


__all__ = ["Ledger", "wait_until", "read_out", "handler_cmd", "ServerError", "free_port", "port_open"]
