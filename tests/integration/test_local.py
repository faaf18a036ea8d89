"""`sluice serve` with `provider: local`: the gateway in front of its own
engine, on a tiny random-weight llama written by the test.

Checks the answers against `sluice run` (a second path through the engine),
batch invariance through HTTP (concurrent requests give what each gives
alone), streaming, usage with cached prompt tokens, a disconnect freeing
the sequence's KV blocks, embeddings, the errors a local model gives, and
the engine metrics."""
import base64
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402
from test_run import tiny_llama  # noqa: E402

SLUICE = os.environ.get("SLUICE_BIN", "build/release/sluice")


def config(model_path, slow_path):
    return ("model_list:\n"
            "  - model_name: tiny\n"
            "    params:\n"
            "      provider: local\n"
            f"      model: {model_path}\n"
            "      ctx_size: 256\n"
            "      max_seqs: 8\n"
            "      threads: 2\n"
            "      prefill_chunk: 32\n"
            "  - model_name: slow\n"
            "    params:\n"
            "      provider: local\n"
            f"      model: {slow_path}\n"
            "      ctx_size: 2048\n"
            "      max_seqs: 2\n"
            "      threads: 1\n"
            "server:\n  workers: 2\n")


def slow_llama(path):
    """A llama big enough that a long generation takes a while (dim 512,
    4 layers): the weights repeat one block of random numbers, which is
    enough for timing. Byte tokens only, no end token: it runs to max_tokens."""
    rnd = random.Random(3)
    dim, ff, heads, layers, ctx = 512, 1536, 8, 4, 2048
    w = gw.GGUFWriter()
    w.add("general.architecture", "llama")
    w.add("llama.context_length", ctx, gw.UINT32)
    w.add("llama.embedding_length", dim, gw.UINT32)
    w.add("llama.block_count", layers, gw.UINT32)
    w.add("llama.feed_forward_length", ff, gw.UINT32)
    w.add("llama.attention.head_count", heads, gw.UINT32)
    w.add("llama.attention.head_count_kv", heads, gw.UINT32)
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.tokens", ["<0x%02X>" % b for b in range(256)])
    w.add("tokenizer.ggml.scores", [0.0] * 256, (gw.ARRAY, gw.FLOAT32))
    w.add("tokenizer.ggml.token_type", [6] * 256, (gw.ARRAY, gw.INT32))
    w.add("tokenizer.ggml.add_bos_token", False)
    block = struct.pack("<4096f", *[rnd.uniform(-0.05, 0.05) for _ in range(4096)])

    def mat(name, rows, cols):
        n = rows * cols
        data = block * (n // 4096) + block[:(n % 4096) * 4]
        w.add_tensor(name, gw.GGML_F32, [cols, rows], data)

    def ones(name, n):
        w.add_tensor(name, gw.GGML_F32, [n], struct.pack("<%df" % n, *([1.0] * n)))

    mat("token_embd.weight", 256, dim)
    for l in range(layers):
        ones(f"blk.{l}.attn_norm.weight", dim)
        for t in ("q", "k", "v", "output"):
            mat(f"blk.{l}.attn_{t}.weight", dim, dim)
        ones(f"blk.{l}.ffn_norm.weight", dim)
        mat(f"blk.{l}.ffn_gate.weight", ff, dim)
        mat(f"blk.{l}.ffn_up.weight", ff, dim)
        mat(f"blk.{l}.ffn_down.weight", dim, ff)
    ones("output_norm.weight", dim)
    w.write(path)


def complete(port, prompt, max_tokens=8, **kw):
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    body.update(kw)
    return harness.post_json(port, "/v1/completions", body, timeout=60)


def metric(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    return None


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_cli(model, prompt, n):
    p = subprocess.run([SLUICE, "run", model, "-p", prompt, "-n", str(n), "--temp", "0", "--threads", "1"],
                       capture_output=True, text=True, timeout=60)
    check_eq(p.returncode, 0, "sluice run: " + p.stderr)
    return p.stdout


def main():
    suite = harness.Suite()
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "tiny.gguf")
        tiny_llama(model)
        slow = os.path.join(d, "slow.gguf")
        slow_llama(slow)
        with harness.Sluice(config(model, slow)) as s:
            wait_for(lambda: harness.get_json(s.port, "/readyz").status == 200, 30, "the model loaded")

            def t_models_and_answer():
                ids = [m["id"] for m in harness.get_json(s.port, "/v1/models").json()["data"]]
                check_eq(sorted(ids), ["slow", "tiny"], "the local models are listed")
                r = complete(s.port, "hello world")
                check_eq(r.status, 200, r.body)
                o = r.json()
                check_eq(o["object"], "text_completion", "object")
                text = o["choices"][0]["text"]
                cli = run_cli(model, "hello world", 8)
                check_eq("hello world" + text, cli.rstrip("\n"), "the server answers what `sluice run` prints")
                u = o["usage"]
                check(u["prompt_tokens"] > 0 and u["completion_tokens"] >= 1, f"usage: {u}")
                check_eq(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"], "total")
                check_eq(o["choices"][0]["finish_reason"] in ("stop", "length"), True, "finish_reason")

            def t_batch_invariance():
                prompts = [f"the cat sat {i} " + "on a mat " * (i % 5) for i in range(16)]
                alone = {}
                for p in prompts:
                    alone[p] = complete(s.port, p, max_tokens=10, seed=7, temperature=0.9).json()["choices"][0]["text"]
                together = {}
                lock = threading.Lock()

                def one(p):
                    t = complete(s.port, p, max_tokens=10, seed=7, temperature=0.9).json()["choices"][0]["text"]
                    with lock:
                        together[p] = t

                ts = [threading.Thread(target=one, args=(p,)) for p in prompts]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(120)
                check_eq(together, alone, "concurrent seeded requests give what each gives alone")
                m = harness.get_json(s.port, "/metrics").body.decode()
                hist = [l for l in m.splitlines() if l.startswith("sluice_engine_batch_tokens_bucket")]
                le1 = metric(m, 'sluice_engine_batch_tokens_bucket{backend="tiny#0",le="1"}')
                total = metric(m, 'sluice_engine_batch_tokens_count{backend="tiny#0"}')
                check(hist and total and le1 < total, f"steps with more than one token ran: {hist}")

            def t_stream_and_usage():
                r = complete(s.port, "big red sky", max_tokens=12)
                want = r.json()["choices"][0]["text"]
                res = harness.sse_events(s.port, "/v1/completions",
                                         {"model": "tiny", "prompt": "big red sky", "max_tokens": 12,
                                          "temperature": 0, "stream": True,
                                          "stream_options": {"include_usage": True}}, timeout=60)
                check(res.complete and res.done, f"stream ended with [DONE]: {res.error}")
                evs = res.json_events()
                got = "".join(c["choices"][0]["text"] for c in evs if c["choices"])
                check_eq(got, want, "streamed text equals the non-streamed answer")
                check(evs[-1]["choices"] == [] and evs[-1]["usage"]["completion_tokens"] >= 1,
                      f"usage chunk last: {evs[-1]}")
                # chat, streamed: the first chunk carries the role
                res = harness.sse_events(s.port, "/v1/chat/completions",
                                         {"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
                                          "max_tokens": 6, "temperature": 0, "stream": True}, timeout=60)
                check(res.complete and res.done, f"chat stream: {res.error}")
                evs = res.json_events()
                check_eq(evs[0]["choices"][0]["delta"].get("role"), "assistant", "role first")
                check(evs[-1]["choices"][0]["finish_reason"] in ("stop", "length"), "finish in the last chunk")
                r = harness.post_json(s.port, "/v1/chat/completions",
                                      {"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
                                       "max_tokens": 6, "temperature": 0}, timeout=60)
                check_eq(r.status, 200, r.body)
                chat_text = "".join(c["choices"][0]["delta"].get("content", "") for c in evs)
                check_eq(r.json()["choices"][0]["message"]["content"], chat_text, "chat stream = chat answer")

            def t_prefix_cache():
                long = "the sun is hot " * 6
                a = complete(s.port, long + "cat", max_tokens=4).json()
                b = complete(s.port, long + "dog", max_tokens=4).json()
                check("usage" in b, f"answered: {b}")
                cached = b["usage"]["prompt_tokens_details"]["cached_tokens"]
                check(cached >= 16, f"the shared prefix was reused: {b['usage']}")
                c = complete(s.port, long + "cat", max_tokens=4).json()
                check_eq(c["choices"][0]["text"], a["choices"][0]["text"], "a prefix hit answers like a miss")
                m = harness.get_json(s.port, "/metrics").body.decode()
                check(metric(m, 'sluice_engine_prefix_cache_hit_tokens_total{backend="tiny#0"}') >= cached,
                      "hits in /metrics")

            def t_disconnect_frees_blocks():
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
                conn.request("POST", "/v1/completions", body=json.dumps(
                    {"model": "slow", "prompt": "hello", "max_tokens": 2000, "temperature": 0, "stream": True}),
                    headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                check_eq(r.status, 200, "stream started")
                r.read1(100)
                m = harness.get_json(s.port, "/metrics").body.decode()
                check_eq(metric(m, 'sluice_engine_running_sequences{backend="slow#0"}'), 1.0, "one running")
                check(metric(m, 'sluice_engine_kv_blocks{backend="slow#0",state="used"}') >= 1, "holding blocks")
                conn.close()

                def freed():
                    m = harness.get_json(s.port, "/metrics").body.decode()
                    return (metric(m, 'sluice_engine_kv_blocks{backend="slow#0",state="used"}') == 0 and
                            metric(m, 'sluice_engine_running_sequences{backend="slow#0"}') == 0)

                t0 = time.time()
                wait_for(freed, 10, "the disconnected sequence's blocks freed")
                check(time.time() - t0 < 3, "freed soon after the disconnect (the liveness sweep is 1 s)")
                m = harness.get_json(s.port, "/metrics").body.decode()
                check_eq(metric(m, 'sluice_upstream_attempts_total{backend="slow#0",outcome="cancelled"}'), 1.0,
                         "the sequence was cancelled, not finished")

            def t_embeddings():
                r = harness.post_json(s.port, "/v1/embeddings",
                                      {"model": "tiny", "input": ["hello world", "the cat sat"]}, timeout=60)
                check_eq(r.status, 200, r.body)
                o = r.json()
                check_eq([d["index"] for d in o["data"]], [0, 1], "one vector per input")
                for d in o["data"]:
                    norm = math.sqrt(sum(x * x for x in d["embedding"]))
                    check(abs(norm - 1) < 1e-4 and len(d["embedding"]) == 32, f"unit norm, dim 32: {norm}")
                check(o["data"][0]["embedding"] != o["data"][1]["embedding"], "different inputs differ")
                again = harness.post_json(s.port, "/v1/embeddings", {"model": "tiny", "input": "hello world"}).json()
                check_eq(again["data"][0]["embedding"], o["data"][0]["embedding"], "same input, same vector")
                check(o["usage"]["prompt_tokens"] > 0, "usage")
                # encoding_format base64 (the OpenAI SDKs' default): the
                # little-endian float32 bytes of the same vectors
                b = harness.post_json(s.port, "/v1/embeddings", {"model": "tiny", "input": ["hello world", "the cat sat"],
                                                                "encoding_format": "base64"}).json()
                for i in range(2):
                    raw = base64.b64decode(b["data"][i]["embedding"], validate=True)
                    check_eq(list(struct.unpack("<32f", raw)),
                             [struct.unpack("<f", struct.pack("<f", x))[0] for x in o["data"][i]["embedding"]],
                             f"base64 vector {i} = float vector {i}")

            def t_errors():
                r = complete(s.port, "hello " * 400)
                check_eq(r.status, 400, "a prompt longer than the context is a 400")
                check("context" in r.json()["error"]["message"], r.json()["error"]["message"])
                r = complete(s.port, "hi", n=2)
                check_eq(r.status, 400, "n > 1 is refused")
                check_eq(r.json()["error"]["param"], "n", "param n")
                r = harness.post_json(s.port, "/v1/chat/completions", {
                    "model": "tiny", "messages": [{"role": "user", "content": "x"}],
                    "tools": [{"type": "function", "function": {"name": "f"}}]})
                check_eq(r.status, 400, "tools are refused clearly")

            for t in (t_models_and_answer, t_batch_invariance, t_stream_and_usage, t_prefix_cache,
                      t_disconnect_frees_blocks, t_embeddings, t_errors):
                suite.run(t)
    return suite.report()


if __name__ == "__main__":
    sys.exit(main())
