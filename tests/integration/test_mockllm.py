"""Integration tests for bench/mockllm (and `sluice bench` against it).

Starts $MOCKLLM_BIN on port 0 and exercises every endpoint, the per-request
"mock" overrides, the fault flags, and the HTTP framing. Prints
"N passed, N failed" and exits non-zero on failure."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"


def chat_body(text, **kw):
    b = {"model": "test-model", "messages": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": text}]}
    b.update(kw)
    return b


def stats(port):
    return harness.get_json(port, "/stats").json()


def t_health_and_models(m):
    r = harness.get_json(m.port, "/health")
    check_eq(r.status, 200, "health status")
    check_eq(r.json(), {"status": "ok"}, "health body")
    r = harness.get_json(m.port, "/v1/models")
    check_eq(r.status, 200, "models status")
    j = r.json()
    check_eq(j["object"], "list", "models object")
    check_eq([d["id"] for d in j["data"]], ["mock-model"], "model ids")
    check_eq(j["data"][0]["object"], "model", "model object")
    r = harness.get_json(m.port, "/v1/models/other-model")
    check_eq(r.json()["id"], "other-model", "model by id")


def t_chat_nonstream(m):
    r = harness.post_json(m.port, CHAT, chat_body("hello world", mock={"tokens": 5}))
    check_eq(r.status, 200, "status")
    check(r.headers["content-type"].startswith("application/json"), "content type")
    j = r.json()
    check_eq(j["object"], "chat.completion", "object")
    check_eq(j["model"], "test-model", "model echoed")
    check(j["id"].startswith("chatcmpl-"), "id prefix")
    check(isinstance(j["created"], int), "created")
    c = j["choices"][0]
    check_eq(c["message"], {"role": "assistant", "content": "hello world hello world hello"}, "message")
    check_eq(c["finish_reason"], "stop", "finish_reason (the reply ended by itself)")
    # prompt words: "be brief" + "hello world"
    check_eq(j["usage"], {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}, "usage")

    # the default length is 16 tokens; max_tokens caps it
    r = harness.post_json(m.port, CHAT, chat_body("a b c"))
    check_eq(r.json()["usage"]["completion_tokens"], 16, "default tokens")
    r = harness.post_json(m.port, CHAT, chat_body("a b c", max_tokens=4))
    j = r.json()
    check_eq(j["choices"][0]["message"]["content"], "a b c a", "capped content")
    check_eq(j["choices"][0]["finish_reason"], "length", "max_tokens cut the reply")
    r = harness.post_json(m.port, CHAT, chat_body("x", max_completion_tokens=2))
    check_eq(r.json()["usage"]["completion_tokens"], 2, "max_completion_tokens")
    # no words in the last user message: "mock"
    r = harness.post_json(m.port, CHAT, chat_body("   ", mock={"tokens": 2}))
    check_eq(r.json()["choices"][0]["message"]["content"], "mock mock", "empty prompt")
    # JSON special characters survive the round trip
    r = harness.post_json(m.port, CHAT, chat_body('say "hi"\\ \u00e9', mock={"tokens": 3}))
    check_eq(r.json()["choices"][0]["message"]["content"], 'say "hi"\\ \u00e9', "escaping")


def t_completions_nonstream(m):
    r = harness.post_json(m.port, COMP, {"model": "m2", "prompt": "one two three", "mock": {"tokens": 4}})
    check_eq(r.status, 200, "status")
    j = r.json()
    check_eq(j["object"], "text_completion", "object")
    check_eq(j["model"], "m2", "model")
    check_eq(j["choices"][0]["text"], "one two three one", "text")
    check_eq(j["usage"]["prompt_tokens"], 3, "prompt tokens")


def t_chat_stream(m):
    body = chat_body("alpha beta gamma", stream=True, stream_options={"include_usage": True},
                     mock={"tokens": 4})
    s = harness.sse_events(m.port, CHAT, body)
    check_eq(s.status, 200, "status")
    check(s.headers["content-type"].startswith("text/event-stream"), "content type")
    check(s.complete, f"complete ({s.error})")
    check(s.done, "ends with [DONE]")
    evs = s.json_events()
    check_eq(len(evs), 4 + 2, "events: 4 tokens, finish, usage")
    check_eq(evs[0]["choices"][0]["delta"].get("role"), "assistant", "first delta role")
    for e in evs:
        check_eq(e["object"], "chat.completion.chunk", "chunk object")
        check_eq(e["model"], "test-model", "chunk model")
        check_eq(e["id"], evs[0]["id"], "same id")
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in evs[:4])
    check_eq(text, "alpha beta gamma alpha", "streamed text")
    check(all(e["choices"][0]["finish_reason"] is None for e in evs[:4]), "no early finish")
    check_eq(evs[4]["choices"][0]["finish_reason"], "stop", "finish chunk")
    check_eq(evs[5]["choices"], [], "usage chunk has empty choices")
    check_eq(evs[5]["usage"], {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}, "usage")

    # without include_usage there is no usage chunk
    s = harness.sse_events(m.port, CHAT, chat_body("x", stream=True, mock={"tokens": 2}))
    check_eq(len(s.json_events()), 3, "events without usage")
    check(s.done, "[DONE]")


def t_completions_stream(m):
    s = harness.sse_events(m.port, COMP, {"prompt": "p q", "stream": True, "mock": {"tokens": 3}})
    check(s.complete and s.done, "complete")
    evs = s.json_events()
    check_eq([e["object"] for e in evs], ["text_completion"] * 4, "objects")
    check_eq("".join(e["choices"][0]["text"] for e in evs), "p q p", "text")
    check_eq(evs[-1]["choices"][0]["finish_reason"], "stop", "finish")


def t_errors(m):
    before = stats(m.port)["errors_injected"]
    r = harness.post_json(m.port, CHAT, chat_body("x", mock={"status": 503, "retry_after": 7}))
    check_eq(r.status, 503, "injected status")
    check_eq(r.headers.get("retry-after"), "7", "retry-after")
    e = r.json()["error"]
    check_eq(e["type"], "server_error", "error type")
    check("message" in e and "param" in e and "code" in e, "error shape")
    r = harness.post_json(m.port, COMP, {"prompt": "x", "mock": {"status": 429}})
    check_eq(r.status, 429, "429")
    check("retry-after" not in r.headers, "no retry-after unless asked")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": "x", "mock": {"status": 500}})
    check_eq(r.status, 500, "embeddings error")
    check_eq(stats(m.port)["errors_injected"], before + 3, "errors_injected counted")

    r = harness.request(m.port, "POST", CHAT, body=b"{not json")
    check_eq(r.status, 400, "bad json")
    check_eq(r.json()["error"]["type"], "invalid_request_error", "bad json type")
    check_eq(r.json()["error"]["param"], None, "param null")
    r = harness.request(m.port, "POST", CHAT, body=b"[1,2]")
    check_eq(r.status, 400, "non-object body")
    r = harness.post_json(m.port, CHAT, {"model": "x"})
    check_eq(r.status, 400, "missing messages")
    check("messages" in r.json()["error"]["message"], "message names the field")
    r = harness.post_json(m.port, CHAT, chat_body("x", mock={"tokens": "lots"}))
    check_eq(r.status, 400, "bad mock option")
    r = harness.post_json(m.port, CHAT, chat_body("x", max_tokens=-1))
    check_eq(r.status, 400, "negative max_tokens")
    r = harness.get_json(m.port, "/nope")
    check_eq(r.status, 404, "unknown path")
    r = harness.get_json(m.port, "/v1/nope")
    check_eq(r.status, 404, "unknown /v1 path")
    r = harness.get_json(m.port, CHAT)
    check_eq(r.status, 405, "wrong method")


def t_cut(m):
    body = chat_body("a b", stream=True, mock={"tokens": 10, "cut_after": 3})
    s = harness.sse_events(m.port, CHAT, body)
    check_eq(s.status, 200, "status")
    check(not s.complete, "stream must break")
    check(not s.done, "no [DONE]")
    check_eq(len(s.events), 3, "exactly 3 chunks before the cut")


def t_hang(m):
    st0 = stats(m.port)
    t0 = time.time()
    try:
        harness.post_json(m.port, CHAT, chat_body("x", mock={"hang": True}), timeout=0.5)
        raise AssertionError("a hung request must not be answered")
    except (socket.timeout, TimeoutError):
        pass
    check(time.time() - t0 >= 0.45, "waited for the client timeout")
    time.sleep(0.1)
    st1 = stats(m.port)
    check_eq(st1["hangs_injected"], st0["hangs_injected"] + 1, "hang counted")
    check_eq(st1["active_requests"], 0, "a hung request ends when the client leaves")


def t_timing(m):
    # ttft 200 ms, then 4 more tokens at 20 tokens/s (50 ms apart)
    times = []
    t0 = time.time()
    s = harness.sse_events(m.port, CHAT, chat_body("a", stream=True,
                                                   mock={"ttft_ms": 200, "tps": 20, "tokens": 5}),
                           on_event=lambda e: times.append(time.time() - t0))
    check(s.done, "done")
    check(times[0] >= 0.19, f"ttft honoured: {times[0]:.3f}")
    total = times[4]
    check(0.38 <= total < 1.5, f"pacing honoured: last token at {total:.3f}s, expected ~0.4")
    # non-streaming: the reply waits for the whole generation
    t0 = time.time()
    r = harness.post_json(m.port, CHAT, chat_body("a", mock={"ttft_ms": 100, "tps": 20, "tokens": 3}))
    dt = time.time() - t0
    check_eq(r.status, 200, "status")
    check(0.19 <= dt < 1.5, f"non-stream delay {dt:.3f}s, expected ~0.2")


def t_stats_and_keepalive(m):
    st0 = stats(m.port)
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=5)
    for _ in range(3):
        c.request("POST", CHAT, body=json.dumps(chat_body("k", mock={"tokens": 1})))
        r = c.getresponse()
        check_eq(r.status, 200, "keep-alive status")
        r.read()
    # a streamed response on the same connection, then another request
    c.request("POST", CHAT, body=json.dumps(chat_body("k", stream=True, mock={"tokens": 2})))
    r = c.getresponse()
    data = r.read()
    check(data.endswith(b"data: [DONE]\n\n"), "stream body")
    c.request("GET", "/v1/models")
    r = c.getresponse()
    r.read()
    check_eq(r.status, 200, "after stream")
    c.close()
    st1 = stats(m.port)
    # the /stats call itself opens one connection
    check_eq(st1["connections"], st0["connections"] + 2, "connections (one reused + stats)")
    check_eq(st1["requests"], st0["requests"] + 5, "requests")
    check_eq(st1["by_path"]["/v1/chat/completions"], st0["by_path"]["/v1/chat/completions"] + 4, "by_path")
    tl = st1["timeline"]
    check(len(tl) >= 1, "timeline")
    check_eq(tl[-1][1], st1["requests"], "timeline ends at the total")
    check(all(tl[i][0] < tl[i + 1][0] and tl[i][1] <= tl[i + 1][1] for i in range(len(tl) - 1)),
          "timeline monotonic")
    check(all(p[0] % 100 == 0 for p in tl), "100 ms buckets")
    # sequential requests: never more than one in progress at an arrival
    check(all(len(p) == 3 and p[2] == 1 for p in tl), f"peak in progress per bucket: {tl}")


def t_embeddings(m):
    r = harness.post_json(m.port, "/v1/embeddings", {"model": "emb", "input": ["hello there", "x"]})
    check_eq(r.status, 200, "status")
    j = r.json()
    check_eq(j["object"], "list", "object")
    check_eq(j["model"], "emb", "model")
    check_eq(len(j["data"]), 2, "two vectors")
    check_eq(j["usage"], {"prompt_tokens": 3, "total_tokens": 3}, "usage")
    for i, d in enumerate(j["data"]):
        check_eq(d["index"], i, "index")
        check_eq(d["object"], "embedding", "object")
        check_eq(len(d["embedding"]), 8, "default dim")
        n = math.sqrt(sum(x * x for x in d["embedding"]))
        check(abs(n - 1) < 1e-5, f"unit norm {n}")
    check(j["data"][0]["embedding"] != j["data"][1]["embedding"], "different inputs differ")
    again = harness.post_json(m.port, "/v1/embeddings", {"input": "hello there"}).json()
    check_eq(again["data"][0]["embedding"], j["data"][0]["embedding"], "deterministic")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": [1, 2, 3]})
    check_eq(len(r.json()["data"]), 1, "token array is one input")
    check_eq(r.json()["usage"]["prompt_tokens"], 3, "token array usage")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": [[1, 2], [3]]})
    check_eq(len(r.json()["data"]), 2, "array of token arrays")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": "hello there", "encoding_format": "base64"})
    import base64
    import struct
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    vals = struct.unpack("<8f", raw)
    check(all(abs(a - b) < 1e-6 for a, b in zip(vals, j["data"][0]["embedding"])), "base64 matches")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": []})
    check_eq(r.status, 400, "empty input")
    r = harness.post_json(m.port, "/v1/embeddings", {"input": 5})
    check_eq(r.status, 400, "bad input")


def raw_exchange(port, data, want_responses, timeout=5):
    """Sends raw bytes and reads until want_responses full responses arrived
    (each with Content-Length). Returns a list of (status, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        out = []
        while len(out) < want_responses:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            if status == 100:
                buf = rest
                continue
            cl = 0
            for ln in lines[1:]:
                k, v = ln.split(b":", 1)
                if k.strip().lower() == b"content-length":
                    cl = int(v)
            while len(rest) < cl:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            out.append((status, rest[:cl]))
            buf = rest[cl:]
        return out
    finally:
        s.close()


def t_http_framing(m):
    b1 = json.dumps(chat_body("one", mock={"tokens": 1})).encode()
    b2 = json.dumps({"prompt": "two", "mock": {"tokens": 1}}).encode()
    req = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(b1) + b1 +
           b"POST " + COMP.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(b2) + b2)
    out = raw_exchange(m.port, req, 2)
    check_eq([s for s, _ in out], [200, 200], "pipelined statuses")
    check_eq(json.loads(out[0][1])["choices"][0]["message"]["content"], "one", "first pipelined")
    check_eq(json.loads(out[1][1])["choices"][0]["text"], "two", "second pipelined")

    # chunked request body, with Expect: 100-continue
    body = json.dumps({"prompt": "chunky", "mock": {"tokens": 2}}).encode()
    half = len(body) // 2
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Expect: 100-continue\r\n\r\n" +
           b"%x\r\n" % half + body[:half] + b"\r\n" +
           b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")
    out = raw_exchange(m.port, req, 1)
    check_eq(out[0][0], 200, "chunked status")
    check_eq(json.loads(out[0][1])["choices"][0]["text"], "chunky chunky", "chunked body")

    out = raw_exchange(m.port, b"GARBAGE\r\n\r\n", 1)
    check_eq(out[0][0], 400, "malformed request line")
    out = raw_exchange(m.port, b"GET /health HTTP/1.0\r\n\r\n", 1)
    check_eq(out[0][0], 200, "HTTP/1.0")


def t_flag_faults():
    with harness.start_mockllm("--error-rate", "1", "--error-status", "429", "--retry-after", "2") as m:
        for _ in range(3):
            r = harness.post_json(m.port, CHAT, chat_body("x"))
            check_eq(r.status, 429, "--error-rate 1")
            check_eq(r.headers.get("retry-after"), "2", "--retry-after")
        r = harness.get_json(m.port, "/health")
        check_eq(r.status, 200, "health is never faulted")
        check_eq(stats(m.port)["errors_injected"], 3, "errors_injected")
    with harness.start_mockllm("--tokens", "3", "--model", "flagged", "--cut-after", "1", "--workers", "2") as m:
        check_eq(harness.get_json(m.port, "/v1/models").json()["data"][0]["id"], "flagged", "--model")
        r = harness.post_json(m.port, COMP, {"prompt": "z"})
        check_eq(r.json()["usage"]["completion_tokens"], 3, "--tokens")
        s = harness.sse_events(m.port, COMP, {"prompt": "z", "stream": True})
        check(not s.complete and len(s.events) == 1, "--cut-after 1")
        s = harness.sse_events(m.port, COMP, {"prompt": "z", "stream": True, "mock": {"cut_after": 100}})
        check(s.done, "mock.cut_after overrides the flag")
    with harness.start_mockllm("--hang-rate", "1") as m:
        try:
            harness.post_json(m.port, CHAT, chat_body("x"), timeout=0.3)
            raise AssertionError("--hang-rate 1 must hang")
        except (socket.timeout, TimeoutError):
            pass
    m = harness.start_mockllm("--crash-after", "2")
    try:
        check_eq(harness.post_json(m.port, CHAT, chat_body("x")).status, 200, "first request")
        try:
            harness.post_json(m.port, CHAT, chat_body("x"), timeout=3)
            raise AssertionError("the 2nd request must crash the process")
        except (ConnectionError, OSError) as e:
            if isinstance(e, socket.timeout):
                raise
        m.p.wait(5)
        check_eq(m.p.returncode, 3, "crash exit status")
    finally:
        m.stop()


def t_sigterm():
    m = harness.start_mockllm()
    try:
        check_eq(harness.get_json(m.port, "/health").status, 200, "up")
        t0 = time.time()
        m.p.send_signal(signal.SIGTERM)
        m.p.wait(5)
        check_eq(m.p.returncode, 0, "exit status on SIGTERM")
        check(time.time() - t0 < 2, "prompt exit")
    finally:
        m.stop()


def run_bench(args):
    binary = harness.env_path("SLUICE_BIN", "build/release/sluice")
    p = subprocess.run([binary, "bench", *args, "--json", "--quiet"], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"sluice bench failed rc={p.returncode}: {p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def t_bench_closed_loop(m):
    st0 = stats(m.port)
    j = run_bench(["--url", f"http://127.0.0.1:{m.port}", "--concurrency", "4", "--duration", "2",
                   "--stream", "--body-extra", '{"mock":{"tokens":8}}'])
    check(j["requests_completed"] > 0, "completed > 0")
    check_eq(j["errors_total"], 0, "no errors")
    check_eq(j["requests_sent"], j["requests_completed"], "sent == completed")
    lat = j["latency_ms"]
    check(0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], f"ordered percentiles {lat}")
    check(j["ttft_ms"]["p50"] <= lat["p50"] + 1e-9, "ttft <= latency")
    check(abs(j["output_tokens"] - 8 * j["requests_completed"]) == 0, "8 tokens per request")
    st1 = stats(m.port)
    served = st1["by_path"]["/v1/chat/completions"] - st0["by_path"]["/v1/chat/completions"]
    check_eq(served, j["requests_sent"], "mockllm saw every request")
    # keep-alive reuse: about `concurrency` connections, far fewer than requests
    conns = st1["connections"] - st0["connections"] - 1
    check(conns <= 8, f"connections reused ({conns} for {served} requests)")


def t_bench_open_loop(m):
    j = run_bench(["--url", f"http://127.0.0.1:{m.port}", "--rps", "50", "--duration", "2",
                   "--endpoint", "completions", "--body-extra", '{"mock":{"ttft_ms":5}}'])
    check_eq(j["errors_total"], 0, "no errors")
    check(90 <= j["requests_completed"] <= 110, f"~100 requests at 50 rps for 2 s, got {j['requests_completed']}")
    lat = j["latency_ms"]
    check(4.0 <= lat["p50"] <= lat["p99"] <= lat["max"], f"latency includes the 5 ms delay: {lat}")
    check(abs(j["throughput_rps"] - 50) < 10, f"throughput {j['throughput_rps']}")


def t_bench_errors(m):
    j = run_bench(["--url", f"http://127.0.0.1:{m.port}", "--concurrency", "2", "--requests", "10",
                   "--body-extra", '{"mock":{"status":503}}'])
    check_eq(j["requests_completed"], 10, "--requests 10")
    check_eq(j["errors"].get("http_5xx"), 10, "5xx class")
    check_eq(j["errors"].get("status", {}).get("503"), 10, "by status")
    j = run_bench(["--url", f"http://127.0.0.1:{m.port}", "--concurrency", "2", "--requests", "6",
                   "--stream", "--body-extra", '{"mock":{"cut_after":1}}'])
    check_eq(j["errors"].get("stream_error"), 6, "cut streams are stream errors")
    j = run_bench(["--url", "http://127.0.0.1:1", "--requests", "3", "--concurrency", "1"])
    check_eq(j["errors"].get("connect"), 3, "connect errors")


def main():
    suite = harness.Suite()
    m = harness.start_mockllm()
    try:
        for t in (t_health_and_models, t_chat_nonstream, t_completions_nonstream, t_chat_stream,
                  t_completions_stream, t_errors, t_cut, t_hang, t_timing, t_stats_and_keepalive,
                  t_embeddings, t_http_framing):
            suite.run(t, m)
        check_eq(m.alive(), True, "mockllm survived")
        if os.environ.get("SL_SKIP_BENCH") != "1":
            for t in (t_bench_closed_loop, t_bench_open_loop, t_bench_errors):
                suite.run(t, m)
    finally:
        m.stop()
    suite.run(t_flag_faults)
    suite.run(t_sigterm)
    return suite.report()


if __name__ == "__main__":
    sys.exit(main())
