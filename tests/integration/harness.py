"""Shared helpers for Sluice integration tests (Python 3 standard library only).

Import from a test script with:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness

- Proc / start_listening(): start a server on port 0 and read its port from a
  "... listening on PORT" line on stdout; always stop it (use `with` or
  try/finally).
- start_mockllm(*flags): the above for $MOCKLLM_BIN.
- request(), get_json(), post_json(): one HTTP exchange on a fresh connection.
- sse_events(): read a streaming response as a list of `data:` payloads.
- Suite: a tiny runner that prints "N passed, N failed" and sets the exit code.
"""

import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback


def env_path(name, default=None):
    """Returns the executable named by environment variable `name`, or
    `default` (relative to the repo root) when unset."""
    v = os.environ.get(name)
    if v:
        return v
    if default is None:
        raise RuntimeError(f"environment variable {name} is not set")
    return default


class Proc:
    """A child process that prints "<anything> listening on PORT" when ready."""

    def __init__(self, argv, ready_timeout=10.0, env=None):
        self.argv = list(argv)
        self.port = None
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=None,
                                  env=env, bufsize=0)
        deadline = time.time() + ready_timeout
        buf = b""
        while time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"listening on (\d+)\n", buf)
                if m:
                    self.port = int(m.group(1))
                    return
            elif self.p.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{argv[0]} did not report a port (output so far: {buf!r})")

    @property
    def base(self):
        return f"127.0.0.1:{self.port}"

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stops the process (SIGTERM, then SIGKILL) and returns its exit code."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.p.stdout:
            self.p.stdout.close()
        return self.p.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_listening(argv, **kw):
    return Proc(argv, **kw)


def start_mockllm(*flags, **kw):
    """Starts $MOCKLLM_BIN --port 0 with extra flags; returns a Proc."""
    binary = env_path("MOCKLLM_BIN", "build/release/mockllm")
    return Proc([binary, "--port", "0", *[str(f) for f in flags]], **kw)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body        # bytes

    def json(self):
        return json.loads(self.body)


def request(port, method, path, body=None, headers=None, timeout=10.0, host="127.0.0.1"):
    """One HTTP exchange on a fresh connection. body may be bytes, str or a
    JSON-serializable object. Returns a Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def get_json(port, path, **kw):
    return request(port, "GET", path, **kw)


def post_json(port, path, obj, **kw):
    return request(port, "POST", path, body=obj, **kw)


class SSEResult:
    def __init__(self, status, headers, events, complete, error=None):
        self.status = status
        self.headers = headers
        self.events = events      # list of `data:` payload strings, in order
        self.complete = complete  # the body ended cleanly (terminating chunk read)
        self.error = error        # exception text when the transfer broke

    def json_events(self):
        """Payloads other than [DONE], parsed."""
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    @property
    def done(self):
        return bool(self.events) and self.events[-1] == "[DONE]"


def sse_events(port, path, obj, timeout=10.0, headers=None, on_event=None):
    """POSTs obj and reads a text/event-stream response. Never raises on a
    broken stream: the result says whether the body completed. on_event(payload)
    is called as each event arrives (for timing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    events = []
    status, hdrs = None, {}
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", path, body=json.dumps(obj), headers=h)
        r = conn.getresponse()
        status = r.status
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        pending = b""
        while True:
            # read1 raises IncompleteRead on a cut chunked body (readline
            # would hide the cut as a clean end)
            chunk = r.read1(65536)
            if not chunk:
                break
            pending += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in pending:
                block, pending = pending.split(b"\n\n", 1)
                data = [l[5:].strip() for l in block.split(b"\n") if l.startswith(b"data:")]
                if data:
                    ev = b"\n".join(data).decode()
                    events.append(ev)
                    if on_event:
                        on_event(ev)
        return SSEResult(status, hdrs, events, True)
    except Exception as e:  # a cut stream or a timeout
        return SSEResult(status, hdrs, events, False, f"{type(e).__name__}: {e}")
    finally:
        conn.close()


class Suite:
    """Runs test functions, printing one line per failure and a summary line
    "N passed, N failed". exit_code() is non-zero when any failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, fn, *args):
        name = fn.__name__
        t0 = time.time()
        try:
            fn(*args)
            self.passed += 1
            print(f"ok   {name} ({time.time() - t0:.2f}s)", flush=True)
        except Exception:
            self.failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
            sys.stdout.flush()

    def report(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def check_eq(a, b, what=""):
    if a != b:
        raise AssertionError(f"{what}: expected {b!r}, got {a!r}")


class Sluice:
    """`sluice serve` on a free port with a config written to a temp dir.
    stdout (access log) and stderr (log) go to files so that the process never
    blocks on a full pipe; the port comes from the 'listening on HOST:PORT'
    log line. Use `with` so that it is always stopped."""

    def __init__(self, config_text, extra_args=(), ready_timeout=15.0, env=None):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="sluice-test-")
        self.config_path = os.path.join(self.dir, "sluice.yaml")
        self.write_config(config_text)
        self.out_path = os.path.join(self.dir, "stdout.log")
        self.err_path = os.path.join(self.dir, "stderr.log")
        binary = env_path("SLUICE_BIN", "build/release/sluice")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen([binary, "serve", "-c", self.config_path, "--port", "0", *extra_args],
                                  stdout=self.out, stderr=self.err, env=env)
        self.port = None
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            m = re.search(r"listening on [^ ]*:(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        err = self.stderr()
        self.stop()
        raise RuntimeError(f"sluice did not start: {err}")

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def stderr(self):
        with open(self.err_path, "r", errors="replace") as f:
            return f.read()

    def access_log(self):
        with open(self.out_path, "r", errors="replace") as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]

    def signal(self, sig):
        self.p.send_signal(sig)

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=15.0):
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()
        self.err.close()
        return self.p.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.stop()
        # a sanitizer report or a crash must fail the test that caused it
        if rc not in (0, None) and exc[0] is None:
            raise AssertionError(f"sluice exited with {rc}: {self.stderr()[-3000:]}")


def mock_config(ports, model="mock-model", extra_params="", router="", server=""):
    """A config with one group `model` whose backends are mockllm ports."""
    lines = ["model_list:"]
    for p in ports:
        lines += [f"  - model_name: {model}",
                  "    params:",
                  "      provider: openai",
                  f"      api_base: http://127.0.0.1:{p}/v1",
                  "      model: mock-model"]
        if extra_params:
            lines += ["      " + l for l in extra_params.strip().splitlines()]
    if router:
        lines += ["router_settings:"] + ["  " + l for l in router.strip().splitlines()]
    lines += ["server:", "  workers: 2"]
    if server:
        lines += ["  " + l for l in server.strip().splitlines()]
    return "\n".join(lines) + "\n"
