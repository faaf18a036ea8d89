"""Integration tests of `sluice serve` in front of real mockllm processes:
non-streaming and streaming relay, OpenAI-shaped errors, timeouts, a cut
stream, an upstream down, retries and fallbacks, client disconnect, request
ids, metrics, slowloris, SIGHUP reload and SIGTERM drain.
Every process is started on a free port and stopped in a finally/with."""

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "alpha beta"}]


def chat(port, extra=None, **kw):
    body = {"model": "mock-model", "messages": MSG}
    body.update(extra or {})
    return harness.post_json(port, CHAT, body, **kw)


def assert_openai_error(r, status, param=None, code=None):
    check_eq(r.status, status, "status")
    check(r.headers.get("content-type", "").startswith("application/json"), f"content-type {r.headers}")
    e = r.json()["error"]
    check(set(e.keys()) == {"message", "type", "param", "code"}, f"error keys {e}")
    check(isinstance(e["message"], str) and e["message"], "message")
    if param is not None:
        check_eq(e["param"], param, "param")
    if code is not None:
        check_eq(e["code"], code, "code")
    return e


def mock_stats(mock):
    return harness.get_json(mock.port, "/stats").json()


def test_non_streaming(mock):
    with harness.Sluice(harness.mock_config([mock.port])) as s:
        r = chat(s.port, {"max_tokens": 4})
        check_eq(r.status, 200, "status")
        j = r.json()
        check_eq(j["choices"][0]["message"]["content"], "alpha beta alpha beta", "content")
        check_eq(j["usage"]["completion_tokens"], 4, "usage")
        check(len(r.headers.get("x-request-id", "")) == 32, "generated request id")
        r = harness.post_json(s.port, "/v1/completions", {"model": "mock-model", "prompt": "one two three",
                                                          "max_tokens": 2})
        check_eq(r.json()["choices"][0]["text"], "one two", "completion text")
        r = harness.post_json(s.port, "/v1/embeddings", {"model": "mock-model", "input": ["a", "b"]})
        check_eq(r.status, 200, "embeddings")
        check_eq(len(r.json()["data"]), 2, "two vectors")
        deadline = time.time() + 5
        while time.time() < deadline and len(s.access_log()) < 3:
            time.sleep(0.05)
        log = s.access_log()
        check(len(log) >= 3, "access log lines")
        check_eq(log[0]["status"], 200, "log status")
        check_eq(log[0]["completion_tokens"], 4, "log tokens")
        check_eq(log[0]["backend"], "mock-model#0", "log backend")


def test_streaming_and_usage(mock):
    with harness.Sluice(harness.mock_config([mock.port])) as s:
        res = harness.sse_events(s.port, CHAT, {"model": "mock-model", "messages": MSG, "stream": True,
                                                "max_tokens": 3})
        check_eq(res.status, 200, "status")
        check(res.headers["content-type"].startswith("text/event-stream"), "content type")
        check(res.complete and res.done, f"clean end with [DONE]: {res.events}")
        chunks = res.json_events()
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        check_eq(text, "alpha beta alpha", "streamed text")
        check(all("usage" not in c or c["usage"] is None for c in chunks), "no usage chunk unless asked")
        res = harness.sse_events(s.port, CHAT, {"model": "mock-model", "messages": MSG, "stream": True,
                                                "max_tokens": 3, "stream_options": {"include_usage": True}})
        last = res.json_events()[-1]
        check_eq(last["choices"], [], "usage chunk has no choices")
        check_eq(last["usage"]["completion_tokens"], 3, "usage in the last chunk")
        m = harness.get_json(s.port, "/metrics").body.decode()
        check('sluice_time_to_first_token_seconds_count{model="mock-model"} 2' in m, "ttft histogram")
        check('sluice_tokens_total{model="mock-model",kind="completion"} 6' in m, "token counter")


def test_validation_errors(mock):
    with harness.Sluice(harness.mock_config([mock.port])) as s:
        p = s.port
        cases = [
            ({"model": "mock-model", "messages": MSG, "temperature": 3}, "temperature"),
            ({"model": "mock-model", "messages": MSG, "top_p": -0.1}, "top_p"),
            ({"model": "mock-model", "messages": MSG, "n": 0}, "n"),
            ({"model": "mock-model", "messages": MSG, "max_tokens": 0}, "max_tokens"),
            ({"model": "mock-model", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
            ({"model": "mock-model", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
            ({"model": "mock-model", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
            ({"model": "mock-model"}, "messages"),
            ({"messages": MSG}, "model"),
            ({"model": "mock-model", "messages": MSG, "stream": "yes"}, "stream"),
            ({"model": "mock-model", "messages": MSG, "api_base": "http://169.254.169.254/"}, "api_base"),
        ]
        for body, param in cases:
            assert_openai_error(harness.post_json(p, CHAT, body), 400, param=param)
        e = assert_openai_error(harness.request(p, "POST", CHAT, body=b"{not json"), 400)
        check_eq(e["code"], "invalid_json", "invalid json code")
        assert_openai_error(chat(p, {"model": "no-such-model"}), 404, code="model_not_found")
        assert_openai_error(harness.request(p, "GET", CHAT), 405)
        assert_openai_error(harness.request(p, "DELETE", "/v1/models"), 405)
        assert_openai_error(harness.request(p, "GET", "/v1/nothing"), 404)
        assert_openai_error(harness.get_json(p, "/v1/models/nope"), 404, code="model_not_found")
        # a body over the 8 MiB limit is refused from its Content-Length, before it is read
        c = socket.create_connection(("127.0.0.1", p))
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (9 << 20))
        c.settimeout(10)
        raw = b""
        while b"}}" not in raw:
            d = c.recv(65536)
            if not d:
                break
            raw += d
        c.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 413"), f"413 status line: {head[:40]!r}")
        e = json.loads(body)["error"]
        check_eq(e["code"], "request_too_large", "413 code")
        # the server is still fine afterwards
        check_eq(chat(p).status, 200, "after errors")
        models = harness.get_json(p, "/v1/models").json()
        check_eq([m["id"] for m in models["data"]], ["mock-model"], "models list")
        check_eq(harness.get_json(p, "/v1/models/mock-model").json()["id"], "mock-model", "model object")


def test_auth():
    with harness.start_mockllm() as mock:
        cfg = harness.mock_config([mock.port], server="api_keys: [os.environ/TEST_SLUICE_KEY]")
        env = dict(os.environ, TEST_SLUICE_KEY="sk-test-123")
        with harness.Sluice(cfg, env=env) as s:
            assert_openai_error(chat(s.port), 401, code="invalid_api_key")
            assert_openai_error(chat(s.port, headers={"Authorization": "Bearer wrong"}), 401)
            check_eq(chat(s.port, headers={"Authorization": "Bearer sk-test-123"}).status, 200, "good key")
            assert_openai_error(harness.get_json(s.port, "/v1/models"), 401)
            check_eq(harness.get_json(s.port, "/v1/models", headers={"Authorization": "Bearer sk-test-123"}).status,
                     200, "models with the key")
            check_eq(harness.get_json(s.port, "/healthz").status, 200, "health needs no key")
            check("sk-test-123" not in s.stderr(), "the key never reaches the log")


def test_upstream_errors_and_retries():
    with harness.start_mockllm() as mock:
        cfg = harness.mock_config([mock.port], router="num_retries: 2\nretry_backoff_ms: 1")
        with harness.Sluice(cfg) as s:
            before = mock_stats(mock)["requests"]
            e = assert_openai_error(chat(s.port, {"mock": {"status": 500}}), 502, code="upstream_error")
            check("500" in e["message"], "message names the upstream status")
            check_eq(mock_stats(mock)["requests"] - before, 3, "1 attempt + 2 retries")
            # a 400 from the upstream is final: no retry, passed on as is
            before = mock_stats(mock)["requests"]
            assert_openai_error(chat(s.port, {"mock": {"status": 400}}), 400)
            check_eq(mock_stats(mock)["requests"] - before, 1, "no retry on 4xx")
            # 429 with Retry-After becomes a 429 with Retry-After; the backend
            # is paused for that long, so it is not retried (not hammered)
            before = mock_stats(mock)["requests"]
            r = chat(s.port, {"mock": {"status": 429, "retry_after": 7}})
            assert_openai_error(r, 429)
            check_eq(r.headers.get("retry-after"), "7", "retry-after passed on")
            check_eq(mock_stats(mock)["requests"] - before, 1, "a paused backend is not retried")
            m = harness.get_json(s.port, "/metrics").body.decode()
            # 2 retries for the 500, none for the 400, none for the 429
            check('sluice_upstream_retries_total{model="mock-model"} 2' in m, "retries counted:\n" + m)
            b = harness.get_json(s.port, "/admin/backends").json()["backends"][0]
            check(b["paused_ms_left"] > 5000, f"paused for the Retry-After: {b}")


def test_upstream_down_and_fallback():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    with harness.start_mockllm() as mock:
        cfg = ("model_list:\n"
               "  - model_name: primary\n"
               "    params: {api_base: 'http://127.0.0.1:%d/v1', model: m}\n"
               "  - model_name: backup\n"
               "    params: {api_base: 'http://127.0.0.1:%d/v1', model: mock-model}\n"
               "router_settings:\n  num_retries: 1\n  retry_backoff_ms: 1\n"
               "  fallbacks: [{primary: [backup]}]\n"
               "server:\n  workers: 1\n") % (dead_port, mock.port)
        with harness.Sluice(cfg) as s:
            r = harness.post_json(s.port, CHAT, {"model": "primary", "messages": MSG, "max_tokens": 2})
            check_eq(r.status, 200, "fallback answered")
            check_eq(r.json()["choices"][0]["message"]["content"], "alpha beta", "from the backup")
            r = harness.post_json(s.port, CHAT, {"model": "primary", "messages": MSG, "stream": True})
            check_eq(r.status, 200, "streaming fallback")
            m = harness.get_json(s.port, "/metrics").body.decode()
            check('sluice_fallbacks_total{model="primary",to="backup"} 2' in m, "fallback metric")
        cfg_nofb = harness.mock_config([dead_port], router="num_retries: 1\nretry_backoff_ms: 1")
        with harness.Sluice(cfg_nofb) as s:
            e = assert_openai_error(chat(s.port), 502, code="upstream_error")
            check("connect" in e["message"].lower(), f"says it could not connect: {e['message']}")


def test_timeouts():
    with harness.start_mockllm() as mock:
        cfg = harness.mock_config([mock.port], extra_params="timeout: 0.5\nstream_timeout: 0.3",
                                  router="num_retries: 0")
        with harness.Sluice(cfg) as s:
            t0 = time.time()
            assert_openai_error(chat(s.port, {"mock": {"ttft_ms": 3000}}), 504, code="timeout")
            check(time.time() - t0 < 2.5, "answered at the timeout, not after the upstream")
            # a stream whose upstream stalls mid-way ends with an SSE error event
            res = harness.sse_events(s.port, CHAT, {"model": "mock-model", "messages": MSG, "stream": True,
                                                    "max_tokens": 50, "mock": {"tps": 2}}, timeout=10)
            check(res.complete, f"stream ended cleanly: {res.error}")
            check(not res.done, "no [DONE] after a failure")
            last = json.loads(res.events[-1])
            check_eq(last["error"]["code"], "timeout", "error event")


def test_mid_stream_cut():
    with harness.start_mockllm() as mock:
        with harness.Sluice(harness.mock_config([mock.port])) as s:
            before = mock_stats(mock)["requests"]
            res = harness.sse_events(s.port, CHAT, {"model": "mock-model", "messages": MSG, "stream": True,
                                                    "max_tokens": 20, "mock": {"cut_after": 3}})
            check_eq(res.status, 200, "status")
            check(res.complete, f"the client stream ends cleanly: {res.error}")
            check(len(res.events) >= 2, "some chunks arrived")
            err = json.loads(res.events[-1])
            check("error" in err and err["error"]["code"] == "upstream_error", f"SSE error event {err}")
            check_eq(mock_stats(mock)["requests"] - before, 1, "no retry after bytes were sent")
            check_eq(chat(s.port).status, 200, "next request fine")


def test_client_disconnect_cancels_upstream():
    with harness.start_mockllm() as mock:
        with harness.Sluice(harness.mock_config([mock.port])) as s:
            # a slow stream: read two events, then drop the connection
            c = socket.create_connection(("127.0.0.1", s.port))
            body = json.dumps({"model": "mock-model", "messages": MSG, "stream": True, "max_tokens": 1000,
                               "mock": {"tps": 20}})
            c.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            got = b""
            while got.count(b"data:") < 2:
                got += c.recv(4096)
            conns_before = mock_stats(mock)["connections"]
            c.close()
            deadline = time.time() + 5
            while time.time() < deadline and mock_stats(mock)["active_requests"] > 0:
                time.sleep(0.05)
            check_eq(mock_stats(mock)["active_requests"], 0, "upstream transfer cancelled")
            # the cancelled connection is not reused: the next request opens a new one
            check_eq(chat(s.port).status, 200, "next request")
            check(mock_stats(mock)["connections"] > conns_before, "a new upstream connection")
            # a non-streaming request whose client leaves is cancelled too (liveness sweep)
            c = socket.create_connection(("127.0.0.1", s.port))
            body = json.dumps({"model": "mock-model", "messages": MSG, "mock": {"ttft_ms": 20000}})
            c.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            deadline = time.time() + 5
            while time.time() < deadline and mock_stats(mock)["active_requests"] == 0:
                time.sleep(0.05)
            c.close()
            deadline = time.time() + 5
            while time.time() < deadline and mock_stats(mock)["active_requests"] > 0:
                time.sleep(0.05)
            check_eq(mock_stats(mock)["active_requests"], 0, "non-streaming transfer cancelled")
            deadline = time.time() + 5
            while time.time() < deadline and not any(l["status"] == 499 for l in s.access_log()):
                time.sleep(0.05)
            check(any(l["status"] == 499 for l in s.access_log()), "a 499 in the access log")


def test_request_id_and_health(mock):
    with harness.Sluice(harness.mock_config([mock.port])) as s:
        r = chat(s.port, headers={"X-Request-Id": "abc-123"})
        check_eq(r.headers.get("x-request-id"), "abc-123", "echoed")
        check_eq(harness.get_json(s.port, "/healthz").status, 200, "healthz")
        check_eq(harness.get_json(s.port, "/readyz").status, 200, "readyz")
        m = harness.get_json(s.port, "/metrics")
        check(m.headers["content-type"].startswith("text/plain"), "metrics content type")
        check('sluice_requests_total{model="mock-model",backend="mock-model#0",status="200"} 1' in m.body.decode(),
              "requests counter")
        check("sluice_requests_in_flight 0" in m.body.decode(), "in-flight gauge")
    with harness.Sluice("model_list: []\n") as s:
        check_eq(harness.get_json(s.port, "/readyz").status, 503, "not ready without backends")


def test_slowloris(mock):
    with harness.Sluice(harness.mock_config([mock.port], server="timeouts: {header: 1}")) as s:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never finish
        c.settimeout(5)
        t0 = time.time()
        try:
            data = c.recv(4096)
            while data:
                data = c.recv(4096)
        except (ConnectionResetError, socket.timeout):
            pass
        check(time.time() - t0 < 4, "slow client cut off at the header timeout")
        c.close()
        check_eq(chat(s.port).status, 200, "the worker still serves")


def test_overload_503_and_connection_cap():
    with harness.start_mockllm() as mock:
        # queue.max 0: a request that finds no capacity is shed at once
        cfg = harness.mock_config([mock.port], extra_params="max_concurrency: 1",
                                  server="max_connections: 3", router="queue: {max: 0}")
        with harness.Sluice(cfg) as s:
            result = {}

            def slow():
                result["r"] = chat(s.port, {"mock": {"ttft_ms": 1500}})

            t = threading.Thread(target=slow)
            t.start()
            deadline = time.time() + 5
            while time.time() < deadline and mock_stats(mock)["active_requests"] == 0:
                time.sleep(0.02)
            t0 = time.time()
            r = chat(s.port)
            e = assert_openai_error(r, 503, code="overloaded")
            check(time.time() - t0 < 1.0, "shed at once, not queued")
            check(r.headers.get("retry-after", "").isdigit(), f"Retry-After: {r.headers}")
            check("capacity" in e["message"], e["message"])
            t.join()
            check_eq(result["r"].status, 200, "the admitted request finished")
            # connections beyond server.max_connections are closed at once
            # each held connection is proven accepted by one keep-alive request
            held = []
            for _ in range(3):
                h = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
                h.request("GET", "/healthz")
                check_eq(h.getresponse().read(), b'{"status":"ok"}', "held connection served")
                held.append(h)
            extra = socket.create_connection(("127.0.0.1", s.port))
            extra.settimeout(3)
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                got = extra.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
            check_eq(got, b"", "the 4th connection is closed without an answer")
            extra.close()
            for c in held:
                c.close()
            time.sleep(0.3)
            check_eq(chat(s.port).status, 200, "served again once connections closed")


def test_sighup_reload():
    with harness.start_mockllm() as mock:
        with harness.Sluice(harness.mock_config([mock.port])) as s:
            # a slow in-flight request keeps the old snapshot
            result = {}

            def slow():
                result["r"] = chat(s.port, {"mock": {"ttft_ms": 800}})

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.2)
            s.write_config(harness.mock_config([mock.port], model="renamed"))
            s.signal(signal.SIGHUP)
            deadline = time.time() + 5
            while time.time() < deadline and "reloaded" not in s.stderr():
                time.sleep(0.05)
            t.join()
            check_eq(result["r"].status, 200, "in-flight request finished on the old config")
            check_eq(chat(s.port, {"model": "renamed"}).status, 200, "new model served")
            assert_openai_error(chat(s.port), 404)
            # a bad config is rejected and the old one stays
            s.write_config("model_list:\n  - model_name: x\n    params: {api_base: 'ftp://nope', model: m}\n")
            s.signal(signal.SIGHUP)
            deadline = time.time() + 5
            while time.time() < deadline and "rejected" not in s.stderr():
                time.sleep(0.05)
            check("rejected" in s.stderr(), "rejection logged")
            check_eq(chat(s.port, {"model": "renamed"}).status, 200, "old config still in force")
            # the per-worker series cache follows the snapshot: every label is right and no
            # count is lost or given to the old names
            m = harness.get_json(s.port, "/metrics").body.decode()
            for line in ('sluice_requests_total{model="mock-model",backend="mock-model#0",status="200"} 1',
                         'sluice_requests_total{model="renamed",backend="renamed#0",status="200"} 2',
                         'sluice_upstream_attempts_total{backend="mock-model#0",outcome="ok"} 1',
                         'sluice_upstream_attempts_total{backend="renamed#0",outcome="ok"} 2',
                         'sluice_request_duration_seconds_count{model="renamed"} 2'):
                check(line in m, f"metrics after reload: {line}\n{m}")


def test_sigterm_drain():
    with harness.start_mockllm() as mock:
        s = harness.Sluice(harness.mock_config([mock.port], server="timeouts: {drain: 10}"))
        try:
            result = {}

            def stream():
                result["r"] = harness.sse_events(s.port, CHAT, {"model": "mock-model", "messages": MSG,
                                                                "stream": True, "max_tokens": 10,
                                                                "mock": {"tps": 10}}, timeout=15)

            t = threading.Thread(target=stream)
            t.start()
            # an idle keep-alive connection must not keep the server from stopping
            idle = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            idle.request("GET", "/healthz")
            check_eq(idle.getresponse().read(), b'{"status":"ok"}', "keep-alive request")
            time.sleep(0.3)
            s.signal(signal.SIGTERM)
            time.sleep(0.2)
            # new connections are refused while draining
            refused = False
            try:
                chat(s.port, timeout=2)
            except OSError:
                refused = True
            check(refused, "no new connections while draining")
            t.join()
            r = result["r"]
            check(r.complete and r.done, f"in-flight stream finished: {r.events[-2:]}, {r.error}")
            check_eq(len(r.json_events()), 11, "10 tokens + the finish chunk")
            check_eq(s.p.wait(10), 0, "clean exit")
            idle.close()
        finally:
            s.stop()


def main():
    suite = harness.Suite()
    with harness.start_mockllm() as mock:
        for fn in (test_non_streaming, test_streaming_and_usage, test_validation_errors,
                   test_request_id_and_health, test_slowloris):
            suite.run(fn, mock)
    for fn in (test_auth, test_upstream_errors_and_retries, test_upstream_down_and_fallback, test_timeouts,
               test_mid_stream_cut, test_client_disconnect_cancels_upstream,
               test_overload_503_and_connection_cap, test_sighup_reload,
               test_sigterm_drain):
        suite.run(fn)
    return suite.report()


if __name__ == "__main__":
    sys.exit(main())
