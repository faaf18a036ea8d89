"""`sluice train` end to end on a tiny model: the corpus and held-out
questions are made, training writes checkpoints, a run killed with SIGKILL
mid-way resumes from its last checkpoint and ends at the loss of an
uninterrupted run, and the model file loads in `sluice run --chat`."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SLUICE = harness.env_path("SLUICE_BIN", "build/release/sluice")
STEPS = 150
TINY = ["--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ff", "64",
        "--vocab", "512", "--seq", "32", "--batch", "4", "--steps", str(STEPS), "--lr", "0.005",
        "--seed", "3", "--threads", "2", "--eval-every", "50"]


def final_loss(stderr):
    m = re.search(r"final loss ([0-9.]+)", stderr)
    harness.check(m is not None, "no final loss in: " + stderr[-500:])
    return float(m.group(1))


def make_data(d):
    corpus = os.path.join(d, "corpus.txt")
    evalf = os.path.join(d, "eval.jsonl")
    r = subprocess.run([SLUICE, "train", "--make-corpus", "--out", corpus, "--size-kb", "48",
                        "--products", "6", "--make-eval", evalf],
                       capture_output=True, text=True, timeout=60)
    harness.check(r.returncode == 0, r.stderr)
    with open(corpus) as f:
        text = f.read()
    harness.check(len(text) >= 48 * 1024 and text.startswith("<|im_start|>user\n"))
    with open(evalf) as f:
        lines = f.read().splitlines()
    harness.check(len(lines) == 24, f"{len(lines)} eval lines")
    return corpus


def test_kill_and_resume():
    with tempfile.TemporaryDirectory() as d:
        corpus = make_data(d)
        full = os.path.join(d, "full.gguf")
        r = subprocess.run([SLUICE, "train", "--corpus", corpus, "--out", full] + TINY,
                           capture_output=True, text=True, timeout=300)
        harness.check(r.returncode == 0, r.stderr)
        want = final_loss(r.stderr)
        harness.check(re.search(r"step 50/150 loss [0-9.]+ val [0-9.]+", r.stderr) is not None,
                      "progress lines with validation loss")

        out = os.path.join(d, "resumed.gguf")
        ckpt = os.path.join(d, "run.ckpt")
        argv = [SLUICE, "train", "--corpus", corpus, "--out", out, "--ckpt", ckpt,
                "--ckpt-every", "10", "--resume"] + TINY
        p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        seen = 0
        deadline = time.time() + 240
        for line in p.stderr:
            m = re.match(r"step (\d+)/", line)
            if m:
                seen = int(m.group(1))
            if seen >= 40 and os.path.exists(ckpt):
                break
            harness.check(time.time() < deadline, "training too slow")
        p.send_signal(signal.SIGKILL)
        p.wait()
        harness.check(seen < STEPS, f"killed too late (step {seen})")
        harness.check(not os.path.exists(out), "no model file from a killed run")
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        harness.check(r.returncode == 0, r.stderr)
        harness.check("resumed from the checkpoint" in r.stderr, r.stderr[:300])
        got = final_loss(r.stderr)
        # resuming restores weights, Adam moments, step and data order: the
        # loss is the uninterrupted run's (printed to 4 decimals)
        harness.check(abs(got - want) < 1e-3, f"resumed final loss {got} vs {want}")
        with open(full, "rb") as a, open(out, "rb") as b:
            harness.check(a.read() == b.read(), "resumed model differs from the uninterrupted one")

        r = subprocess.run([SLUICE, "run", out, "--chat", "-p", "How much is it?", "--temp", "0",
                            "-n", "8", "--threads", "1"], capture_output=True, text=True,
                           timeout=60)
        harness.check(r.returncode == 0, r.stderr)


def test_masked_cli():
    """--mask-assistant --doc-start: the loss counts only the answers, so it
    differs from the unmasked run's over the same steps; the file loads."""
    with tempfile.TemporaryDirectory() as d:
        corpus = make_data(d)
        args = [a if a != str(STEPS) else "20" for a in TINY]
        losses = []
        for extra in ([], ["--mask-assistant", "--doc-start"]):
            out = os.path.join(d, f"m{len(extra)}.gguf")
            r = subprocess.run([SLUICE, "train", "--corpus", corpus, "--out", out] + args + extra,
                               capture_output=True, text=True, timeout=120)
            harness.check(r.returncode == 0, r.stderr)
            losses.append(final_loss(r.stderr))
        harness.check(abs(losses[0] - losses[1]) > 1e-3, f"masked loss equals unmasked: {losses}")
        r = subprocess.run([SLUICE, "run", out, "--chat", "-p", "How much is it?", "--temp", "0",
                            "-n", "4", "--threads", "1"], capture_output=True, text=True,
                           timeout=60)
        harness.check(r.returncode == 0, r.stderr)


def test_bad_arguments():
    r = subprocess.run([SLUICE, "train", "--corpus", "/nonexistent/x", "--out", "/tmp/x.gguf"],
                       capture_output=True, text=True, timeout=30)
    harness.check(r.returncode == 1 and "/nonexistent/x" in r.stderr, r.stderr)
    r = subprocess.run([SLUICE, "train", "--vocab", "100"], capture_output=True, text=True,
                       timeout=30)
    harness.check(r.returncode == 2 and "--vocab" in r.stderr, r.stderr)


if __name__ == "__main__":
    s = harness.Suite()
    s.run(test_kill_and_resume)
    s.run(test_masked_cli)
    s.run(test_bad_arguments)
    sys.exit(s.report())
