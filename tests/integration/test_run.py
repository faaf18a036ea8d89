"""`sluice run` on a tiny random-weight llama written with the Python GGUF
writer: text streams to stdout, the timing lines go to stderr, greedy output
is reproducible, and broken files give exit 1 with a message."""
import os
import random
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402

SLUICE = os.environ.get("SLUICE_BIN", "build/release/sluice")
failures = 0
passed = 0

WORDS = ["hello", "world", "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran",
         "far", "away", "sun", "is", "hot", "blue", "sky", "big", "red"]


def check(cond, what):
    global failures, passed
    if cond:
        passed += 1
    else:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def tiny_llama(path, arch="llama", drop=None):
    """dim 32, 1 layer, 2 heads (1 kv head), ffn 64; an SPM vocabulary of
    <unk> <s> </s>, 256 byte tokens and 20 words. The classifier rows of all
    but the words are zero, so the model prints words."""
    rnd = random.Random(7)
    dim, ff, heads, kv_heads = 32, 64, 2, 1
    hd = dim // heads
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    tokens += ["\u2581" + w for w in WORDS]
    types = [2, 3, 3] + [6] * 256 + [1] * len(WORDS)
    scores = [0.0] * 259 + [-float(i) for i in range(len(WORDS))]
    n_vocab = len(tokens)
    w = gw.GGUFWriter()
    w.add("general.architecture", arch)
    w.add(arch + ".context_length", 256, gw.UINT32)
    w.add(arch + ".embedding_length", dim, gw.UINT32)
    w.add(arch + ".block_count", 1, gw.UINT32)
    w.add(arch + ".feed_forward_length", ff, gw.UINT32)
    w.add(arch + ".attention.head_count", heads, gw.UINT32)
    w.add(arch + ".attention.head_count_kv", kv_heads, gw.UINT32)
    w.add(arch + ".attention.layer_norm_rms_epsilon", 1e-5)
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.scores", scores, (gw.ARRAY, gw.FLOAT32))
    w.add("tokenizer.ggml.token_type", types, (gw.ARRAY, gw.INT32))
    w.add("tokenizer.ggml.bos_token_id", 1, gw.UINT32)
    w.add("tokenizer.ggml.eos_token_id", 2, gw.UINT32)
    w.add("tokenizer.ggml.unknown_token_id", 0, gw.UINT32)
    w.add("tokenizer.chat_template",
          "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}")

    def mat(name, rows, cols, scale):
        if name == drop:
            return
        w.add_tensor(name, gw.GGML_F32, [cols, rows],
                     f32([rnd.uniform(-scale, scale) for _ in range(rows * cols)]))

    def ones(name, n):
        w.add_tensor(name, gw.GGML_F32, [n], f32([1.0] * n))

    mat("token_embd.weight", n_vocab, dim, 1.0)
    ones("blk.0.attn_norm.weight", dim)
    mat("blk.0.attn_q.weight", dim, dim, 0.5)
    mat("blk.0.attn_k.weight", kv_heads * hd, dim, 0.5)
    mat("blk.0.attn_v.weight", kv_heads * hd, dim, 0.3)
    mat("blk.0.attn_output.weight", dim, dim, 0.3)
    ones("blk.0.ffn_norm.weight", dim)
    mat("blk.0.ffn_gate.weight", ff, dim, 0.3)
    mat("blk.0.ffn_up.weight", ff, dim, 0.3)
    mat("blk.0.ffn_down.weight", dim, ff, 0.2)
    ones("output_norm.weight", dim)
    out = [0.0] * (259 * dim) + [rnd.uniform(-1, 1) for _ in range(len(WORDS) * dim)]
    w.add_tensor("output.weight", gw.GGML_F32, [dim, n_vocab], f32(out))
    w.write(path)


def run(*args, stdin=None):
    p = subprocess.run([SLUICE, "run"] + list(args), capture_output=True, text=True,
                       timeout=60, input=stdin)
    return p.returncode, p.stdout, p.stderr


def main():
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "tiny.gguf")
        tiny_llama(model)

        rc, out, err = run(model, "-p", "hello world", "-n", "8", "--temp", "0", "--threads", "2")
        check(rc == 0, "run exits 0 (rc %d, stderr %r)" % (rc, err))
        check(out.startswith("hello world"), "the prompt is echoed: %r" % out)
        gen = out[len("hello world"):].strip()
        words = gen.split()
        check(1 <= len(words) <= 8, "prints up to 8 generated words: %r" % gen)
        check(all(x in WORDS for x in words), "every generated word is from the vocab: %r" % gen)
        check("load time" in err, "load time printed: %r" % err)
        # BOS + 16 byte tokens: the vocabulary has no pieces to merge bytes into words
        check("prompt eval time" in err and "/    17 tokens" in err,
              "prompt eval line with 17 tokens: %r" % err)
        check("eval time" in err and "tokens per second" in err, "eval line printed: %r" % err)

        # greedy is deterministic, and independent of the thread count
        rc2, out2, _ = run(model, "-p", "hello world", "-n", "8", "--temp", "0", "--threads", "1")
        check(rc2 == 0 and out2 == out, "greedy output repeats: %r vs %r" % (out2, out))

        # sampling with a seed repeats too
        a = run(model, "-p", "the cat", "-n", "6", "--temp", "1", "--seed", "42")
        b = run(model, "-p", "the cat", "-n", "6", "--temp", "1", "--seed", "42")
        check(a[0] == 0 and a[1] == b[1], "seeded sampling repeats: %r vs %r" % (a[1], b[1]))

        # one chat turn through the template
        rc, out, err = run(model, "--chat", "-p", "hello", "-s", "be brief", "-n", "4", "--temp", "0")
        check(rc == 0, "chat turn exits 0: %r" % err)
        check("prompt eval time" in err, "chat prints timings: %r" % err)

        # interactive chat: two turns from stdin
        rc, out, err = run(model, "--chat", "-n", "3", "--temp", "0", stdin="hello\nthe cat\n")
        check(rc == 0, "interactive chat exits 0: %r" % err)
        check(err.count("prompt eval time") == 2, "two turns answered: %r" % err)

        # usage errors
        rc, _, err = run(model)
        check(rc == 2, "no prompt: usage error (rc %d)" % rc)
        rc, _, err = run(model, "-p", "x", "--temp", "hot")
        check(rc == 2 and "--temp" in err, "bad number: %r" % err)

        # broken files: exit 1 and a message naming the problem
        bad = os.path.join(d, "bad.gguf")
        tiny_llama(bad, arch="mamba")
        rc, out, err = run(bad, "-p", "hello")
        check(rc == 1, "unsupported architecture exits 1 (rc %d)" % rc)
        check("unsupported architecture mamba; supported: llama, qwen2" in err, err)
        tiny_llama(bad, drop="blk.0.ffn_up.weight")
        rc, out, err = run(bad, "-p", "hello")
        check(rc == 1 and "missing tensor blk.0.ffn_up.weight" in err, "missing tensor: %r" % err)
        with open(bad, "wb") as f:
            f.write(b"GGUF\x03\x00\x00\x00" + b"\x00" * 5)
        rc, out, err = run(bad, "-p", "hello")
        check(rc == 1 and "sluice run:" in err, "truncated file: %r" % err)
        rc, out, err = run(os.path.join(d, "absent.gguf"), "-p", "hello")
        check(rc == 1 and "absent.gguf" in err, "absent file: %r" % err)

    print("%d passed, %d failed" % (passed, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
