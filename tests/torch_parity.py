"""torch_parity.py -- dpmptop against PyTorch on the same data, weights and hyper-parameters.

A variant is MODEL-OPTIMIZER: an MLP on IDX files, a small CNN with residual blocks (one with
a strided 1x1 projection) on CIFAR-10 batch files, or a 2-block GPT on a text, each with SGD
(Nesterov momentum, weight decay) or AdamW (warm-up, cosine decay, clipping). prepare writes
the data and initial weights (PyTorch's initialisation, saved as safetensors); check trains
the same network, built from the same layer list by bench/torch_models.py, with torch.optim for
the same steps, then compares dpmptop's per-step losses (its metrics file) and final weights
(its --save file, loaded with load_state_dict(strict=True), so the names and shapes must be
PyTorch's both ways). Usage:

    torch_parity.py prepare DIR VARIANT     # writes DIR/{data, init.safetensors, run.ini}
    torch_parity.py check DIR VARIANT       # compares DIR/m.jsonl and DIR/out.safetensors,
                                            # writes PyTorch's DIR/torch.safetensors

Tolerances: per-step loss within 1e-5 relative; final weights max|a-b| <= 1e-4 * max|a| (ten
float32 steps through different GEMM and reduction orders). Two exceptions under AdamW: the key
part of attention's c_attn.bias, and the bias of a layer that bn follows. Their gradients are 0
in exact arithmetic (the key bias adds the same q.b to every score of a query, which softmax
ignores; batch normalisation subtracts the batch's mean, and with it any bias), so both programs
compute rounding noise there, which AdamW normalises into steps whose sign depends on the
summation order. They must instead stay near where weight decay alone takes them: the key bias
within 0.05 * (sum of the learning rates), which rounding noise fills to about 1e-3 and a real
gradient about all of; a bias before bn within 0.25 of it, since the noise of a whole
channel's gradient sum keeps its sign from step to step and took one 0.07 of the way (the
outputs do not depend on that bias at all: the loss check covers what it could change). The
running mean of a bn after such a bias carries the bias's difference: it is compared net of
it.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_models  # noqa: E402

STEPS = 10
# Each data set's training split crosses an epoch boundary within the steps, with a short
# last batch (file order: shuffle is off).
MODELS = {
    "mlp": dict(data="idx", shape=(1, 6, 6), classes=4, n_train=70, n_test=20, batch=16,
                layers="linear:16, gelu, linear:12, tanh, linear:8, relu, linear:4"),
    "cnn": dict(data="cifar10", shape=(3, 32, 32), classes=10, n_train=40, n_test=10, batch=16,
                layers="conv:4:3:2:1, relu, res(conv:4:3:1:1, relu, conv:8:3:2:1), maxpool:2, "
                       "res(conv:8:3:1:1, tanh), avgpool, linear:10"),
    "gpt": dict(data="text", shape=(8,), classes=256, text_bytes=600, batch=16,
                layers="embed:256:16, pos, block:2, block:2, ln, linear:256"),
    # every layer a DCGAN needs: batch normalisation after images and after vectors, leaky
    # ReLU (a slope, and the default), sigmoid, unflatten and transposed convolutions
    "gan": dict(data="cifar10", shape=(3, 32, 32), classes=10, n_train=40, n_test=30, batch=16,
                layers="conv:6:3:2:1, bn, leakyrelu:0.2, conv:8:4:2:1, bn, relu, flatten, "
                       "linear:24, bn, sigmoid, linear:64, unflatten:4:4:4, deconv:6:4:2:1, bn, "
                       "leakyrelu, deconv:3:3:1:1, tanh, flatten, linear:10"),
}

OPTIMS = {
    "sgd": dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
                warmup=0, lr_schedule="constant", clip=0.0),
    "adamw": dict(kind="adamw", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.05,
                  warmup=3, lr_schedule="cosine", clip=0.5),
}


def variant(name):
    model, optim = name.split("-")
    return MODELS[model], OPTIMS[optim]


def build_model(m):
    return torch_models.build(m["layers"], m["shape"], m["classes"])


def write_idx(path, array, dims):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(bytes(array))


def images(m, split):
    """Random pixels (uint8, [n, C, H, W]) and labels of a split."""
    n = m["n_train"] if split == "train" else m["n_test"]
    g = torch.Generator().manual_seed(7 if split == "train" else 8)
    pixels = torch.randint(0, 256, (n,) + m["shape"], generator=g, dtype=torch.uint8)
    labels = torch.randint(0, m["classes"], (n,), generator=g, dtype=torch.uint8)
    return pixels, labels


def text(m):
    """Words drawn at random, as bytes."""
    words = b"a the of pipeline device stage gradient block sample replica layer step".split()
    g = torch.Generator().manual_seed(7)
    picks = torch.randint(0, len(words), (m["text_bytes"],), generator=g).tolist()
    return b" ".join(words[i] for i in picks)[:m["text_bytes"]]


def write_data(d, m):
    if m["data"] == "text":
        with open(f"{d}/text.txt", "wb") as f:
            f.write(text(m))
        return
    for split in ("train", "test"):
        x, y = images(m, split)
        if m["data"] == "idx":
            prefix = "train" if split == "train" else "t10k"
            write_idx(f"{d}/{prefix}-images-idx3-ubyte", x.flatten().tolist(),
                      [len(x)] + list(m["shape"][1:]))
            write_idx(f"{d}/{prefix}-labels-idx1-ubyte", y.tolist(), [len(x)])
        else:  # CIFAR-10: records of a label byte and the CHW pixels, the training set in 5 files
            records = [bytes([label]) + bytes(px.flatten().tolist()) for px, label in
                       zip(x, y.tolist())]
            if split == "test":
                files = {"test_batch.bin": records}
            else:
                per = len(records) // 5
                files = {f"data_batch_{b + 1}.bin": records[b * per:(b + 1) * per]
                         for b in range(5)}
            for name, recs in files.items():
                with open(f"{d}/{name}", "wb") as f:
                    f.write(b"".join(recs))


def training_set(m):
    """The training inputs and targets as dpmptop sees them, in file order."""
    if m["data"] == "text":  # windows of T bytes over the first 90%, next bytes as targets
        t = m["shape"][0]
        b = text(m)
        b = torch.tensor(list(b[:len(b) - len(b) // 10]), dtype=torch.long)
        n = (len(b) - 1) // t
        return b[:n * t].view(n, t), b[1:n * t + 1].view(n, t)
    x, y = images(m, "train")
    return x.float() / 255, y.long()


def lr_at(v, step, total):
    if step < v["warmup"]:
        return v["lr"] * (step + 1) / v["warmup"]
    if v["lr_schedule"] == "constant":
        return v["lr"]
    return v["lr"] * 0.5 * (1 + math.cos(math.pi * (step - v["warmup"]) / (total - v["warmup"])))


def prepare(d, name):
    m, v = variant(name)
    write_data(d, m)
    torch.manual_seed(3)
    model = build_model(m)
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    with torch.no_grad():  # norms start at 1 and 0: move them off so a mix-up shows
        for mod in model.modules():
            if isinstance(mod, norms):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.add_(0.1 * torch.randn_like(mod.bias))
    torch_models.save_safetensors(f"{d}/init.safetensors", model.state_dict())
    optim = "\n".join(f"{k} = {str(val).lower() if isinstance(val, bool) else val}"
                      for k, val in v.items())
    path = f"{d}/text.txt" if m["data"] == "text" else d
    context = f"context = {m['shape'][0]}\n" if m["data"] == "text" else ""
    with open(f"{d}/run.ini", "w") as f:
        f.write(f"[run]\nsteps = {STEPS}\n[data]\nkind = {m['data']}\npath = {path}\n{context}"
                f"batch = {m['batch']}\nshuffle = false\n[model]\nlayers = {m['layers']}\n"
                f"[optim]\n{optim}\n")


def check(d, name):
    m, v = variant(name)
    model = build_model(m)
    init = torch_models.load_safetensors(f"{d}/init.safetensors")
    model.load_state_dict(init, strict=True)
    params = list(model.parameters())
    if v["kind"] == "sgd":
        opt = torch.optim.SGD(params, lr=v["lr"], momentum=v["momentum"],
                              nesterov=v["nesterov"], weight_decay=v["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=v["lr"], betas=(v["beta1"], v["beta2"]),
                                eps=v["eps"], weight_decay=v["weight_decay"])
    x_all, y_all = training_set(m)
    n_train = len(x_all)
    losses, at = [], 0
    for step in range(STEPS):
        rows = min(m["batch"], n_train - at)  # file order; the last batch of an epoch is short
        x, y = x_all[at:at + rows], y_all[at:at + rows]
        at = (at + rows) % n_train
        opt.zero_grad()
        out = model(x)  # the mean over every target: for text, every position of every sample
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, m["classes"]), y.reshape(-1))
        loss.backward()
        if v["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, v["clip"])
        for g in opt.param_groups:
            g["lr"] = lr_at(v, step, STEPS)
        opt.step()
        losses.append(loss.item())

    torch_models.save_safetensors(f"{d}/torch.safetensors", model.state_dict())  # for a look
    ours = [json.loads(line)["loss"] for line in open(f"{d}/m.jsonl")
            if '"type":"step"' in line]
    failed = False
    if len(ours) != STEPS:
        print(f"{name}: dpmptop logged {len(ours)} steps, expected {STEPS}")
        failed = True
    worst_loss = 0.0
    for i, (a, b) in enumerate(zip(ours, losses)):
        worst_loss = max(worst_loss, abs(a - b) / abs(b))
        if not abs(a - b) <= 1e-5 * abs(b):  # (a NaN fails too)
            print(f"{name}: step {i + 1}: loss {a!r} (dpmptop) vs {b!r} (PyTorch)")
            failed = True
    got = torch_models.load_safetensors(f"{d}/out.safetensors")
    build_model(m).load_state_dict(got, strict=True)  # exactly PyTorch's names and shapes
    lrs = [lr_at(v, step, STEPS) for step in range(STEPS)]
    decay = math.prod(1 - lr * v["weight_decay"] for lr in lrs)
    before_bn = biases_before_bn(m["layers"]) if v["kind"] == "adamw" else {}
    worst_param = worst_key_bias = 0.0
    bias_apart = {}  # a bias before bn: how far apart the two programs' noise took it
    for n, b in model.state_dict().items():
        a = got[n].clone()
        if v["kind"] == "adamw" and n.endswith("attn.c_attn.bias"):  # see the tolerances above
            key = slice(len(a) // 3, 2 * len(a) // 3)
            decayed = init[n][key] * decay
            err = (a[key] - decayed).abs().max().item()
            worst_key_bias = max(worst_key_bias, err / sum(lrs))
            if not err <= 0.05 * sum(lrs):
                print(f"{name}: {n}: the keys' part moved {err:.3g} beyond weight decay")
                failed = True
            a[key] = b[key]
        if n in before_bn:  # the same for a bias that batch normalisation subtracts again
            err = (a - init[n] * decay).abs().max().item()
            worst_key_bias = max(worst_key_bias, err / sum(lrs))
            if not err <= 0.25 * sum(lrs):
                print(f"{name}: {n}: a bias before bn moved {err:.3g} beyond weight decay")
                failed = True
            bias_apart[before_bn[n]] = (a - b).abs().max().item()
            a = b.clone()
        err = (a - b).abs().max().item()
        if n in bias_apart:  # bn's running mean carries its bias's noise with it
            err = max(0.0, err - bias_apart[n])
        scale = b.abs().max().item()
        worst_param = max(worst_param, err / scale)
        if not err <= 1e-4 * scale:
            print(f"{name}: {n}: max |dpmptop - PyTorch| = {err:.3g}, max |PyTorch| = {scale:.3g}")
            failed = True
    if m["data"] != "text":  # the saved model evaluates as dpmptop did, in evaluation mode
        failed |= check_evaluation(m, got, d, name)
    key_bias = f", key bias {worst_key_bias:.2g} of the lr sum" if worst_key_bias else ""
    print(f"{name}: {'FAILED' if failed else 'ok'}: {STEPS} steps, final loss "
          f"{ours[-1] if ours else None} (dpmptop) vs {losses[-1]} (PyTorch); worst relative "
          f"difference: loss {worst_loss:.2g}, weights {worst_param:.2g}{key_bias}")
    return 1 if failed else 0


def biases_before_bn(layers):
    """{"3.bias": "4.running_mean"} for each top-level layer with a bias that bn follows."""
    items = torch_models.split_list(layers)
    return {f"{i}.bias": f"{i + 1}.running_mean" for i in range(len(items) - 1)
            if items[i + 1] == "bn" and items[i].split(":")[0] in ("conv", "deconv", "linear")}


def check_evaluation(m, saved, d, name):
    """dpmptop's --save file, loaded strictly into the PyTorch twin in evaluation mode (batch
    normalisation on its running statistics), gives dpmptop's final evaluation of the test
    split: the mean loss within 1e-5 relative, the same accuracy."""
    model = build_model(m)
    model.load_state_dict(saved, strict=True)
    model.eval()
    x, y = images(m, "test")
    with torch.no_grad():
        out = model(x.float() / 255)
    loss = torch.nn.functional.cross_entropy(out, y.long()).item()
    accuracy = (out.argmax(1) == y.long()).float().mean().item()
    evals = [json.loads(line) for line in open(f"{d}/m.jsonl") if '"type":"eval"' in line]
    if not evals:
        print(f"{name}: dpmptop logged no evaluation")
        return True
    ours = evals[-1]
    ok = abs(ours["loss"] - loss) <= 1e-5 * abs(loss) and abs(ours["accuracy"] - accuracy) < 1e-6
    print(f"{name}: evaluation of the saved model: loss {ours['loss']!r} (dpmptop) vs {loss!r} "
          f"(PyTorch, eval mode), accuracy {ours['accuracy']} vs {accuracy}"
          f"{'' if ok else ': DIFFERENT'}")
    return not ok


if __name__ == "__main__":
    cmd, d, name = sys.argv[1:4]
    if cmd == "prepare":
        prepare(d, name)
    else:
        sys.exit(check(d, name))
