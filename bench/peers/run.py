#!/usr/bin/env python3
"""Sluice against peer gateways, side by side in one run, in front of mockllm.

Starts two mockllm upstreams (A: non-streaming, 16-token answers at once;
B: streaming, 64 tokens paced at --stream-tps) and, in front of them:
  direct   no proxy (the floor);
  sluice   `sluice serve`, model `mock` -> A, model `mock-stream` -> B;
  nginx    Debian's nginx with a generated config (proxy_pass, upstream
           keepalive, proxy_buffering off), one port per upstream;
  portkey  Portkey's gateway (npm, pinned in package-lock.json), routed per
           request by x-portkey-provider / x-portkey-custom-host headers.
LiteLLM (a pip package) cannot be installed here and is reported as absent.

Every target is measured on the same workloads with `sluice bench`:
  c1      non-streaming chat, closed loop, concurrency 1 (latency)
  c64     non-streaming chat, closed loop, concurrency 64 (throughput)
  s64     streaming chat, 64 tokens, closed loop, concurrency 64 (throughput, TTFT)
  rN      non-streaming chat, open loop at N requests/s (--rps-steps; latency
          counted from each request's scheduled start, so queueing shows)
in interleaved rounds (round -> workload -> target, the target order rotating
each round) so that noise on this shared machine falls on everyone alike. The
figure reported for each cell is the median over rounds. mockllm's own /stats
request counter is read around every run and must match what the load
generator completed: proof that the requests really went through the proxy.

Usage: bash bench/peers/run.sh [--rounds 3] [--duration 5] [--workers 1]
       [--targets direct,sluice,nginx,portkey] [--json-out FILE]
       [--rps-steps 1000,5000,10000,15000,20000] (open-loop steps; "" for none)
       [--sluice PATH]   (or SLUICE_BIN=PATH: another sluice binary as the gateway)
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PORTKEY_JS = os.path.join(HERE, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, deadline_s=30):
    end = time.time() + deadline_s
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Procs:
    """Processes started by this script; stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = []

    def start(self, name, argv, **kw):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.items.append((name, p))
        return p

    def log(self, name):
        with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
            return f.read()

    def wait_log(self, name, proc, pattern, deadline_s=20):
        end = time.time() + deadline_s
        while time.time() < end:
            m = re.search(pattern, self.log(name))
            if m:
                return m
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start:\n{self.log(name)[-2000:]}")

    def stop_all(self):
        for _, p in reversed(self.items):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.items):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_tree(pid):
    """pid and all its descendants (nginx: master and workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st[st.rfind(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_s(pids):
    """User + system CPU seconds used so far by these processes (all threads)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def mock_requests(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.load(r)["requests"]


def settle(port, limit_s=180.0):
    """Waits until the upstream's request counter stops moving (1 s without a
    change, at most limit_s) and returns it. A gateway pushed past its
    capacity keeps forwarding its backlog after the load generator has
    stopped; without this wait that backlog would run during the next
    target's measurement and be counted as its traffic."""
    last, still, t0 = mock_requests(port), 0.0, time.monotonic()
    while still < 1.0 and time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
        n = mock_requests(port)
        still = still + 0.25 if n == last else 0.0
        last = n
    return last


NGINX_CONF = """daemon off;
master_process on;
worker_processes {workers};
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream mock_a {{ server 127.0.0.1:{port_a}; keepalive 256; keepalive_requests 1000000; }}
  upstream mock_b {{ server 127.0.0.1:{port_b}; keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{listen_a} reuseport;
    location / {{ proxy_pass http://mock_a; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_request_buffering off; }}
  }}
  server {{
    listen 127.0.0.1:{listen_b} reuseport;
    location / {{ proxy_pass http://mock_b; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_request_buffering off; }}
  }}
}}
"""

# workload name -> (upstream key, load generator arguments)
WORKLOADS = {
    "c1": ("a", ["--concurrency", "1", "--max-tokens", "16"]),
    "c64": ("a", ["--concurrency", "64", "--max-tokens", "16"]),
    "s64": ("b", ["--concurrency", "64", "--max-tokens", "64", "--stream"]),
}


# A target sustains an open-loop step when it completes at least this share of
# the offered rate with no errors and a p99 latency under SUSTAIN_P99_MS.
SUSTAIN_SHARE = 0.97
SUSTAIN_P99_MS = 25.0


def sustained(rps, errors, p99, offered):
    """An open-loop step kept up: achieved rate, no errors, bounded p99."""
    return rps >= SUSTAIN_SHARE * offered and errors == 0 and p99 <= SUSTAIN_P99_MS


def workload(w):
    """(upstream key, load generator arguments) of a workload name."""
    if w in WORKLOADS:
        return WORKLOADS[w]
    if re.fullmatch(r"r[1-9][0-9]*", w):
        return ("a", ["--rps", w[1:], "--max-tokens", "16", "--max-inflight", "4096"])
    raise SystemExit(f"unknown workload {w}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--workers", type=int, default=1, help="sluice workers = nginx worker_processes")
    ap.add_argument("--mock-workers", type=int, default=1)
    ap.add_argument("--stream-tps", type=float, default=2000, help="mockllm token rate for streams")
    ap.add_argument("--targets", default="direct,sluice,nginx,portkey,litellm")
    ap.add_argument("--workloads", default="c1,c64,s64")
    ap.add_argument("--rps-steps", default="1000,5000,10000,15000,20000",
                    help="open-loop request rates, each a workload rN ('' for none)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--sluice", default=os.environ.get("SLUICE_BIN"),
                    help="the sluice binary under test (default: SLUICE_BIN, else BUILD/sluice); "
                         "the load generator and mockllm still come from --build")
    ap.add_argument("--json-out")
    ap.add_argument("--report", metavar="FILE", help="print the report of a saved --json-out run again; run nothing")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        workloads = list(saved["results"])
        names = list(saved["results"][workloads[0]])
        report(argparse.Namespace(**saved["args"]), names, workloads, saved["results"], saved["absent"],
               {t: 0 for t in names if t != "direct"})
        return 0
    sluice = os.path.join(args.build, "sluice")
    gateway = args.sluice or sluice
    mockllm = os.path.join(args.build, "mockllm")
    for exe in (sluice, mockllm, gateway):
        if not os.access(exe, os.X_OK):
            sys.exit(f"missing {exe}: run `make release` first")
    wanted = args.targets.split(",")
    workloads = [w for w in args.workloads.split(",") if w]
    workloads += [f"r{x}" for x in sorted(int(x) for x in args.rps_steps.split(",") if x.strip())]
    for w in workloads:
        workload(w)
    absent = {}

    tmp = tempfile.mkdtemp(prefix="sluice-peers-")
    os.chmod(tmp, 0o755)
    procs = Procs(tmp)
    try:
        up = {}
        for key, extra in (("a", ["--tokens", "16"]),
                           ("b", ["--tokens", "64", "--tps", str(args.stream_tps)])):
            p = procs.start("mock-" + key, [mockllm, "--port", "0", "--workers", str(args.mock_workers)] + extra)
            up[key] = int(procs.wait_log("mock-" + key, p, r"listening on (\d+)").group(1))

        # target -> upstream key -> (url, model, extra headers)
        targets = {}
        gw_pid = {}  # target -> pid whose process tree is the gateway
        if "direct" in wanted:
            targets["direct"] = {k: (f"http://127.0.0.1:{up[k]}", "mock", []) for k in up}

        if "sluice" in wanted:
            cfg = os.path.join(tmp, "sluice.yaml")
            with open(cfg, "w") as f:
                f.write("model_list:\n"
                        f"  - model_name: mock\n    params:\n      provider: openai\n"
                        f"      api_base: http://127.0.0.1:{up['a']}/v1\n      model: mock\n"
                        f"  - model_name: mock-stream\n    params:\n      provider: openai\n"
                        f"      api_base: http://127.0.0.1:{up['b']}/v1\n      model: mock\n"
                        f"server:\n  listen: 127.0.0.1:0\n  workers: {args.workers}\n  access_log: false\n"
                        "  max_inflight: 100000\n  max_connections: 100000\n  log_level: warn\n")
            p = procs.start("sluice", [gateway, "serve", "-c", cfg, "--port", "0", "--log-level", "warn"])
            port = int(procs.wait_log("sluice", p, r"listening on [^ ]*:(\d+)").group(1))
            gw_pid["sluice"] = p.pid
            u = f"http://127.0.0.1:{port}"
            targets["sluice"] = {"a": (u, "mock", []), "b": (u, "mock-stream", [])}

        if "nginx" in wanted:
            nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
            if not nginx:
                absent["nginx"] = "not installed (run bench/peers/deps.sh)"
            else:
                la, lb = free_port(), free_port()
                conf = os.path.join(tmp, "nginx.conf")
                with open(conf, "w") as f:
                    f.write(NGINX_CONF.format(workers=args.workers, tmp=tmp, port_a=up["a"], port_b=up["b"],
                                              listen_a=la, listen_b=lb,
                                              user="user root root;" if os.geteuid() == 0 else ""))
                p = procs.start("nginx", [nginx, "-c", conf, "-p", tmp, "-e", os.path.join(tmp, "nginx-error.log")])
                if not (wait_port(la, p) and wait_port(lb, p)):
                    raise RuntimeError("nginx did not start:\n" + procs.log("nginx"))
                gw_pid["nginx"] = p.pid
                targets["nginx"] = {"a": (f"http://127.0.0.1:{la}", "mock", []),
                                    "b": (f"http://127.0.0.1:{lb}", "mock", [])}

        if "portkey" in wanted:
            node = shutil.which("node")
            if not node or not os.path.exists(PORTKEY_JS):
                absent["portkey"] = "not installed (run bench/peers/deps.sh: npm ci)"
            else:
                port = free_port()
                p = procs.start("portkey", [node, PORTKEY_JS, f"--port={port}", "--headless"], cwd=HERE)
                if not wait_port(port, p):
                    raise RuntimeError("portkey did not start:\n" + procs.log("portkey"))
                gw_pid["portkey"] = p.pid
                u = f"http://127.0.0.1:{port}"
                targets["portkey"] = {
                    k: (u, "mock", ["x-portkey-provider: openai",
                                    f"x-portkey-custom-host: http://127.0.0.1:{up[k]}/v1",
                                    "Authorization: Bearer sk-bench"]) for k in up}

        if "litellm" in wanted:
            # LiteLLM's proxy is the pip package `litellm[proxy]`; this machine cannot install it.
            absent["litellm"] = ("not measured: LiteLLM's proxy is a Python (pip) package, not packaged by Debian, "
                                 "and pip's index is not reachable here; the npm package named `litellm` is an "
                                 "unrelated JS client library, not the proxy")

        names = list(targets)
        results = {w: {t: [] for t in names} for w in workloads}
        total = args.rounds * len(workloads) * len(names)
        done = 0
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            # a target that does not sustain an open-loop step skips the higher
            # steps of the round: its backlog would only load the machine under
            # the targets that run after it
            failed_step = {}
            for w in workloads:
                key, wargs = workload(w)
                for t in order:
                    done += 1
                    if w.startswith("r") and t in failed_step:
                        results[w][t].append(None)
                        print(f"[{done}/{total}] round {rnd + 1} {w:4} {t:8} skipped: did not sustain "
                              f"{failed_step[t]}", file=sys.stderr, flush=True)
                        continue
                    url, model, headers = targets[t][key]
                    cmd = [sluice, "bench", "--url", url, "--model", model, "--json", "--quiet",
                           "--duration", str(args.duration), "--warmup", str(args.warmup), "--timeout", "30"] + wargs
                    for h in headers:
                        cmd += ["--header", h]
                    pids = proc_tree(gw_pid[t]) if t in gw_pid else []
                    before = mock_requests(up[key])
                    cpu0 = cpu_s(pids)
                    limit = args.duration + args.warmup + 120
                    try:
                        out = subprocess.run(cmd, capture_output=True, timeout=limit)
                    except subprocess.TimeoutExpired:
                        out = None
                    after = settle(up[key])
                    cpu1 = cpu_s(pids)  # after the backlog, which this run caused
                    if out is None:
                        if not w.startswith("r"):
                            raise RuntimeError(f"bench {t}/{w} did not finish within {limit:g} s")
                        results[w][t].append(None)
                        failed_step[t] = f"{w[1:]}/s (the run did not finish within {limit:g} s)"
                        print(f"[{done}/{total}] round {rnd + 1} {w:4} {t:8} did not finish within {limit:g} s",
                              file=sys.stderr, flush=True)
                        continue
                    if out.returncode != 0:
                        raise RuntimeError(f"bench {t}/{w} failed: {out.stderr.decode()[-800:]}")
                    r = json.loads(out.stdout)
                    r["upstream_requests"] = after - before
                    r["client_requests"] = r["requests_completed"] + r["warmup_requests"]
                    # gateway CPU per request (warm-up included on both sides): insensitive to
                    # how much of the machine the gateway got, unlike rps
                    r["gateway_cpu_us_per_req"] = (1e6 * (cpu1 - cpu0) / r["client_requests"]
                                                   if pids and r["client_requests"] else 0.0)
                    results[w][t].append(r)
                    if w.startswith("r") and not sustained(r["throughput_rps"], r["errors_total"],
                                                          r["latency_ms"]["p99"], int(w[1:])):
                        failed_step[t] = f"{w[1:]}/s"
                    print(f"[{done}/{total}] round {rnd + 1} {w:4} {t:8} rps {r['throughput_rps']:9.1f} "
                          f"p50 {r['latency_ms']['p50']:8.3f} p99 {r['latency_ms']['p99']:8.3f} "
                          f"ttft99 {r['ttft_ms']['p99']:8.3f} cpu/req {r['gateway_cpu_us_per_req']:7.1f} us err {r['errors_total']} "
                          f"upstream {r['upstream_requests']}/{r['client_requests']}", file=sys.stderr, flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "absent": absent, "results": results}, f, indent=1)
    report(args, names, workloads, results, absent, gw_pid)
    return 0


def med(runs, f):
    return statistics.median(f(r) for r in runs)


def report_steps(names, steps, results):
    """Open-loop steps: per step and target the achieved rate and latency
    (medians over rounds), the latency added over direct at the same step, and
    each target's highest sustained step."""
    print("Open-loop steps (latency from the scheduled start; medians over rounds):")
    print()
    print("| offered rps | target | achieved rps | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | sustained |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    best = {t: 0 for t in names}
    added99 = {}  # (step, target) -> added p99 ms
    for w in steps:
        offered = int(w[1:])
        for t in names:
            runs = [r for r in results[w][t] if r is not None]
            skipped = len(results[w][t]) - len(runs)
            if not runs:
                print(f"| {offered} | {t} | - | - | - | - | - | - | no (not run: a lower step was not "
                      f"sustained in {skipped} of {skipped} rounds) |")
                continue
            rps = med(runs, lambda r: r["throughput_rps"])
            p50 = med(runs, lambda r: r["latency_ms"]["p50"])
            p99 = med(runs, lambda r: r["latency_ms"]["p99"])
            errs = sum(r["errors_total"] for r in runs)
            ok = sustained(rps, errs, p99, offered) and not skipped
            if ok:
                best[t] = max(best[t], offered)
            d = [r for r in results[w].get("direct", []) if r is not None]
            if d and t != "direct":
                a50 = f"{p50 - med(d, lambda r: r['latency_ms']['p50']):.3f}"
                added99[(offered, t)] = p99 - med(d, lambda r: r['latency_ms']['p99'])
                a99 = f"{added99[(offered, t)]:.3f}"
            else:
                a50 = a99 = "-"
            note = f" (run in {len(runs)} of {len(runs) + skipped} rounds)" if skipped else ""
            print(f"| {offered} | {t} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {a50} | {a99} | {errs} | "
                  f"{'yes' if ok else 'no'}{note} |")
    print()
    print(f"Highest sustained step (achieved >= {SUSTAIN_SHARE:.0%} of offered, no errors, p99 <= "
          f"{SUSTAIN_P99_MS:g} ms): " + ", ".join(f"{t} {best[t]}" for t in names))
    if "sluice" in best:
        print("Sluice's highest sustained step / each peer's: " +
              ", ".join(f"{t} {best['sluice'] / best[t]:.2f}" if best[t] else f"{t} n/a (it sustained no step)"
                        for t in names if t not in ("sluice", "direct")))
        peers = [t for t in names if t not in ("sluice", "direct")]
        if peers and "direct" in names:
            def r99(step, t):
                a, b = added99.get((step, "sluice")), added99.get((step, t))
                return f"{a / b:.2f}" if a is not None and b and b > 0 else "n/a"
            print("Sluice's added p99 / each peer's, per step: " +
                  "; ".join(f"{int(w[1:])}: " + ", ".join(f"{t} {r99(int(w[1:]), t)}" for t in peers)
                            for w in steps))

            # The same ratio within each round (targets of a round run back to
            # back), to show how far one round's figure can stray.
            def spread(w, t):
                rs = []
                for s, p, d in zip(results[w]["sluice"], results[w][t], results[w]["direct"]):
                    if s is None or p is None or d is None:
                        continue
                    a = s["latency_ms"]["p99"] - d["latency_ms"]["p99"]
                    b = p["latency_ms"]["p99"] - d["latency_ms"]["p99"]
                    if b > 0:
                        rs.append(a / b)
                if not rs:
                    return "n/a"
                ok = sum(1 for x in rs if x <= 1.2)
                return (f"min {min(rs):.2f} median {statistics.median(rs):.2f} max {max(rs):.2f}, "
                        f"<= 1.2 in {ok}/{len(rs)} rounds")
            for t in peers:
                print(f"Per-round added p99 ratio, sluice / {t}: " +
                      "; ".join(f"{int(w[1:])}: {spread(w, t)}" for w in steps))
    print()


def report(args, names, workloads, results, absent, gw_pid):
    load = os.getloadavg()
    print(f"rounds {args.rounds}, {args.duration:g} s per run after {args.warmup:g} s warm-up, "
          f"gateway workers {args.workers}, mockllm workers {args.mock_workers}, stream pace {args.stream_tps:g} tok/s; "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; medians over rounds")
    print()
    cols = [("c1", "c1 p50 ms", lambda r: r["latency_ms"]["p50"]),
            ("c1", "c1 p99 ms", lambda r: r["latency_ms"]["p99"]),
            ("c64", "c64 rps", lambda r: r["throughput_rps"]),
            ("c64", "c64 p99 ms", lambda r: r["latency_ms"]["p99"]),
            ("s64", "s64 rps", lambda r: r["throughput_rps"]),
            ("s64", "s64 TTFT p99 ms", lambda r: r["ttft_ms"]["p99"]),
            ("c64", "c64 gw CPU us/req", lambda r: r["gateway_cpu_us_per_req"]),
            ("s64", "s64 gw CPU us/req", lambda r: r["gateway_cpu_us_per_req"])]
    cols = [c for c in cols if c[0] in workloads]
    steps = [w for w in workloads if w.startswith("r")]
    if steps:
        report_steps(names, steps, results)
    if not cols:
        return
    v = {t: [med(results[w][t], f) for w, _, f in cols] for t in names}
    print("| target | " + " | ".join(c[1] for c in cols) + " | errors | upstream = client |")
    print("|---|" + "---:|" * len(cols) + "---:|---|")
    for t in names:
        ran = [r for w in workloads for r in results[w][t] if r is not None]
        errs = sum(r["errors_total"] for r in ran)
        match = all(r["upstream_requests"] == r["client_requests"] for r in ran)
        cells = ["-" if t not in gw_pid and "CPU" in c[1] else (f"{x:.3f}" if x < 100 else f"{x:.0f}")
                 for c, x in zip(cols, v[t])]
        print(f"| {t} | " + " | ".join(cells) +
              f" | {errs} | {'yes' if match else 'NO'} |")
    print()

    # added latency over direct (p50/p99 at c1; TTFT p99 at s64) and throughput ratios
    if "direct" in names:
        d = {w: results[w]["direct"] for w in workloads}
        print("| target | added c1 p50 ms | added c1 p99 ms | c64 rps / direct | s64 rps / direct "
              "| added s64 TTFT p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        added = {}
        for t in names:
            if t == "direct":
                continue
            row = []
            if "c1" in workloads:
                row += [med(results["c1"][t], lambda r: r["latency_ms"]["p50"]) - med(d["c1"], lambda r: r["latency_ms"]["p50"]),
                        med(results["c1"][t], lambda r: r["latency_ms"]["p99"]) - med(d["c1"], lambda r: r["latency_ms"]["p99"])]
            else:
                row += [float("nan")] * 2
            for w in ("c64", "s64"):
                row.append(med(results[w][t], lambda r: r["throughput_rps"]) / med(d[w], lambda r: r["throughput_rps"])
                           if w in workloads else float("nan"))
            row.append(med(results["s64"][t], lambda r: r["ttft_ms"]["p99"]) - med(d["s64"], lambda r: r["ttft_ms"]["p99"])
                       if "s64" in workloads else float("nan"))
            added[t] = row
            def num(x, fmt):
                return "-" if x != x else format(x, fmt)  # nan: the workload was not run
            print(f"| {t} | {num(row[0], '.3f')} | {num(row[1], '.3f')} | {num(row[2], '.2f')} "
                  f"| {num(row[3], '.2f')} | {num(row[4], '.3f')} |")
        print()
        if "sluice" in added:
            s = added["sluice"]
            cpu = {t: [med(results[w][t], lambda r: r["gateway_cpu_us_per_req"]) if w in workloads else 0.0
                       for w in ("c64", "s64")] for t in names}
            print("| peer | its added c1 p50 / sluice's | its added c1 p99 / sluice's | sluice c64 rps / its "
                  "| sluice s64 rps / its | its added s64 TTFT p99 / sluice's | its c64 CPU/req / sluice's "
                  "| its s64 CPU/req / sluice's |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for t, row in added.items():
                if t == "sluice":
                    continue

                def ratio(a, b):
                    return f"{a / b:.2f}" if b > 0 and a == a else "n/a"
                print(f"| {t} | {ratio(row[0], s[0])} | {ratio(row[1], s[1])} | {ratio(s[2], row[2])} "
                      f"| {ratio(s[3], row[3])} | {ratio(row[4], s[4])} | {ratio(cpu[t][0], cpu['sluice'][0])} "
                      f"| {ratio(cpu[t][1], cpu['sluice'][1])} |")
            print()
    for t, why in absent.items():
        print(f"absent: {t}: {why}")


if __name__ == "__main__":
    sys.exit(main())
