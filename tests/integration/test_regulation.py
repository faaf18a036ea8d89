"""Traffic regulation under chaos: real `sluice serve` in front of real
mockllm upstreams that are killed, kept down, flooded and failing.

Scenarios (each asserts from the upstreams' own counters, not only from
what the gateway says about itself):
- an upstream killed (-9) while 100 streams run;
- the herd: requests queued while every upstream is down, then the
  upstreams come back and must only get their slow-start share;
- overload at about ten times the capacity;
- the retry budget against an upstream that answers 500 to everything;
- the admission queue's FIFO order, timeout, metrics and /admin/backends.
"""

import math
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def chat(port, extra=None, timeout=30.0):
    body = {"model": "mock-model", "messages": MSG, "max_tokens": 4}
    body.update(extra or {})
    return harness.post_json(port, CHAT, body, timeout=timeout)


def mock_stats(mock):
    return harness.get_json(mock.port, "/stats").json()


def admin(s):
    return harness.get_json(s.port, "/admin/backends").json()


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_threads(fns):
    ts = [threading.Thread(target=f, daemon=True) for f in fns]
    for t in ts:
        t.start()
    return ts


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(text, name_and_labels):
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.split()[-1])
    return None


def test_upstream_killed_mid_stream():
    """Kill -9 one of three upstreams while 100 streams run: every stream
    ends complete or with a clean SSE error (none hangs), and new requests
    stop going to the dead backend after one failure."""
    mocks = [harness.start_mockllm("--tps", "25") for _ in range(3)]
    try:
        ports = [m.port for m in mocks]
        cfg = harness.mock_config(ports, extra_params="stream_timeout: 10",
                                  router="num_retries: 2\nretry_backoff_ms: 1\nrouting_strategy: round-robin")
        with harness.Sluice(cfg) as s:
            results = [None] * 100

            def stream(i):
                results[i] = harness.sse_events(
                    s.port, CHAT, {"model": "mock-model", "messages": MSG, "stream": True, "max_tokens": 60},
                    timeout=40)

            ts = run_threads([lambda i=i: stream(i) for i in range(100)])
            wait_for(lambda: sum(mock_stats(m)["active_requests"] for m in mocks) >= 100, 20,
                     "100 streams in progress")
            victim = mocks[1]
            on_victim = mock_stats(victim)["active_requests"]
            check(on_victim >= 10, f"the victim carries streams ({on_victim})")
            victim.p.kill()
            victim.p.wait()
            for t in ts:
                t.join(60)
            check(not any(t.is_alive() for t in ts), "no stream hangs")
            done = errored = 0
            for r in results:
                check(r is not None and r.status == 200, f"stream answered: {r and r.status}")
                check(r.complete, f"the HTTP body ended cleanly: {r.error}")
                evs = r.json_events()
                if r.done:
                    check(not any("error" in e for e in evs), "a complete stream has no error event")
                    done += 1
                else:
                    check(evs and "error" in evs[-1], f"an unfinished stream ends with an error event: {r.events[-3:]}")
                    errored += 1
            check_eq(done + errored, 100, "every stream accounted for")
            check(errored >= 1 and errored <= on_victim, f"errors only on the victim's streams ({errored})")

            # new requests: the dead backend gets at most one more failed attempt
            m0 = harness.get_json(s.port, "/metrics").body.decode()
            vid = "mock-model#1"
            before = metric(m0, 'sluice_upstream_attempts_total{backend="%s",outcome="error"}' % vid) or 0
            for _ in range(20):
                check_eq(chat(s.port).status, 200, "new requests succeed")
            m1 = harness.get_json(s.port, "/metrics").body.decode()
            after = metric(m1, 'sluice_upstream_attempts_total{backend="%s",outcome="error"}' % vid) or 0
            check(after - before <= 1, f"the dead backend was tried {after - before} times")
            st = [b for b in admin(s)["backends"] if b["id"] == vid][0]
            check_eq(st["state"], "open", "the dead backend is ejected")
            check('sluice_backend_state{backend="%s",state="open"} 1' % vid in m1, "circuit state in /metrics")
    finally:
        for m in mocks:
            m.stop()


def ramp_limit(t_ms, max_conc, floor, window_ms):
    f = min(1.0, max(0.0, t_ms / window_ms))
    return max(1, math.floor(max_conc * (floor + (1 - floor) * f)))


def test_herd_after_outage():
    """Every upstream is down while requests queue; when they come back, no
    upstream gets more than its ramped share of concurrency."""
    ports = [free_port(), free_port()]
    max_conc, floor, window_ms = 10, 0.1, 3000
    cfg = harness.mock_config(
        ports, extra_params=f"max_concurrency: {max_conc}\nconnect_timeout: 1",
        router=("num_retries: 1\nretry_backoff_ms: 1\n"
                "queue: {max: 500, timeout: 30s}\n"
                f"slow_start: {{window: {window_ms}ms, floor: {floor}}}\n"
                "health_check: {path: /models, interval: 100ms, timeout: 500ms}"))
    with harness.Sluice(cfg) as s:
        wait_for(lambda: all(b["unhealthy"] for b in admin(s)["backends"]), 10, "both backends marked down")
        results = []
        lock = threading.Lock()

        def client():
            t0 = time.time()
            r = chat(s.port, {"mock": {"ttft_ms": 150}}, timeout=60)
            with lock:
                results.append((r.status, r.headers.get("retry-after"), time.time() - t0))

        n = 120
        ts = run_threads([client] * n)
        wait_for(lambda: admin(s)["groups"][0]["queue_depth"] >= n, 20, "the herd queued")
        m = harness.get_json(s.port, "/metrics").body.decode()
        check_eq(metric(m, 'sluice_queue_depth{model="mock-model"}'), float(n), "queue depth in /metrics")
        mocks = [harness.start_mockllm("--port", str(p)) for p in ports]
        try:
            for t in ts:
                t.join(90)
            check(not any(t.is_alive() for t in ts), "every client got an answer")
            check_eq(len(results), n, "answers")
            for status, ra, _ in results:
                check(status == 200 or (status == 503 and ra and ra.isdigit()), f"200 or 503+Retry-After: {status}")
            ok = sum(1 for r in results if r[0] == 200)
            check(ok >= n * 0.9, f"the queue was served once capacity returned ({ok}/{n})")
            grew = False
            for mk in mocks:
                tl = mock_stats(mk)["timeline"]
                for ms, _cum, peak in tl:
                    # the ramp starts when the health check sees the upstream,
                    # at or after the upstream's own start (its timeline's 0),
                    # so a limit computed from its start is an upper bound;
                    # +100: arrivals anywhere in the bucket; +1: a health check
                    lim = ramp_limit(ms + 100, max_conc, floor, window_ms) + 1
                    check(peak <= lim, f"at {ms} ms an upstream had {peak} in progress, ramp allows {lim}: {tl}")
                early = [p for ms, _c, p in tl if ms < 300]
                check(not early or max(early) <= 3, f"started near the floor: {tl[:5]}")
                grew = grew or any(p >= 6 for ms, _c, p in tl if ms >= window_ms * 0.6)
            check(grew, "the ramp reached most of the limit")
        finally:
            for mk in mocks:
                mk.stop()


def test_overload_sheds_fast_and_bounded():
    """About ten times the capacity: admitted requests finish within the
    queue timeout plus service time, shed ones get 503 + Retry-After at once,
    and the gateway's memory stays flat between two overload rounds."""
    with harness.start_mockllm() as mock:
        # capacity: 4 in flight x (1 / 0.2 s) = 20 requests/s
        cfg = harness.mock_config([mock.port], extra_params="max_concurrency: 4",
                                  router="num_retries: 0\nqueue: {max: 16, timeout: 1s}")
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")
        with harness.Sluice(cfg, env=env) as s:
            def round_(rate, seconds):
                res = []
                lock = threading.Lock()

                def one():
                    t0 = time.time()
                    try:
                        r = chat(s.port, {"mock": {"ttft_ms": 200}}, timeout=20)
                        item = (r.status, r.headers.get("retry-after"), time.time() - t0,
                                r.body.decode(errors="replace"))
                    except Exception as e:  # counted as a failure below
                        item = (0, None, time.time() - t0, str(e))
                    with lock:
                        res.append(item)

                ts = []
                start = time.time()
                for i in range(int(rate * seconds)):
                    delay = start + i / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    t = threading.Thread(target=one, daemon=True)
                    t.start()
                    ts.append(t)
                for t in ts:
                    t.join(30)
                return res

            res1 = round_(200, 2.5)
            rss1 = rss_kib(s.p.pid)
            res2 = round_(200, 2.5)
            rss2 = rss_kib(s.p.pid)
            for res in (res1, res2):
                check(all(r[0] in (200, 503) for r in res), f"only 200 or 503: {set(r[0] for r in res)}")
                ok = sorted(r[2] for r in res if r[0] == 200)
                shed = [r for r in res if r[0] == 503]
                check(len(ok) >= 20, f"capacity was used ({len(ok)} admitted)")
                check(len(shed) >= len(res) / 2, f"most of a 10x overload is shed ({len(shed)}/{len(res)})")
                check(all(r[1] and r[1].isdigit() for r in shed), "every 503 has Retry-After")
                p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
                # queue timeout 1 s + service 0.2 s + slack for a loaded 2-core machine
                check(p99 < 2.5, f"admitted p99 {p99:.2f}s is bounded by the queue timeout")
                full = sorted(r[2] for r in shed if "queue is full" in r[3])
                check(full, "some requests found the queue full")
                check(full[int(len(full) * 0.9)] < 0.5, f"queue-full sheds are immediate (p90 {full[int(len(full) * 0.9)]:.3f}s)")
            served = mock_stats(mock)["requests"]
            check(served <= 2 * 5.5 * 20 + 30, f"the upstream never saw more than its capacity ({served})")
            check(rss2 - rss1 < 24 * 1024, f"RSS stays bounded: {rss1} KiB then {rss2} KiB")
            m = harness.get_json(s.port, "/metrics").body.decode()
            check(metric(m, 'sluice_rejected_total{reason="queue_full"}') > 0, "queue_full rejections counted")
            check('sluice_queue_wait_seconds_count{model="mock-model"}' in m, "queue wait histogram")


def test_retry_budget_caps_retries():
    """An upstream that answers 500 to everything sees at most
    (1 + budget ratio) x the offered requests, not (1 + num_retries) x."""
    with harness.start_mockllm("--error-rate", "1", "--error-status", "500") as mock:
        cfg = harness.mock_config([mock.port], router=(
            "num_retries: 3\nretry_backoff_ms: 1\n"
            "retry_budget: {ratio: 0.2, min_per_second: 0, window: 60s}\n"
            "outlier_ejection: {consecutive_failures: 0, max_percent: 0}"))
        with harness.Sluice(cfg) as s:
            n = 200
            statuses = []
            lock = threading.Lock()

            def worker(k):
                for _ in range(k):
                    r = chat(s.port)
                    with lock:
                        statuses.append(r.status)

            ts = run_threads([lambda: worker(n // 8)] * 8)
            for t in ts:
                t.join(60)
            check_eq(len(statuses), n, "all answered")
            check(all(st == 502 for st in statuses), f"502 to all: {set(statuses)}")
            seen = mock_stats(mock)["requests"]
            check(seen > n, f"some retries were allowed ({seen})")
            check(seen <= math.ceil(1.2 * n) + 2, f"upstream saw {seen} for {n} requests; budget allows {1.2 * n:.0f}")
            b = admin(s)["retry_budget"]
            check(b["denied"] > 0, f"denied retries counted: {b}")
            m = harness.get_json(s.port, "/metrics").body.decode()
            check(metric(m, 'sluice_retry_budget_total{result="denied"}') == b["denied"], "budget in /metrics")


def test_queue_fifo_timeout_and_admin():
    """Waiters are served first come, first served; one that waits past the
    queue timeout gets 503 + Retry-After; the admin view and metrics agree."""
    with harness.start_mockllm() as mock:
        cfg = harness.mock_config([mock.port], extra_params="max_concurrency: 1",
                                  router="num_retries: 0\nqueue: {max: 10, timeout: 3s}\nrouting_strategy: least-outstanding")
        with harness.Sluice(cfg) as s:
            order = []
            lock = threading.Lock()

            def client(i, ttft):
                r = chat(s.port, {"mock": {"ttft_ms": ttft}, "user": str(i)})
                with lock:
                    order.append((i, r.status))

            first = run_threads([lambda: client(0, 600)])
            wait_for(lambda: mock_stats(mock)["active_requests"] == 1, 5, "first request running")
            rest = []
            for i in range(1, 4):
                rest += run_threads([lambda i=i: client(i, 300)])
                wait_for(lambda i=i: admin(s)["groups"][0]["queue_depth"] == i, 5, f"{i} queued")
            st = admin(s)
            check_eq(st["groups"][0]["strategy"], "least-outstanding", "group strategy")
            check_eq(st["backends"][0]["in_flight"], 1, "in flight")
            for t in first + rest:
                t.join(30)
            check_eq([i for i, _ in order], [0, 1, 2, 3], "served in arrival order")
            check(all(stt == 200 for _, stt in order), f"all served: {order}")
            # a waiter behind a 5 s request times out at 3 s
            slow = run_threads([lambda: chat(s.port, {"mock": {"ttft_ms": 5000}})])
            wait_for(lambda: mock_stats(mock)["active_requests"] == 1, 5, "slow request running")
            t0 = time.time()
            r = chat(s.port)
            waited = time.time() - t0
            check_eq(r.status, 503, "queue timeout answers 503")
            check(2.5 < waited < 4.5, f"after the queue timeout ({waited:.2f}s)")
            check(r.headers.get("retry-after", "").isdigit(), "Retry-After on a queue timeout")
            e = r.json()["error"]
            check_eq(e["code"], "overloaded", "overloaded code")
            for t in slow:
                t.join(30)
            m = harness.get_json(s.port, "/metrics").body.decode()
            check_eq(metric(m, 'sluice_queue_requests_total{model="mock-model",result="timed_out"}'), 1.0,
                     "timed out waiter counted")
            check_eq(metric(m, 'sluice_rejected_total{reason="queue_timeout"}'), 1.0, "queue_timeout rejection")


if __name__ == "__main__":
    suite = harness.Suite()
    suite.run(test_queue_fifo_timeout_and_admin)
    suite.run(test_retry_budget_caps_retries)
    suite.run(test_upstream_killed_mid_stream)
    suite.run(test_herd_after_outage)
    suite.run(test_overload_sheds_fast_and_bounded)
    sys.exit(suite.report())
