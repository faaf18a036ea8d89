#!/usr/bin/env python3
"""Split each proxied request into its hops across three processes.

Record every process's system calls while an open loop at a low rate runs
through the proxy (low enough that requests rarely overlap), then give this
script the `perf script` text and the three pids:

  sluice bench --url http://127.0.0.1:PROXY --model mock --rps 2000 --duration 3 --quiet &
  sleep 1.5; perf record -a -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -o h.data -- sleep 0.5
  perf script -i h.data --ns -F comm,pid,tid,cpu,time,event,trace > h.txt
  python3 bench/relay/hops.py h.txt GENERATOR_PID PROXY_PID MOCKLLM_PID

A request is: the generator writes -> the proxy's epoll_wait returns -> the
proxy writes upstream -> mockllm's epoll_wait returns -> mockllm writes ->
the proxy's epoll_wait returns -> the proxy writes the answer -> the
generator's epoll_wait returns. Requests that overlap the next one (the
generator writes again before the last step) are left out. For each process
only its busiest writing thread is followed (the proxy's worker thread).
It prints p50, p90, p99 and mean (microseconds) of each hop and of the
whole. Tracing slows every system call: compare proxies recorded the same
way, and do not read tails from it (it changes where the scheduler puts
the processes). x86-64 system call numbers.
"""
import collections
import re
import statistics
import sys

WRITES = {1, 20, 44, 46}        # write, writev, sendto, sendmsg
EPOLL_WAITS = {232, 281, 441}   # epoll_wait, epoll_pwait, epoll_pwait2
LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
HOPS = ["proxy wakes", "proxy: request -> upstream write", "mockllm wakes", "mockllm: request -> answer write",
        "proxy wakes again", "proxy: answer -> client write", "generator wakes"]


def events(path, pids):
    """(time us, pid, tid, 'W' write start | 'E' epoll_wait returned events), in order."""
    out, writes = [], collections.Counter()
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m or int(m[2]) not in pids:
                continue
            pid, tid, t, ev, rest = int(m[2]), int(m[3]), float(m[5]) * 1e6, m[6], m[7].split()
            if ev.endswith("sys_enter") and len(rest) > 1 and int(rest[1]) in WRITES:
                writes[(pid, tid)] += 1
                out.append((t, pid, tid, "W"))
            elif ev.endswith("sys_exit") and len(rest) > 3 and int(rest[1]) in EPOLL_WAITS and int(rest[3]) > 0:
                out.append((t, pid, tid, "E"))
    main = {}
    for pid in pids:
        mine = [k for k in writes if k[0] == pid]
        if not mine:
            sys.exit(f"no writes by pid {pid} in the trace")
        main[pid] = max(mine, key=lambda k: writes[k])[1]
    return [e for e in out if e[2] == main[e[1]]]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    gen, proxy, mock = (int(x) for x in sys.argv[2:5])
    ev = events(sys.argv[1], {gen, proxy, mock})
    steps = [(gen, "W"), (proxy, "E"), (proxy, "W"), (mock, "E"), (mock, "W"), (proxy, "E"), (proxy, "W"), (gen, "E")]
    hops, total = [[] for _ in HOPS], []
    i, n = 0, len(ev)
    while i < n:
        if (ev[i][1], ev[i][3]) != steps[0]:
            i += 1
            continue
        ts, j, k, overlap = [ev[i][0]], i + 1, 1, False
        while j < n and k < len(steps):
            key = (ev[j][1], ev[j][3])
            if key == (gen, "W"):
                overlap = True
                break
            if key == steps[k]:
                ts.append(ev[j][0])
                k += 1
            j += 1
        if not overlap and k == len(steps):
            for h in range(len(HOPS)):
                hops[h].append(ts[h + 1] - ts[h])
            total.append(ts[-1] - ts[0])
        i = j if overlap else i + 1
    if not total:
        sys.exit("no complete request in the trace")
    print(f"{len(total)} requests")
    for name, v in zip(HOPS + ["total"], hops + [total]):
        print(f"  {name:34} p50 {pct(v, .5):7.2f}  p90 {pct(v, .9):7.2f}  p99 {pct(v, .99):7.2f}  "
              f"mean {statistics.mean(v):7.2f}")


if __name__ == "__main__":
    main()
