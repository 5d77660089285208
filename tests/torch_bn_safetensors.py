"""Batch normalisation's state_dict between PyTorch and dpmptop, through safetensors files.

PyTorch builds nn.Sequential(Conv2d, BatchNorm2d, ReLU, Flatten, BatchNorm1d, Linear) by hand
(dpmptop's "conv:4:3, bn, relu, flatten, bn, linear:10" on CIFAR-10 images), runs a few training
forwards so that the running statistics move and num_batches_tracked is 3, and saves its
state_dict as PyTorch's safetensors does (bench/torch_models.py): F32 for the float tensors, I64
with shape [] for num_batches_tracked. dpmptop --init loads that file, trains one step on the whole training set
with a learning rate too small to change any weight, and --save writes the state_dict back.

    torch_bn_safetensors.py prepare DIR   # DIR/{CIFAR-10 files, init.safetensors, run.ini,
                                          #      init-f32.safetensors}
    torch_bn_safetensors.py check DIR     # DIR/out.safetensors (and the banner in DIR/out)
                                          # against PyTorch

check requires: the same tensor names, each with PyTorch's dtype (I64 for num_batches_tracked,
shape []) and shape; the trained tensors exactly as loaded; num_batches_tracked 3 + 1; the
running statistics as PyTorch's one training forward over the same samples moves them;
PyTorch's load_state_dict(strict=True) accepting the file; and dpmptop's banner (DIR/out)
counting the parameters as PyTorch's sum(p.numel() for p in model.parameters()), the buffers
left out. init-f32.safetensors is the same state_dict with num_batches_tracked written as F32
(as a writer that knows only F32 would), for the shell test to see dpmptop refuse it.
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_models  # noqa: E402

N_TRAIN, N_TEST, CLASSES = 40, 10, 10
SHAPE = (3, 32, 32)
LAYERS = "conv:4:3, bn, relu, flatten, bn, linear:10"
WARMUP_FORWARDS = 3



def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.BatchNorm1d(4 * 30 * 30), nn.Linear(4 * 30 * 30, CLASSES))


def images(split):
    n = N_TRAIN if split == "train" else N_TEST
    g = torch.Generator().manual_seed(11 if split == "train" else 12)
    pixels = torch.randint(0, 256, (n,) + SHAPE, generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (n,), generator=g, dtype=torch.uint8)
    return pixels, labels


def write_cifar(d):
    """CIFAR-10's binary files: records of a label byte and the CHW pixels."""
    for split in ("train", "test"):
        x, y = images(split)
        records = [bytes([label]) + bytes(px.flatten().tolist())
                   for px, label in zip(x, y.tolist())]
        if split == "test":
            files = {"test_batch.bin": records}
        else:
            per = len(records) // 5
            files = {f"data_batch_{b + 1}.bin": records[b * per:(b + 1) * per] for b in range(5)}
        for name, recs in files.items():
            with open(f"{d}/{name}", "wb") as f:
                f.write(b"".join(recs))


def initial_model():
    torch.manual_seed(5)
    model = build()
    with torch.no_grad():  # affine parameters off 1 and 0, so that a mix-up shows
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.add_(0.1 * torch.randn_like(mod.bias))
    model.train()
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for _ in range(WARMUP_FORWARDS):  # the running statistics move; 3 batches tracked
            model(torch.rand((8,) + SHAPE, generator=g) * 2 - 0.5)
    return model


def prepare(d):
    write_cifar(d)
    state = initial_model().state_dict()
    assert state["1.num_batches_tracked"].dtype == torch.int64
    assert int(state["1.num_batches_tracked"]) == WARMUP_FORWARDS
    torch_models.save_safetensors(f"{d}/init.safetensors", state)
    torch_models.save_safetensors(f"{d}/init-f32.safetensors",
                                  {k: v.float() for k, v in state.items()})
    with open(f"{d}/run.ini", "w") as f:
        f.write(f"[run]\nsteps = 1\n[data]\nkind = cifar10\npath = {d}\nbatch = {N_TRAIN}\n"
                f"shuffle = false\n[model]\nlayers = {LAYERS}\n[optim]\nkind = sgd\n"
                f"lr = 1e-30\n[parallel]\ndevices = cpu:1\n")


def check(d):
    init = torch_models.load_safetensors(f"{d}/init.safetensors")
    out = torch_models.load_safetensors(f"{d}/out.safetensors")
    model = build()
    want = model.state_dict()
    problems = []
    if list(out) != list(want):
        problems.append(f"names {list(out)} != PyTorch's {list(want)}")
    for name, ref in want.items():
        if name not in out:
            continue
        got = out[name]
        if got.dtype != ref.dtype or got.shape != ref.shape:
            problems.append(f"{name}: {got.dtype} {list(got.shape)}, PyTorch's "
                            f"{ref.dtype} {list(ref.shape)}")
    # PyTorch's one training forward over the step's samples (the whole training set)
    model.load_state_dict(init, strict=True)
    model.train()
    x, _ = images("train")
    with torch.no_grad():
        model(x.float() / 255)
    moved = model.state_dict()
    for name, got in out.items():
        if name.endswith("num_batches_tracked"):
            if got.dtype != torch.int64 or int(got) != WARMUP_FORWARDS + 1:
                problems.append(f"{name}: {got.dtype} {got.tolist()}, wanted int64 "
                                f"{WARMUP_FORWARDS + 1}")
        elif name.endswith(("running_mean", "running_var")):
            ref = moved[name]
            err = float((got - ref).abs().max() / ref.abs().max())
            if err > 1e-5:
                problems.append(f"{name}: differs from PyTorch's by {err:.3g} (relative)")
            if torch.equal(got, init[name]):
                problems.append(f"{name}: the training step did not move it")
        elif not torch.equal(got, init[name]):
            problems.append(f"{name}: a trained tensor changed (max "
                            f"{float((got - init[name]).abs().max()):.3g})")
    trained = sum(p.numel() for p in model.parameters())
    with open(f"{d}/out") as f:
        banner = f.read()
    if f"({trained} parameters)" not in banner:
        problems.append(f"dpmptop's banner does not say ({trained} parameters), PyTorch's "
                        f"sum(p.numel() for p in model.parameters())")
    try:
        build().load_state_dict(out, strict=True)
    except RuntimeError as e:
        problems.append(f"PyTorch's load_state_dict refuses out.safetensors: {e}")
    for p in problems:
        print(f"torch_bn_safetensors: {p}", file=sys.stderr)
    if not problems:
        print(f"{len(out)} tensors: names, dtypes, shapes and values as PyTorch's")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
