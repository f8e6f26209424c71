"""Fixtures for factlog's HTTP/CloudEvents gateway integration tests.

The server binary comes from the FACTLOG_BIN environment variable (run.sh sets it). Every test gets its
own `factlog serve` on free 127.0.0.1 ports (Kafka and HTTP) and its own temporary data directory. The
server is always stopped by its PID: SIGTERM, then SIGKILL after a timeout. Every HTTP call and every
wait is bounded in time.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "..", "lib")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from flserver import (Response, Server, ServerError, free_port, port_open,  # noqa: E402,F401
                      HTTP_TIMEOUT_S, wait_until)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def factlog_bin():
    b = os.environ.get("FACTLOG_BIN")
    if not b:
        pytest.fail("FACTLOG_BIN is not set: run tests/integration/http/run.sh path/to/factlog",
                    pytrace=False)
    b = os.path.abspath(b)
    if not os.access(b, os.X_OK):
        pytest.fail("FACTLOG_BIN=%s is not an executable file" % b, pytrace=False)
    return b


@pytest.fixture
def make_server(request):
    """Factory: make_server(*extra_args) starts a server; all are stopped (by PID) at teardown."""
    binary = factlog_bin()
    started = []

    def make(*extra_args):
        root = tempfile.mkdtemp(prefix="factlog-http-")
        s = Server(binary, root, extra_args)
        started.append(s)
        s.start()
        return s

    try:
        yield make
    finally:
        problem = None
        failed = getattr(request.node, "rep_call", None)
        for s in started:
            try:
                s.stop()
            except ServerError as e:
                problem = problem or e
            finally:
                if s.proc is not None:  # whatever happened, never leave the process behind
                    s._kill(signal.SIGKILL, 10)
            if problem is None and failed is not None and failed.failed:
                sys.stderr.write(s.log_tail() + "\n")
            shutil.rmtree(s.root, ignore_errors=True)
        if problem is not None:
            raise problem


@pytest.fixture
def server(make_server):
    return make_server()


def ce(i, source="/tests/http", type_="com.example.test", **extra):
    """A structured-mode CloudEvent dict with id str(i)."""
    ev = {"specversion": "1.0", "id": str(i), "source": source, "type": type_}
    ev.update(extra)
    return ev


def run_node(args, stdin=None, timeout=60):
    """Runs `node ce.js ARGS` in this directory; returns the parsed JSON it prints."""
    p = subprocess.run(["node", os.path.join(HERE, "ce.js")] + list(args), cwd=HERE,
                       input=stdin.encode() if isinstance(stdin, str) else stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert p.returncode == 0, "node ce.js %s exited %d\nstdout: %s\nstderr: %s" % (
        " ".join(args), p.returncode, p.stdout.decode(errors="replace")[-2000:],
        p.stderr.decode(errors="replace")[-4000:])
    return json.loads(p.stdout)
