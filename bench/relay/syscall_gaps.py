#!/usr/bin/env python3
"""Time a proxy spends between system calls on a request/response path.

Record the proxy's system calls while a closed loop at concurrency 1 runs
through it, then give this script the `perf script --ns` text:

  perf record -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p PID -o rs.data -- sleep 0.5
  perf script -i rs.data --ns -F time,event,trace > rs.txt
  python3 bench/relay/syscall_gaps.py rs.txt --req-bytes 230 --resp-bytes 400-430

It prints medians, p90 and p99 (microseconds) of:
  request   end of the read that returned the client's request (REQ bytes)
            -> start of the next write/writev (to the upstream)
  answer    end of the read that returned the upstream's answer (RESP bytes)
            -> start of the next writev (to the client)
  after     end of the writev of the answer -> start of the next epoll_wait
  dispatch  end of epoll_wait -> start of the next system call
perf's own cost is in every figure; compare proxies recorded the same way.
Reads are read(2) or recvfrom(2); writes are write(2) or writev(2) (x86-64
numbers). Sizes identify the requests: pick them from the trace.
"""
import argparse
import re
import statistics

READS, WRITES, WRITEV, EPOLL_WAIT = (0, 45), (1, 20), 20, 232
LINE = re.compile(r"\s*([\d.]+):\s+raw_syscalls:sys_(enter|exit): NR (\d+)(?: = (-?\d+))?")


def span(text):
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def summary(v):
    if not v:
        return "no samples"
    v = sorted(v)
    return (f"p50 {statistics.median(v):6.2f}  p90 {v[int(len(v) * .9)]:6.2f}  "
            f"p99 {v[min(len(v) - 1, int(len(v) * .99))]:6.2f}  n {len(v)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--req-bytes", type=span, required=True, help="size of a client request read, or LO-HI")
    ap.add_argument("--resp-bytes", type=span, required=True, help="size of an upstream answer read, or LO-HI")
    a = ap.parse_args()
    req, ans, after, disp = [], [], [], []
    t_req = t_ans = t_wv = t_ew = None
    answering = False  # inside the writev that carries an answer
    with open(a.trace) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            t, kind, nr = float(m.group(1)) * 1e6, m.group(2), int(m.group(3))
            rv = int(m.group(4)) if m.group(4) is not None else None
            if kind == "enter":
                if t_ew is not None:
                    disp.append(t - t_ew)
                    t_ew = None
                if nr in WRITES and t_req is not None:
                    req.append(t - t_req)
                    t_req = None
                elif nr == WRITEV and t_ans is not None:
                    ans.append(t - t_ans)
                    t_ans = None
                    answering = True
                if nr == EPOLL_WAIT and t_wv is not None:
                    after.append(t - t_wv)
                    t_wv = None
                continue
            if nr == EPOLL_WAIT:
                t_ew = t
            elif nr in READS and rv is not None:
                if a.req_bytes[0] <= rv <= a.req_bytes[1]:
                    t_req = t
                elif a.resp_bytes[0] <= rv <= a.resp_bytes[1]:
                    t_ans = t
            elif nr == WRITEV and answering:
                answering = False
                t_wv = t
    for name, v in (("request", req), ("answer", ans), ("after", after), ("dispatch", disp)):
        print(f"{name:9} {summary(v)}")


if __name__ == "__main__":
    main()
