"""Fixtures for factlog's Kafka integration tests.

The broker binary comes from the FACTLOG_BIN environment variable (run.sh sets it). Every test gets
its own broker on a free 127.0.0.1 port and its own temporary data directory. The broker is always
stopped by its PID: SIGTERM, then SIGKILL after a timeout.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "idempotent: idempotent-producer test (select alone with -m idempotent)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class BrokerError(AssertionError):
    pass


class Broker:
    """One factlog broker process on a fixed port and data directory."""

    def __init__(self, binary, port, root, extra_args=()):
        self.binary = binary
        self.port = port
        self.root = root
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, "broker.log")
        self.bootstrap = "127.0.0.1:%d" % port
        self.extra_args = list(extra_args)
        self.proc = None
        self.starts = 0

    # --- process control -------------------------------------------------------------------------
    def argv(self):
        return [self.binary, "serve", "--data", self.data_dir,
                "--kafka-listen", self.bootstrap, "--http-listen", "127.0.0.1:0",
                "--auto-create-topics",
                "--log-level", "info"] + self.extra_args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(("\n===== start #%d: %s\n" % (self.starts, " ".join(self.argv()))).encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise BrokerError("broker exited with status %s during startup\n%s"
                                  % (rc, self.log_tail()))
            if port_open(self.port):
                return
            time.sleep(0.05)
        pid = self.proc.pid
        self._kill(signal.SIGKILL, 5)
        raise BrokerError("broker (pid %d) did not accept connections on %s within %.0f s\n%s"
                          % (pid, self.bootstrap, START_TIMEOUT_S, self.log_tail()))

    def _kill(self, sig, timeout):
        """Sends sig to our broker's PID and waits up to timeout; returns the exit status or None."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Raises if the shutdown was not clean."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            raise BrokerError("broker had already exited (status %s) before it was stopped\n%s"
                              % (rc, self.log_tail()))
        rc = self._kill(signal.SIGTERM, STOP_TIMEOUT_S)
        if rc is None:
            self._kill(signal.SIGKILL, 10)
            self.proc = None
            raise BrokerError("broker ignored SIGTERM for %.0f s; killed with SIGKILL\n%s"
                              % (STOP_TIMEOUT_S, self.log_tail()))
        self.proc = None
        if rc != 0:
            raise BrokerError("broker exited with status %s after SIGTERM (want 0)\n%s"
                              % (rc, self.log_tail()))

    def restart(self):
        """Clean restart: SIGTERM, wait, start again on the same port and data directory."""
        self.stop()
        self.start()

    def kill9(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BrokerError("broker had already exited (status %s) before kill -9\n%s"
                              % (self.proc.returncode, self.log_tail()))
        self._kill(signal.SIGKILL, 10)
        self.proc = None

    def kill9_restart(self):
        """Crash restart: SIGKILL, then start again on the same port and data directory."""
        self.kill9()
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            rc = None if self.proc is None else self.proc.returncode
            raise BrokerError("broker is not running (status %s)\n%s" % (rc, self.log_tail()))

    def log_tail(self, nbytes=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - nbytes))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no broker log: %s)" % e
        return "----- broker stderr (last %d bytes) -----\n%s" % (nbytes, text)

    def __repr__(self):
        return "Broker(%s, pid=%s)" % (self.bootstrap, self.proc.pid if self.proc else None)


def factlog_bin():
    b = os.environ.get("FACTLOG_BIN")
    if not b:
        pytest.fail("FACTLOG_BIN is not set: run tests/integration/kafka/run.sh path/to/factlog",
                    pytrace=False)
    b = os.path.abspath(b)
    if not os.access(b, os.X_OK):
        pytest.fail("FACTLOG_BIN=%s is not an executable file" % b, pytrace=False)
    return b


@pytest.fixture
def broker(request):
    binary = factlog_bin()
    root = tempfile.mkdtemp(prefix="factlog-kafka-")
    b = Broker(binary, free_port(), root)
    try:
        b.start()
    except BaseException:
        if b.proc is not None:
            b._kill(signal.SIGKILL, 10)
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield b
    finally:
        problem = None
        try:
            b.stop()
        except BrokerError as e:
            problem = e
        finally:
            # Whatever happened, never leave the process behind.
            if b.proc is not None:
                b._kill(signal.SIGKILL, 10)
        failed = getattr(request.node, "rep_call", None)
        if problem is None and failed is not None and failed.failed:
            sys.stderr.write(b.log_tail() + "\n")
        shutil.rmtree(root, ignore_errors=True)
        if problem is not None:
            raise problem
