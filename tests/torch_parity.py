"""torch_parity.py -- dpmptop against PyTorch on the same data, weights and hyper-parameters.

Writes a small IDX dataset and initial weights (safetensors, written here by hand: no
safetensors package is needed), trains the same nn.Sequential with torch.optim for the same
steps, then compares dpmptop's per-step losses (its metrics file) and final weights (its
--save file, loaded with load_state_dict(strict=True)). Usage:

    torch_parity.py prepare DIR VARIANT     # writes DIR/{idx files, init.safetensors, run.ini}
    torch_parity.py check DIR VARIANT       # compares DIR/m.jsonl and DIR/out.safetensors

Tolerances: per-step loss within 1e-5 relative; final weights max|a-b| <= 1e-4 * max|a| (ten
float32 steps through different GEMM and reduction orders).
"""
import json
import math
import struct
import sys

import torch

LAYERS = "linear:16, gelu, linear:12, tanh, linear:8, relu, linear:4"
N_TRAIN, N_TEST, SIDE, CLASSES, BATCH, STEPS = 70, 20, 6, 4, 16, 10

VARIANTS = {
    "sgd": dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
                warmup=0, lr_schedule="constant", clip=0.0),
    "adamw": dict(kind="adamw", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.05,
                  warmup=3, lr_schedule="cosine", clip=0.5),
}


def build_model():
    mods = []
    width = SIDE * SIDE
    for tok in [t.strip() for t in LAYERS.split(",")]:
        if tok.startswith("linear:"):
            out = int(tok.split(":")[1])
            mods.append(torch.nn.Linear(width, out))
            width = out
        else:
            mods.append({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(),
                         "gelu": torch.nn.GELU(approximate="tanh")}[tok])
    return torch.nn.Sequential(*mods)


def write_idx(path, array, dims):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(bytes(array))


def data(split, n):
    g = torch.Generator().manual_seed(7 if split == "train" else 8)
    pixels = torch.randint(0, 256, (n, SIDE * SIDE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (n,), generator=g, dtype=torch.uint8)
    return pixels, labels


def save_safetensors(path, state):
    header, blobs, at = {}, [], 0
    for name, t in state.items():
        b = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(body[b:end]), dtype=torch.float32).reshape(e["shape"])
    return out


def lr_at(v, step, total):
    if step < v["warmup"]:
        return v["lr"] * (step + 1) / v["warmup"]
    if v["lr_schedule"] == "constant":
        return v["lr"]
    return v["lr"] * 0.5 * (1 + math.cos(math.pi * (step - v["warmup"]) / (total - v["warmup"])))


def prepare(d, name):
    v = VARIANTS[name]
    for split, n, prefix in (("train", N_TRAIN, "train"), ("test", N_TEST, "t10k")):
        x, y = data(split, n)
        write_idx(f"{d}/{prefix}-images-idx3-ubyte", x.flatten().tolist(), [n, SIDE, SIDE])
        write_idx(f"{d}/{prefix}-labels-idx1-ubyte", y.tolist(), [n])
    torch.manual_seed(3)
    save_safetensors(f"{d}/init.safetensors", build_model().state_dict())
    optim = "\n".join(f"{k} = {str(val).lower() if isinstance(val, bool) else val}"
                      for k, val in v.items())
    with open(f"{d}/run.ini", "w") as f:
        f.write(f"[run]\nsteps = {STEPS}\n[data]\nkind = idx\npath = {d}\nbatch = {BATCH}\n"
                f"shuffle = false\n[model]\nlayers = {LAYERS}\n[optim]\n{optim}\n")


def check(d, name):
    v = VARIANTS[name]
    model = build_model()
    model.load_state_dict(load_safetensors(f"{d}/init.safetensors"), strict=True)
    params = list(model.parameters())
    if v["kind"] == "sgd":
        opt = torch.optim.SGD(params, lr=v["lr"], momentum=v["momentum"],
                              nesterov=v["nesterov"], weight_decay=v["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=v["lr"], betas=(v["beta1"], v["beta2"]),
                                eps=v["eps"], weight_decay=v["weight_decay"])
    x_all, y_all = data("train", N_TRAIN)
    x_all = x_all.float() / 255
    losses, at = [], 0
    for step in range(STEPS):
        rows = min(BATCH, N_TRAIN - at)  # file order; the last batch of an epoch is short
        x, y = x_all[at:at + rows], y_all[at:at + rows].long()
        at = (at + rows) % N_TRAIN
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if v["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, v["clip"])
        for g in opt.param_groups:
            g["lr"] = lr_at(v, step, STEPS)
        opt.step()
        losses.append(loss.item())

    ours = [json.loads(line)["loss"] for line in open(f"{d}/m.jsonl")
            if '"type":"step"' in line]
    failed = False
    if len(ours) != STEPS:
        print(f"{name}: dpmptop logged {len(ours)} steps, expected {STEPS}")
        failed = True
    for i, (a, b) in enumerate(zip(ours, losses)):
        if abs(a - b) > 1e-5 * abs(b):
            print(f"{name}: step {i + 1}: loss {a!r} (dpmptop) vs {b!r} (PyTorch)")
            failed = True
    trained = build_model()
    trained.load_state_dict(load_safetensors(f"{d}/out.safetensors"), strict=True)
    for (n, a), b in zip(trained.state_dict().items(), model.state_dict().values()):
        err = (a - b).abs().max().item()
        scale = b.abs().max().item()
        if err > 1e-4 * scale:
            print(f"{name}: {n}: max |dpmptop - PyTorch| = {err:.3g}, max |PyTorch| = {scale:.3g}")
            failed = True
    print(f"{name}: {'FAILED' if failed else 'ok'}: {STEPS} steps, final loss "
          f"{ours[-1] if ours else None} (dpmptop) vs {losses[-1]} (PyTorch)")
    return 1 if failed else 0


if __name__ == "__main__":
    cmd, d, variant = sys.argv[1:4]
    if cmd == "prepare":
        prepare(d, variant)
    else:
        sys.exit(check(d, variant))
