#!/usr/bin/env python3
"""A gateway's CPU per request at several loads, for gateways already running.

  python3 bench/relay/cpu_by_load.py --rounds 2 sluice=http://127.0.0.1:PORT1@PID1 nginx=http://127.0.0.1:PORT2@PID2

For each round and load (c1, open loop 1,000 / 5,000 / 10,000 per second,
c64; non-streaming chat, model "mock", 16 tokens) it runs `sluice bench` for
--duration seconds against each gateway in turn and divides the gateway's
CPU time (user + system of all its threads and its descendants', from
/proc/PID/stat, as bench/peers/run.py counts it; give nginx's master) by the
requests completed. Times are in clock ticks (10 ms), so a run should
serve thousands of requests.
"""
import argparse
import json
import os
import subprocess
import sys

LOADS = [["--concurrency", "1"], ["--rps", "1000"], ["--rps", "5000"], ["--rps", "10000"], ["--concurrency", "64"]]

# the peers harness's /proc readers: a process and its descendants, their CPU seconds
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from run import cpu_s, proc_tree  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--sluice", default="build/release/sluice", help="the sluice binary that runs the load")
    ap.add_argument("targets", nargs="+", help="NAME=URL@PID")
    args = ap.parse_args()
    targets = []
    for t in args.targets:
        name, rest = t.split("=", 1)
        url, pid = rest.rsplit("@", 1)
        targets.append((name, url, int(pid)))
    for _ in range(args.rounds):
        for load in LOADS:
            row = []
            for name, url, pid in targets:
                pids = proc_tree(pid)
                c0 = cpu_s(pids)
                out = subprocess.run([args.sluice, "bench", "--url", url, "--model", "mock", "--json", "--quiet",
                                      "--duration", str(args.duration), "--max-tokens", "16"] + load,
                                     capture_output=True, text=True, check=True).stdout
                c1 = cpu_s(pids)
                r = json.loads(out)
                n = r["requests_completed"]
                row.append(f"{name} {1e6 * (c1 - c0) / n:6.1f} us/req p50 {r['latency_ms']['p50']:.3f} ms")
            print(f"{' '.join(load):18} " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
