#!/usr/bin/env python3
"""Sluice's added latency and max throughput in front of mockllm.

Starts mockllm and `sluice serve` (in front of it) on free ports, then, in one
run, measures with `sluice bench`:
  - open loop at fixed request rates, against mockllm directly and through
    sluice, interleaved per rate so both see the same machine state;
  - closed loop at a fixed concurrency, for the max sustained rate of each.
Prints a Markdown table with added latency p50/p99 and the RPS ratio.

Usage: python3 bench/gateway_overhead.py [--rates 200,500,1000,2000]
         [--duration 10] [--concurrency 32] [--stream] [--build build/release]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def start(argv, pattern, stream):
    log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
    p = subprocess.Popen(argv, stdout=log if stream == "out" else subprocess.DEVNULL,
                         stderr=log if stream == "err" else subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        with open(log.name, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{argv[0]} did not start")


def bench(sluice, url, args, extra):
    cmd = [sluice, "bench", "--url", url, "--model", "mock-model", "--json", "--quiet",
           "--duration", str(args.duration), "--warmup", "1", "--max-tokens", "16"] + extra
    if args.stream:
        cmd.append("--stream")
    out = subprocess.run(cmd, capture_output=True, timeout=args.duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"bench failed: {out.stderr.decode()[-500:]}")
    return json.loads(out.stdout)


def lat(r, key, q):
    return r["latency_ms"][q] if key == "e2e" else r["ttft_ms"][q]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="200,500,1000,2000")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--sluice-workers", type=int, default=1)
    args = ap.parse_args()
    sluice = os.path.join(args.build, "sluice")
    mockllm = os.path.join(args.build, "mockllm")

    mock, mport = start([mockllm, "--port", "0", "--tokens", "16"], r"listening on (\d+)", "out")
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write("model_list:\n  - model_name: mock-model\n    params:\n"
              f"      api_base: http://127.0.0.1:{mport}/v1\n      model: mock-model\n"
              f"server:\n  workers: {args.sluice_workers}\n  access_log: false\n  max_inflight: 100000\n"
              "  max_connections: 100000\n")
    cfg.close()
    try:
        gw, gport = start([sluice, "serve", "-c", cfg.name, "--port", "0", "--log-level", "warn"],
                          r"listening on [^ ]*:(\d+)", "err")
    except Exception:
        mock.kill()
        raise
    try:
        rows = []
        for rate in [int(x) for x in args.rates.split(",")]:
            d = bench(sluice, f"http://127.0.0.1:{mport}", args, ["--rps", str(rate)])
            s = bench(sluice, f"http://127.0.0.1:{gport}", args, ["--rps", str(rate)])
            rows.append((rate, d, s))
        dmax = bench(sluice, f"http://127.0.0.1:{mport}", args, ["--concurrency", str(args.concurrency)])
        smax = bench(sluice, f"http://127.0.0.1:{gport}", args, ["--concurrency", str(args.concurrency)])
    finally:
        gw.send_signal(signal.SIGTERM)
        mock.send_signal(signal.SIGTERM)
        gw.wait(10)
        mock.wait(10)
        os.unlink(cfg.name)

    key = "ttft" if args.stream else "e2e"
    print(f"mode: {'streaming (TTFT)' if args.stream else 'non-streaming (end to end)'}, "
          f"{args.duration} s per point, sluice workers {args.sluice_workers}")
    print()
    print("| offered RPS | direct p50 ms | via sluice p50 ms | added p50 ms | direct p99 ms | via sluice p99 ms "
          "| added p99 ms | errors (direct/sluice) |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, d, s in rows:
        errs = (d["errors_total"], s["errors_total"])
        print(f"| {rate} | {lat(d, key, 'p50'):.3f} | {lat(s, key, 'p50'):.3f} | "
              f"{lat(s, key, 'p50') - lat(d, key, 'p50'):.3f} | {lat(d, key, 'p99'):.3f} | "
              f"{lat(s, key, 'p99'):.3f} | {lat(s, key, 'p99') - lat(d, key, 'p99'):.3f} | {errs[0]}/{errs[1]} |")
    print()
    print(f"max sustained (closed loop, concurrency {args.concurrency}): direct {dmax['throughput_rps']:.0f} rps, "
          f"via sluice {smax['throughput_rps']:.0f} rps, ratio {smax['throughput_rps'] / dmax['throughput_rps']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
