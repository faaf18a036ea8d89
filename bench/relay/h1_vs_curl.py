#!/usr/bin/env python3
"""Usage: python3 bench/relay/h1_vs_curl.py [ROUNDS [BENCH OPTIONS...]]  (after make release; ports 27501-2)
A/B: sluice relay in front of mockllm, built-in http client (A) vs libcurl (B,
SLUICE_UPSTREAM_CURL_HTTP=1). Alternates A and B, prints per-run rps and CPU us/request."""
import json, os, re, subprocess, sys, tempfile, time
B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "release")
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
extra = sys.argv[2:]  # more `sluice bench` options, e.g. --stream
tck = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck  # utime + stime, seconds
tmp = tempfile.mkdtemp()
mock = subprocess.Popen([f"{B}/mockllm", "--port", "27501", "--workers", "1", "--tokens", "16"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
cfg = os.path.join(tmp, "sluice.yaml")
open(cfg, "w").write("model_list:\n  - model_name: mock\n    params:\n      provider: openai\n"
                     "      api_base: http://127.0.0.1:27501/v1\n      model: mock\n"
                     "server:\n  listen: 127.0.0.1:27502\n  workers: 1\n  access_log: false\n"
                     "  max_inflight: 100000\n  max_connections: 100000\n  log_level: warn\n")
res = {"A": [], "B": []}
try:
    for r in range(rounds):
        for variant in ("A", "B"):
            env = dict(os.environ)
            env.pop("SLUICE_UPSTREAM_CURL_HTTP", None)
            if variant == "B":
                env["SLUICE_UPSTREAM_CURL_HTTP"] = "1"
            log = open(os.path.join(tmp, f"sl{r}{variant}.log"), "w")
            sl = subprocess.Popen([f"{B}/sluice", "serve", "-c", cfg, "--port", "27502", "--log-level", "warn"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(0.8)
            # warm-up (connections, caches), not measured
            subprocess.run([f"{B}/sluice", "bench", "--url", "http://127.0.0.1:27502/v1", "--model", "mock",
                            "--concurrency", "64", "--duration", "1", "--json", "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            c0 = cpu(sl.pid)
            out = subprocess.run([f"{B}/sluice", "bench", "--url", "http://127.0.0.1:27502/v1", "--model", "mock",
                                  "--concurrency", "64", "--duration", "5", "--json", "--quiet"] + extra,
                                 capture_output=True, text=True).stdout
            c1 = cpu(sl.pid)
            sl.terminate(); sl.wait()
            j = json.loads(out[out.index("{"):])
            n = j.get("requests_ok")
            rps = j.get("rps") or j.get("throughput_rps")
            row = {"rps": rps, "n": n, "cpu_us_per_req": (c1 - c0) * 1e6 / n if n else None,
                   "errors": j.get("errors_total")}
            res[variant].append(row)
            print(r, variant, json.dumps(row), flush=True)
            if r == 0 and variant == "A":
                print("keys:", sorted(j.keys()), flush=True)
finally:
    mock.terminate(); mock.wait()
import statistics as st
for v in ("A", "B"):
    print(v, "median rps %.0f" % st.median(x["rps"] for x in res[v]),
          "median cpu us/req %.1f" % st.median(x["cpu_us_per_req"] for x in res[v]))
