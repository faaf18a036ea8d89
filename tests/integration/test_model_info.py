"""`sluice model info` on files from the Python GGUF writer: the facts it prints,
and a clean exit 1 with a message for broken files."""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402

SLUICE = os.environ.get("SLUICE_BIN", "build/release/sluice")
failures = 0
passed = 0


def check(cond, what):
    global failures, passed
    if cond:
        passed += 1
    else:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def info(path):
    p = subprocess.run([SLUICE, "model", "info", path], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def line(out, label):
    for ln in out.splitlines():
        if ln.startswith(label):
            return ln[len(label):].strip()
    return None


def tiny_llama(alignment=32):
    w = gw.GGUFWriter(alignment=alignment)
    w.add("general.architecture", "llama")
    w.add("general.name", "Tiny Test")
    w.add("llama.context_length", 2048, gw.UINT32)
    w.add("llama.embedding_length", 64, gw.UINT32)
    w.add("llama.block_count", 2, gw.UINT32)
    w.add("llama.attention.head_count", 8, gw.UINT32)
    w.add("llama.attention.head_count_kv", 4, gw.UINT32)
    w.add("llama.rope.freq_base", 500000.0, gw.FLOAT32)
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", "llama-bpe")
    toks = ["<|begin|>", "<|end|>"] + ["t%d" % i for i in range(98)]
    w.add("tokenizer.ggml.tokens", toks)
    w.add("tokenizer.ggml.token_type", [1] * 100, (gw.ARRAY, gw.INT32))
    w.add("tokenizer.ggml.merges", ["t 1", "t 2"])
    w.add("tokenizer.ggml.bos_token_id", 0, gw.UINT32)
    w.add("tokenizer.ggml.eos_token_id", 1, gw.UINT32)
    w.add("tokenizer.chat_template", "{% for message in messages %}" + "x" * 200 + "{% endfor %}")
    w.add("test.nested", [[1, 2], [3]], (gw.ARRAY, (gw.ARRAY, gw.INT32)))
    w.add_tensor("token_embd.weight", gw.GGML_Q8_0, [64, 100])
    for b in range(2):
        w.add_tensor("blk.%d.attn_norm.weight" % b, gw.GGML_F32, [64])
        w.add_tensor("blk.%d.attn_q.weight" % b, gw.GGML_Q4_K, [256, 64])
        w.add_tensor("blk.%d.ffn_down.weight" % b, gw.GGML_Q6_K, [256, 64])
    w.add_tensor("output_norm.weight", gw.GGML_F32, [64])
    w.add_tensor("output.weight", gw.GGML_F16, [64, 100])
    return w


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tiny.gguf")
        w = tiny_llama()
        data = w.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        rc, out, err = info(path)
        check(rc == 0, "valid file exits 0 (rc=%d, stderr=%s)" % (rc, err))
        check(line(out, "gguf version:") == "3", "version")
        check(line(out, "architecture:") == "llama", "architecture")
        check(line(out, "name:") == "Tiny Test", "name")
        # 6400 + 2*(64 + 16384 + 16384) + 64 + 6400 = 78528
        check(line(out, "parameters:") == "78528 (78.53K)", "parameters: %r" % line(out, "parameters:"))
        check(line(out, "file size:") is not None and
              line(out, "file size:").endswith("(%d bytes)" % len(data)), "file size")
        check(line(out, "context length:") == "2048", "context length")
        check(line(out, "embedding length:") == "64", "embedding length")
        check(line(out, "layers:") == "2", "layers")
        check(line(out, "heads:") == "8", "heads")
        check(line(out, "kv heads:") == "4", "kv heads")
        check(line(out, "rope freq base:") == "500000", "rope freq base")
        check(line(out, "tokenizer:") == "gpt2", "tokenizer model")
        check(line(out, "tokenizer pre:") == "llama-bpe", "tokenizer pre")
        check(line(out, "vocabulary size:") == "100", "vocab")
        check(line(out, "bos token id:") == "0", "bos")
        check(line(out, "eos token id:") == "1", "eos")
        tmpl = line(out, "chat template:")
        check(tmpl == "{% for message in messages %}" + "x" * 51 + "...", "template head: %r" % tmpl)
        # per-type lines: Q8_0 64x100 = 200 blocks * 34 = 6800 B
        check("Q8_0             1 tensors, 6.64 KiB" in out, "Q8_0 line")
        check("Q4_K             2 tensors" in out, "Q4_K line")
        check("F32              3 tensors, 768 B" in out, "F32 line")

        # alignment other than the default
        path64 = os.path.join(d, "tiny64.gguf")
        tiny_llama(alignment=64).write(path64)
        rc, out, err = info(path64)
        check(rc == 0 and line(out, "alignment:") == "64", "alignment 64: %s" % err)

        # version 2 has the same layout
        w2 = gw.GGUFWriter(version=2)
        w2.add("general.architecture", "llama")
        p2 = os.path.join(d, "v2.gguf")
        w2.write(p2)
        rc, out, err = info(p2)
        check(rc == 0 and line(out, "gguf version:") == "2", "v2 accepted")

        # broken files: exit 1 and a message naming the problem and offset
        cases = [
            ("magic", b"GGML" + data[4:], "bad magic"),
            ("v1", data[:4] + struct.pack("<I", 1) + data[8:], "version 1"),
            ("truncated", data[: len(data) // 2], "lies outside the file"),
            ("header", data[:10], "truncated"),
        ]
        bad_type = gw.GGUFWriter()
        bad_type.add_raw("k", 42, b"\0\0\0\0")
        cases.append(("badtype", bad_type.to_bytes(), "unknown value type 42"))
        for name, blob, want in cases:
            p = os.path.join(d, name + ".gguf")
            with open(p, "wb") as f:
                f.write(blob)
            rc, out, err = info(p)
            check(rc == 1, "%s: exit 1 (got %d)" % (name, rc))
            check(want in err and "offset " in err, "%s: stderr %r mentions %r" % (name, err, want))

        rc, out, err = info(os.path.join(d, "missing.gguf"))
        check(rc == 1 and "cannot open" in err, "missing file")
        p = subprocess.run([SLUICE, "model", "bogus"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 2, "unknown subcommand is a usage error")

    print("%d passed, %d failed" % (passed, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
