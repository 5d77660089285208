#!/usr/bin/python3
"""advisor_bench.py -- bench/run-advisor.sh's helper: its data and the reading of dpmptop's
--metrics files (JSON Lines). Standard library and numpy only (no torch).

    advisor_bench.py idx OUT TRAIN TEST [SRC]   four plain IDX files in directory OUT: the first
                                                TRAIN training and TEST test images of the IDX
                                                directory SRC (plain or .gz), or, without SRC's
                                                files, random 28x28 images and labels 0..9
    advisor_bench.py text OUT BYTES [SRC]       BYTES bytes of text: SRC's (a file, or a
                                                directory's text files as dpmptop reads them),
                                                repeated when shorter, or random printable bytes
    advisor_bench.py plans FILE                 the advice records of the file's (last) table:
                                                i|plan|strategy|stages|micro|schedule|
                                                chosen|runnable|samples_per_s|status
    advisor_bench.py outcome FILE               chosen|plans|measured|first_step|last_step|
                                                seconds
    advisor_bench.py rate FILE AFTER [median]   steps|samples/s: the steady rate of the step
                                                records after step AFTER: the harmonic mean of
                                                their samples/s (the batches are full: samples
                                                over time), or their median (deaf to the steps
                                                a busy machine slowed)
    advisor_bench.py summary FILE               seconds|samples_per_s|steps|test_accuracy

A plan is runnable (measurable on its own) when the table does not leave it out, or leaves it
out only because the search did not measure it ("not measured: ..."); the others do not fit a
device's memory, would change batch normalisation's statistics or cannot be made.
"""
import json
import os
import struct
import sys

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ in the source tree
from torch_train import read_maybe_gz, read_text  # noqa: E402 (torch only inside functions)


def fail(msg):
    sys.stderr.write(f"advisor_bench.py: {msg}\n")
    sys.exit(1)


def idx_file(src, name):
    """src/name, or src/name.gz, or None."""
    for p in (os.path.join(src, name), os.path.join(src, name + ".gz")):
        if os.path.isfile(p):
            return p
    return None


def read_idx(path, count):
    """The first `count` items of an IDX file of unsigned bytes: (dims, body)."""
    raw = read_maybe_gz(path)
    if raw[:2] != b"\0\0" or raw[2] != 8:
        fail(f"{path}: not an IDX file of unsigned bytes")
    dims = list(struct.unpack(f">{raw[3]}I", raw[4:4 + 4 * raw[3]]))
    item = 1
    for d in dims[1:]:
        item *= d
    dims[0] = min(dims[0], count)
    body = raw[4 + 4 * raw[3]:][:dims[0] * item]
    return dims, body


def write_idx(path, dims, body):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]))
        f.write(struct.pack(f">{len(dims)}I", *dims))
        f.write(body)


def cmd_idx(out, train, test, src=""):
    import numpy as np
    os.makedirs(out, exist_ok=True)
    files = [idx_file(src, n) for n in IDX_NAMES] if src else [None] * 4
    real = all(files)
    rng = np.random.default_rng(1)
    for name, path, count in zip(IDX_NAMES, files, (train, train, test, test)):
        images = "images" in name
        if real:
            dims, body = read_idx(path, count)
        else:
            dims = [count, 28, 28] if images else [count]
            body = rng.integers(0, 256 if images else 10, size=dims, dtype=np.uint8).tobytes()
        write_idx(os.path.join(out, name), dims, body)
    print("real" if real else "random")


def cmd_text(out, size, src=""):
    text = read_text(src) if src and os.path.exists(src) else b""
    if text:
        kind = "real"
        text = (text * (size // len(text) + 1))[:size]
    else:
        import numpy as np
        kind = "random"
        rng = np.random.default_rng(1)
        text = rng.integers(32, 127, size=size, dtype=np.uint8).tobytes()
    with open(out, "wb") as f:
        f.write(text)
    print(kind)


def records(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    pass  # a line cut short by a run that died


def last_table(path):
    """The advice records and the outcome of the file's last table."""
    rows, table, outcome = [], [], None
    for r in records(path):
        if r.get("type") == "advice":
            rows.append(r)
        elif r.get("type") == "advice_outcome":
            table, outcome, rows = rows, r, []
    return table, outcome


def cell(s):
    return str(s).replace("|", "/")


def cmd_plans(path):
    table, _ = last_table(path)
    for i, a in enumerate(table):
        why = a.get("left_out")
        runnable = why is None or why.startswith("not measured")
        if a.get("measured"):
            status = "dropped" if a.get("dropped") else "measured"
            status += f" over {a.get('steps')} steps"
        else:
            status = why or "not measured"
        rate = a.get("samples_per_s")
        print("|".join(cell(x) for x in (
            i, a["plan"], a["strategy"], a["stages"], a["micro"], a["schedule"],
            "yes" if a.get("chosen") else "no", "yes" if runnable else "no",
            f"{rate:.1f}" if isinstance(rate, (int, float)) else "-", status)))


def cmd_outcome(path):
    _, o = last_table(path)
    if o is None:
        return
    print("|".join(cell(x) for x in (
        o.get("chosen") or "-", o.get("plans"), o.get("measured"), o.get("first_step"),
        o.get("last_step"), f"{o.get('seconds') or 0:.2f}")))


def cmd_rate(path, after, stat="mean"):
    rates = []
    for r in records(path):
        if r.get("type") == "step" and r.get("step", 0) > after:
            rate = r.get("samples_per_s")
            if isinstance(rate, (int, float)) and rate > 0:
                rates.append(rate)
    n = len(rates)
    if not n:
        print("0|0")
    elif stat == "median":
        rates.sort()
        print(f"{n}|{(rates[(n - 1) // 2] + rates[n // 2]) / 2:.1f}")
    else:
        print(f"{n}|{n / sum(1.0 / x for x in rates):.1f}")


def cmd_summary(path):
    s = None
    for r in records(path):
        if r.get("type") == "summary":
            s = r
    if s is None:
        return
    acc = s.get("test_accuracy")
    print("|".join(str(x) for x in (
        f"{s.get('seconds') or 0:.3f}", f"{s.get('samples_per_s') or 0:.1f}", s.get("steps"),
        f"{acc:.4f}" if isinstance(acc, (int, float)) else "-")))


def main(argv):
    if len(argv) < 2:
        fail("usage: see the docstring at the top of this file")
    cmd, args = argv[1], argv[2:]
    if cmd == "idx" and len(args) in (3, 4):
        cmd_idx(args[0], int(args[1]), int(args[2]), *args[3:])
    elif cmd == "text" and len(args) in (2, 3):
        cmd_text(args[0], int(args[1]), *args[2:])
    elif cmd == "plans" and len(args) == 1:
        cmd_plans(args[0])
    elif cmd == "outcome" and len(args) == 1:
        cmd_outcome(args[0])
    elif cmd == "rate" and len(args) in (2, 3) and args[2:] in ([], ["mean"], ["median"]):
        cmd_rate(args[0], int(args[1]), *args[2:])
    elif cmd == "summary" and len(args) == 1:
        cmd_summary(args[0])
    else:
        fail(f"bad command line {' '.join(argv[1:])} (see the docstring)")


if __name__ == "__main__":
    main(sys.argv)
