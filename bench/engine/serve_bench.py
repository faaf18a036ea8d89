#!/usr/bin/env python3
"""Serving benchmark of the local engine: `sluice bench` and streaming
clients against `sluice serve` with `provider: local`.

usage: bench/engine/serve_bench.py MODEL.gguf [--threads N] [--rounds R] [--quick]
                                    [--only throughput|itl]

MODEL is a GGUF with a byte-level vocabulary (bench_engine_make_model
writes one: every prompt byte is one token and there is no end token, so
every request generates exactly max_tokens). Prints three tables:

1. aggregate decode tokens/s at 1, 4, 16 and 64 concurrent streams
   (closed loop, `sluice bench --stream`, 32-byte prompts), as the median
   over --rounds rounds that alternate the levels, and the ratio of the
   medians to one stream's;
2. time to first token for a request whose 1000-token prefix is cached,
   against the same request cold (a fresh prefix each time);
3. inter-token latency p50/p99 of 4 running streams while 1000-token
   prompts keep arriving, with prefill_chunk 64 and 256 (chunked) and 4096 (a
   whole prompt in one step).
Everything runs in one process tree on this machine; the numbers are as
noisy as the machine is.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "integration"))
import harness  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "release", "sluice"))


def config(model, threads, prefill_chunk, max_seqs=64):
    return ("model_list:\n"
            "  - model_name: m\n"
            "    params:\n"
            "      provider: local\n"
            f"      model: {os.path.abspath(model)}\n"
            "      ctx_size: 2048\n"
            f"      max_seqs: {max_seqs}\n"
            f"      kv_cache_mb: 2048\n"
            f"      threads: {threads}\n"
            f"      prefill_chunk: {prefill_chunk}\n"
            "router_settings:\n"
            "  queue: {max: 1000, timeout: 600s}\n"
            "server:\n  workers: 1\n  access_log: false\n")


def wait_ready(s):
    deadline = time.time() + 300
    while time.time() < deadline:
        if harness.get_json(s.port, "/readyz").status == 200:
            return
        time.sleep(0.2)
    raise RuntimeError("model did not load")


def bench(port, conc, requests, max_tokens):
    out = subprocess.run([SLUICE, "bench", "--url", f"http://127.0.0.1:{port}/v1", "--model", "m",
                          "--endpoint", "completions", "--stream", "--concurrency", str(conc),
                          "--requests", str(requests), "--max-tokens", str(max_tokens),
                          "--prompt", "x" * 32, "--json", "--quiet", "--timeout", "600",
                          "--body-extra", '{"stream_options":{"include_usage":true}}'],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def stream_times(port, prompt, max_tokens):
    """Returns (ttft_s, [inter-chunk gaps in s]) of one streamed completion."""
    t0 = time.time()
    stamps = []
    res = harness.sse_events(port, "/v1/completions",
                             {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                              "stream": True}, timeout=600,
                             on_event=lambda ev: stamps.append(time.time()) if ev != "[DONE]" else None)
    if not res.done:
        raise RuntimeError(f"stream failed: {res.error}")
    return stamps[0] - t0, [b - a for a, b in zip(stamps, stamps[1:])]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds over all concurrency levels; the table gives medians")
    ap.add_argument("--only", choices=("throughput", "itl"),
                    help="run only the throughput + cached-prefix part, or only the ITL part")
    a = ap.parse_args()
    rnd = random.Random(1)
    print(f"model {a.model}, {a.threads} threads", flush=True)

    # 1. aggregate decode throughput
    if a.only != "itl":
        throughput_and_ttft(a, rnd)
    if a.only != "throughput":
        itl(a)


def throughput_and_ttft(a, rnd):
    with harness.Sluice(config(a.model, a.threads, 256)) as s:
        wait_ready(s)
        bench(s.port, 1, 2, 8)  # warm the page cache and the pool
        levels = (1, 4, 16, 64)
        runs = {conc: [] for conc in levels}
        ttfts = {conc: [] for conc in levels}
        # Rounds alternate the levels, so a noisy stretch of the machine
        # lands on every level rather than on one; the table gives medians.
        for rnd_i in range(a.rounds):
            for conc in levels:
                # one stream gets 4 requests (128 tokens): a shorter run is
                # dominated by the noise of a single slow moment
                n = max(4, conc * (1 if a.quick else 2))
                r = bench(s.port, conc, n, 32)
                runs[conc].append(r["output_tokens_per_s"])
                ttfts[conc].append(r["ttft_ms"]["p50"])
                print(f"  round {rnd_i + 1}: {conc:3d} streams: {r['output_tokens_per_s']:.1f} tok/s "
                      f"({r['output_tokens']} tokens)", flush=True)
        base = statistics.median(runs[1])
        print(f"\n| streams | aggregate tokens/s, median of {a.rounds} | range | x one stream (medians) "
              "| TTFT p50 ms |\n|---|---|---|---|---|")
        for conc in levels:
            m = statistics.median(runs[conc])
            print(f"| {conc} | {m:.1f} | {min(runs[conc]):.1f}-{max(runs[conc]):.1f} | {m / base:.2f} "
                  f"| {statistics.median(ttfts[conc]):.0f} |")

        # 2. TTFT with a cached 1000-token prefix against cold
        prefix = "".join(rnd.choice("abcdefghij ") for _ in range(1000))
        stream_times(s.port, prefix + " question 0", 1)  # fills the cache
        cold, warm = [], []
        for i in range(2 if a.quick else 4):
            fresh = "".join(rnd.choice("klmnopqrst ") for _ in range(1000))
            cold.append(stream_times(s.port, fresh + f" question {i}", 1)[0])
            warm.append(stream_times(s.port, prefix + f" question {i + 1}", 1)[0])
        c, w = statistics.median(cold), statistics.median(warm)
        print("\n| 1000-token prefix | TTFT median ms |\n|---|---|")
        print(f"| cold | {c * 1000:.0f} |\n| cached | {w * 1000:.0f} |\n| speed-up | {c / w:.1f}x |", flush=True)



def itl(a):
    # 3. inter-token latency while long prompts arrive
    print("\n| prefill_chunk | ITL p50 ms | ITL p99 ms | long prompts served |\n|---|---|---|---|")
    for chunk in (64, 256, 4096):
        with harness.Sluice(config(a.model, a.threads, chunk)) as s:
            wait_ready(s)
            gaps, stop, longs = [], threading.Event(), [0]
            lock = threading.Lock()

            def streamer():
                while not stop.is_set():
                    _, g = stream_times(s.port, "y" * 16, 24)
                    with lock:
                        gaps.extend(g)

            def long_prompts():
                r = random.Random(2)
                while not stop.is_set():
                    p = "".join(r.choice("uvwxyz ") for _ in range(1000))
                    stream_times(s.port, p, 1)
                    longs[0] += 1

            ts = [threading.Thread(target=streamer) for _ in range(4)] + [threading.Thread(target=long_prompts)]
            for t in ts:
                t.start()
            time.sleep(20 if a.quick else 45)
            stop.set()
            for t in ts:
                t.join()
            print(f"| {chunk} | {pct(gaps, 0.5) * 1000:.0f} | {pct(gaps, 0.99) * 1000:.0f} | {longs[0]} |",
                  flush=True)


if __name__ == "__main__":
    main()
