#!/usr/bin/env python3
"""A gateway's CPU per request at several loads, for gateways already running.

  python3 bench/relay/cpu_by_load.py --rounds 2 sluice=http://127.0.0.1:PORT1@PID1 nginx=http://127.0.0.1:PORT2@PID2

For each round and load (c1, open loop 1,000 / 5,000 / 10,000 per second,
c64; non-streaming chat, model "mock", 16 tokens) it runs `sluice bench` for
--duration seconds against each gateway in turn and divides the gateway's
CPU time (user + system of all its threads, from /proc/PID/stat; give
nginx's worker or master: a master's children are counted too) by the
requests completed. Times are in clock ticks (10 ms), so a run should
serve thousands of requests.
"""
import argparse
import json
import os
import subprocess

CLK = os.sysconf("SC_CLK_TCK")
LOADS = [["--concurrency", "1"], ["--rps", "1000"], ["--rps", "5000"], ["--rps", "10000"], ["--concurrency", "64"]]


def cpu_s(pid):
    """User + system seconds of pid and its direct children (nginx's workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            st = f.read()
        fields = st[st.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK


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
                c0 = cpu_s(pid)
                out = subprocess.run([args.sluice, "bench", "--url", url, "--model", "mock", "--json", "--quiet",
                                      "--duration", str(args.duration), "--max-tokens", "16"] + load,
                                     capture_output=True, text=True, check=True).stdout
                c1 = cpu_s(pid)
                r = json.loads(out)
                n = r["requests_completed"]
                row.append(f"{name} {1e6 * (c1 - c0) / n:6.1f} us/req p50 {r['latency_ms']['p50']:.3f} ms")
            print(f"{' '.join(load):18} " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
