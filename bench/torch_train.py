#!/usr/bin/python3
"""torch_train.py -- trains a dpmptop INI file's model in PyTorch, the way dpmptop does.

    torch_train.py -c examples/tiny-gpt.ini --set data.shuffle=false --steps 200 \\
        --init init.safetensors

reads the INI file as dpmptop does (its defaults, `--set SECTION.KEY=VALUE` overrides after
the file, --steps and --epochs as dpmptop's), builds the model with bench/torch_models.py
(the same layers, PyTorch's modules, dpmptop's safetensors names) and trains it on the same
data with the same batch, optimizer, LR schedule, clipping, steps and evaluations:

- data: IDX directories (fashion-mnist, mnist, idx; plain or .gz; pixels / 255 as [1, H, W]),
  CIFAR-10 batch files ([3, 32, 32]) and text (a file, or a directory's regular files in name
  order, leaving out symbolic links and files holding a NUL byte; windows of data.context
  bytes with the next bytes as targets; the last tenth held out). data.limit keeps the first N
  training samples. Batches follow the sample order; the last batch of an epoch is short.
  With data.shuffle = false the order is the file order, as dpmptop's; with shuffle on, each
  epoch takes a permutation from torch's RNG (seeded by run.seed and the epoch), which is not
  dpmptop's order. Synthetic data is not supported.
- optimizer: torch.optim.SGD (momentum, nesterov, weight_decay) or torch.optim.AdamW (betas,
  eps, weight_decay); the learning rate of step s (0-based) of T is engine/optim.c's:
  lr (s + 1) / warmup during warm-up, then lr, or lr (1 + cos(pi (s - warmup) / (T - warmup))) / 2
  under cosine; optim.clip > 0 clips the global gradient norm with clip_grad_norm_.
- loss: cross-entropy averaged over every target (each position of a sequence); evaluation on
  the held-out split every run.eval_every steps, at the end of each epoch and at the end: mean
  loss per target, accuracy per target, and for text bits per byte (loss / ln 2).
- [model] objective = mlm (text only): a masked language model, as BERT's. The targets are the
  input bytes; each step masks its batch as dpmptop does (bench/torch_models.py's mlm_mask,
  dp_mlm_input bit for bit: run.seed, the step from 1, the row's place in the batch), the test
  split with its fixed masks (seed 0, step 0, the sample's index). The loss is cross-entropy
  with ignore_index=-1, the mean over the batch's chosen positions (0 when none is chosen);
  evaluation reports the masked loss, bits and accuracy: sums over every chosen position of
  the test split over their count, printed as dpmptop's headless line.
- weights: --init FILE.safetensors starts from dpmptop's weights (its --save file), else
  PyTorch's initialisation seeded by run.seed; --save FILE writes the final weights.
  Dropout layers draw PyTorch's masks, not dpmptop's.

Prints a line per evaluation and ends with one key=value line: steps, samples_per_s (training
samples over the time spent in steps, evaluations left out; --skip N leaves the first N steps
out too, as warm-up), final_loss, test_loss, accuracy, bits_per_byte (text; under mlm
bits_per_masked_byte and masked_bytes) and the threads. --metrics FILE also writes, for tests, a JSON line per step
({"type": "step", "step", "loss", "lr"}) and per evaluation ({"type": "eval", "step", "epoch",
"loss", "accuracy", "positions": the targets counted}), at full precision.

Threads: --threads N (default: every core) and --passive, as bench/torch_threads.py says.
Run with Debian's /usr/bin/python3 (the python3 first on PATH may have no torch).
--device cuda (with --tf32 for TF32, as dpmptop's default precision) trains eagerly on a GPU
with the data sets held there, the way dpmptop keeps them: scripts/gpu-check's comparison.
"""
import argparse
import gzip
import json
import math
import os
import stat
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ in the source tree
import torch_threads  # noqa: E402 (found beside this file)

# dpmptop's keys and defaults (README.md, Configuration). Keys torch_train.py does not use are
# accepted and ignored ([parallel], [checkpoint], [dashboard], precision, on_device).
DEFAULTS = {
    "run": dict(name="dpmptop", seed="1", steps="0", epochs="1", precision="tf32",
                on_nan="stop", eval_every="0"),
    "data": dict(kind="fashion-mnist", path="", batch="64", shuffle="true", on_device="true",
                 limit="0", context="128", features="10", classes="10", samples="60000",
                 test_samples="10000"),
    "model": dict(layers="linear:256, relu, linear:10", objective="classify"),
    "optim": dict(kind="sgd", lr="0.01", momentum="0", nesterov="false", weight_decay="0",
                  beta1="0.9", beta2="0.999", eps="1e-8", warmup="0", lr_schedule="constant",
                  clip="0"),
    "parallel": dict(devices="auto", strategy="dp", stages="0", microbatches="0",
                     schedule="1f1b", bucket_mb="25", balance="time"),
    "checkpoint": dict(dir="", every="0", keep="3"),
    "dashboard": dict(refresh_ms="100", color="true"),
}
DEFAULT_PATHS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist",
                 "mnist": "/usr/share/datasets/mnist"}


def fail(msg):
    sys.exit(f"torch_train.py: {msg}")


def set_key(cfg, assignment, where):
    key, eq, value = assignment.partition("=")
    section, dot, name = key.strip().partition(".")
    if not eq or not dot:
        fail(f"{where}: '{assignment}' is not SECTION.KEY=VALUE")
    if section not in cfg or name not in cfg[section]:
        fail(f"{where}: unknown key [{section}] {name}")
    cfg[section][name] = value.strip()


def read_config(path, overrides):
    """The effective configuration: defaults, the INI file (inih's syntax as dpmptop reads
    it: ; and # comments, indented lines continue [model] layers), then the overrides."""
    cfg = {s: dict(keys) for s, keys in DEFAULTS.items()}
    if path:
        section, last = None, None
        with open(path) as f:
            for n, raw in enumerate(f, 1):
                where = f"{path}:{n}"
                line = raw.rstrip("\n")
                text = line.strip()
                if not text or text[0] in "#;":
                    continue
                for i in range(1, len(text)):  # inih's inline comments: " ;"
                    if text[i] == ";" and text[i - 1] in " \t":
                        text = text[:i].rstrip()
                        break
                if line[0] in " \t" and last == ("model", "layers") and "=" not in text:
                    value = cfg["model"]["layers"].rstrip()
                    cfg["model"]["layers"] = value + ("" if value.endswith(",") else ",") + \
                        " " + text
                    continue
                if text.startswith("["):
                    section = text[1:text.index("]")].strip()
                    if section not in cfg:
                        fail(f"{where}: unknown section [{section}]")
                    last = None
                    continue
                if section is None:
                    fail(f"{where}: a key before any [section]")
                name = text.partition("=")[0].strip()
                set_key(cfg, f"{section}.{text}", where)
                last = (section, name)
    for where, assignment in overrides:
        set_key(cfg, assignment, where)
    return cfg


def flag(text):
    if text.lower() in ("true", "yes", "on", "1"):
        return True
    if text.lower() in ("false", "no", "off", "0"):
        return False
    fail(f"'{text}' is not true or false")


# --- data ---------------------------------------------------------------------------------

def read_maybe_gz(path):
    """A file's bytes, decompressed when it is gzip (as zlib's gzopen reads either)."""
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path, torch):
    raw = read_maybe_gz(path)
    if raw[:2] != b"\0\0" or raw[2] != 8:
        fail(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{raw[3]}I", raw[4:4 + 4 * raw[3]])
    body = raw[4 + 4 * raw[3]:]
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_idx_dir(d, torch):
    def path(base):
        p = os.path.join(d, base)
        return p if os.path.exists(p) else p + ".gz"

    out = []
    for prefix in ("train", "t10k"):
        x = read_idx(path(f"{prefix}-images-idx3-ubyte"), torch)
        y = read_idx(path(f"{prefix}-labels-idx1-ubyte"), torch)
        out += [x.reshape(len(x), 1, *x.shape[1:]).float() / 255, y.long()]
    return out


def load_cifar(d, torch):
    def records(names):
        raw = b"".join(open(os.path.join(d, n), "rb").read() for n in names)
        r = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 3073)
        return r[:, 1:].reshape(-1, 3, 32, 32).float() / 255, r[:, 0].long()

    return (*records([f"data_batch_{i}.bin" for i in range(1, 6)]),
            *records(["test_batch.bin"]))


def read_text(path):
    """The bytes of a text file, or of a directory's text files in name order (bytewise, as
    alphasort in the C locale), leaving out symbolic links, non-regular and binary files."""
    if not os.path.isdir(path):
        return read_maybe_gz(path)
    parts = []
    for name in sorted(os.listdir(os.fsencode(path))):
        p = os.path.join(os.fsencode(path), name)
        if not stat.S_ISREG(os.lstat(p).st_mode):
            continue
        b = read_maybe_gz(p)
        if b"\0" not in b:
            parts.append(b)
    if not parts:
        fail(f"{path}: no text files in this directory")
    return b"".join(parts)


def windows(b, t, torch):
    """Windows of t bytes and their next bytes, as text.c cuts them."""
    n = (len(b) - 1) // t if len(b) > t else 0
    ids = torch.frombuffer(bytearray(b[:n * t + 1]), dtype=torch.uint8).long()
    return ids[:n * t].view(n, t), ids[1:n * t + 1].view(n, t)


def load_data(cfg, torch):
    """(train x, train y, test x, test y, one sample's shape, classes, text?). Under objective
    mlm the targets are the inputs (the text's own bytes), as datasets/text.c's
    dp_text_own_targets makes them."""
    kind, path = cfg["data"]["kind"], cfg["data"]["path"]
    if kind in ("fashion-mnist", "mnist", "idx"):
        d = path or DEFAULT_PATHS.get(kind, "")
        if not os.path.isdir(d):
            fail(f"{d or '(empty data.path)'}: not a directory of IDX files")
        xs, ys, xt, yt = load_idx_dir(d, torch)
        classes = 10 if kind != "idx" else int(max(ys.max(), yt.max())) + 1
        text = False
    elif kind == "cifar10":
        xs, ys, xt, yt = load_cifar(path, torch)
        classes, text = 10, False
    elif kind == "text":
        if not path:
            fail("data.kind = text needs data.path")
        b = read_text(path)
        t = int(cfg["data"]["context"])
        held_out = len(b) // 10
        if len(b) - held_out < t + 1 or held_out < t + 1:
            fail(f"{path}: {len(b)} bytes of text are too few for data.context = {t}")
        xs, ys = windows(b[:len(b) - held_out], t, torch)
        xt, yt = windows(b[len(b) - held_out:], t, torch)
        classes, text = 256, True
    else:
        fail(f"data.kind = {kind} is not supported here")
    objective = cfg["model"]["objective"]
    if objective == "mlm":
        if not text:
            fail("[model] objective = mlm needs data.kind = text")
        ys, yt = xs.clone(), xt.clone()
    elif objective != "classify":
        fail(f"[model] objective = {objective} is not supported here (classify or mlm)")
    limit = int(cfg["data"]["limit"])
    if 0 < limit < len(xs):
        xs, ys = xs[:limit], ys[:limit]
    return xs, ys, xt, yt, tuple(xs.shape[1:]), classes, text


# --- training -----------------------------------------------------------------------------

def lr_at(o, step, total):
    """engine/optim.c's dp_optim_lr for 0-based step of total."""
    lr, warmup = float(o["lr"]), int(o["warmup"])
    if step < warmup:
        return lr * (step + 1) / warmup
    if o["lr_schedule"] == "constant" or total <= warmup:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def mlm_batch(x, seed, purpose, step, sample0, torch, torch_models):
    """A batch of byte windows masked as dpmptop masks them: (inputs, labels) on x's device."""
    xm, y = torch_models.mlm_mask(seed, purpose, step, sample0, x.cpu().numpy())
    return torch.from_numpy(xm).to(x.device), torch.from_numpy(y).to(x.device)


def evaluate(model, xt, yt, classes, text, torch, batch=256):
    """Mean loss and accuracy per target, over the targets counted (labels >= 0: under mlm the
    chosen positions, yt holding -1 elsewhere), and their count."""
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for at in range(0, len(xt), batch):
            out = model(xt[at:at + batch]).reshape(-1, classes)
            y = yt[at:at + batch].reshape(-1)
            loss += torch.nn.functional.cross_entropy(out, y, reduction="sum",
                                                      ignore_index=-1).item()
            correct += (out.argmax(dim=1) == y).sum().item()
    model.train()
    targets = int((yt >= 0).sum().item())
    return (loss / targets, correct / targets, targets) if targets else (0.0, 0.0, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", help="dpmptop's INI file")
    ap.add_argument("-s", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--steps", type=int, help="run.steps (as dpmptop's --steps)")
    ap.add_argument("--epochs", type=int, help="run.epochs, with run.steps = 0")
    ap.add_argument("--init", help="start from these weights (dpmptop's --save file)")
    ap.add_argument("--save", help="write the final weights here (safetensors)")
    ap.add_argument("--skip", type=int, default=0,
                    help="leave the first N steps out of samples_per_s (warm-up)")
    ap.add_argument("--no-eval", action="store_true", help="no evaluation at all (speed runs)")
    ap.add_argument("--metrics", metavar="FILE",
                    help="also write each step and evaluation here as a JSON line")
    ap.add_argument("--log-every", type=int, default=0, metavar="N",
                    help="print the training loss and lr every N steps")
    torch_threads.add_arguments(ap)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the model and the data sets "
                    "on the GPU (as dpmptop keeps them)")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions on GPUs")
    a = ap.parse_args()

    overrides = [(f"--set {s}", s) for s in a.set]
    if a.steps is not None:
        overrides.append(("--steps", f"run.steps={a.steps}"))
    if a.epochs is not None:
        overrides += [("--epochs", f"run.epochs={a.epochs}"), ("--epochs", "run.steps=0")]
    cfg = read_config(a.config, overrides)

    torch = torch_threads.import_torch(a)
    import torch_models

    run, data, o = cfg["run"], cfg["data"], cfg["optim"]
    seed = int(run["seed"])
    torch.manual_seed(seed)
    xs, ys, xt, yt, shape, classes, text = load_data(cfg, torch)
    mlm = cfg["model"]["objective"] == "mlm"
    if mlm:  # the test split's fixed masks: seed 0, step 0, each sample's index in the split
        xt, yt = mlm_batch(xt, 0, torch_models.NOISE_MLM_TEST, 0, 0, torch, torch_models)
    model = torch_models.build(cfg["model"]["layers"], shape, classes)
    if a.init:
        model.load_state_dict(torch_models.load_safetensors(a.init), strict=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
    model.to(a.device)
    xs, ys, xt, yt = (t.to(a.device) for t in (xs, ys, xt, yt))
    params = list(model.parameters())
    if o["kind"] == "sgd":
        opt = torch.optim.SGD(params, lr=float(o["lr"]), momentum=float(o["momentum"]),
                              nesterov=flag(o["nesterov"]),
                              weight_decay=float(o["weight_decay"]))
    elif o["kind"] == "adamw":
        opt = torch.optim.AdamW(params, lr=float(o["lr"]),
                                betas=(float(o["beta1"]), float(o["beta2"])),
                                eps=float(o["eps"]), weight_decay=float(o["weight_decay"]))
    else:
        fail(f"optim.kind = {o['kind']} is not sgd or adamw")
    clip = float(o["clip"])

    batch, n = int(data["batch"]), len(xs)
    per_epoch = (n + batch - 1) // batch
    total = int(run["steps"]) if int(run["steps"]) > 0 else int(run["epochs"]) * per_epoch
    eval_every = int(run["eval_every"])
    shuffle = flag(data["shuffle"])
    n_params = sum(p.numel() for p in params)
    print(f"torch {torch.__version__}: run \"{run['name']}\", {n} training samples of "
          f"{list(shape)}, {classes} classes, test {len(xt)}; {n_params} parameters; {total} "
          f"steps ({per_epoch} per epoch of batch {batch}); threads {torch.get_num_threads()}"
          f"{'; from ' + a.init if a.init else ''}", flush=True)

    metrics = open(a.metrics, "w") if a.metrics else None

    def report(step, epoch):
        loss, acc, positions = evaluate(model, xt, yt, classes, text, torch, 64 if text else 256)
        if mlm:  # dpmptop's headless line (app/headless.c)
            print(f"step {step}, epoch {epoch}: masked test loss {loss:.4f} "
                  f"({loss / math.log(2):.4f} bits per masked byte), masked accuracy {acc:.4f} "
                  f"({positions} masked bytes of {len(xt)} samples)", flush=True)
        else:
            bits = f" ({loss / math.log(2):.4f} bits per byte)" if text else ""
            print(f"step {step}, epoch {epoch}: test loss {loss:.4f}{bits}, accuracy {acc:.4f} "
                  f"({len(xt)} samples)", flush=True)
        if metrics:
            metrics.write(json.dumps(dict(type="eval", step=step, epoch=epoch, loss=loss,
                                          accuracy=acc, positions=positions)) + "\n")
            metrics.flush()
        return loss, acc, positions

    order, pos, epoch = None, 0, 0
    step_time = samples = 0.0
    loss_value, test, evaluated_last = float("nan"), None, False
    for step in range(1, total + 1):
        t0 = time.perf_counter()
        if pos == 0:
            if shuffle:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(
                    seed * 1000003 + epoch))
            else:
                order = None
        rows = min(batch, n - pos)
        if order is None:
            x, y = xs[pos:pos + rows], ys[pos:pos + rows]
        else:
            idx = order[pos:pos + rows]
            x, y = xs[idx], ys[idx]
        pos += rows
        epoch_end = pos == n
        this_epoch = epoch + 1
        if epoch_end:
            pos, epoch = 0, epoch + 1
        if mlm:  # the global batch's masks: run.seed, the step from 1, rows from place 0
            x, y = mlm_batch(x, seed, torch_models.NOISE_MLM, step, 0, torch, torch_models)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if mlm and not (y >= 0).any():  # nothing chosen: loss 0, as dpmptop's empty mean
            loss = out.sum() * 0.0
        else:
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, classes), y.reshape(-1),
                                                     ignore_index=-1)
        loss.backward()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            if run["on_nan"] == "stop":
                fail(f"step {step}: the loss is {loss_value}; stopping")
            print(f"step {step}: the loss is {loss_value}: update skipped")
        else:
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            for g in opt.param_groups:
                g["lr"] = lr_at(o, step - 1, total)  # the step's place, as dpmptop
            opt.step()
        dt = time.perf_counter() - t0
        if metrics:
            metrics.write(json.dumps(dict(type="step", step=step, loss=loss_value,
                                          lr=opt.param_groups[0]["lr"])) + "\n")
        if a.log_every and step % a.log_every == 0:
            lr = opt.param_groups[0]["lr"]
            print(f"step {step}/{total}: loss {loss_value:.6f}, lr {lr:.6g}, "
                  f"{rows / dt:.0f} samples/s", flush=True)
        if step > a.skip:
            step_time += dt
            samples += rows
        evaluated_last = not a.no_eval and (epoch_end or (eval_every and step % eval_every == 0))
        if evaluated_last:
            test = report(step, this_epoch)
    if total and not a.no_eval and not evaluated_last:
        test = report(total, this_epoch)
    if a.save:
        torch_models.save_safetensors(a.save, model.state_dict())

    fields = [f"steps={total}", f"batch={batch}",
              f"samples_per_s={samples / step_time if step_time else 0:.1f}",
              f"final_loss={loss_value:.6f}"]
    if test:
        fields += [f"test_loss={test[0]:.6f}", f"accuracy={test[1]:.6f}"]
        if mlm:
            fields += [f"bits_per_masked_byte={test[0] / math.log(2):.6f}",
                       f"masked_bytes={test[2]}"]
        elif text:
            fields.append(f"bits_per_byte={test[0] / math.log(2):.6f}")
    fields.append(torch_threads.describe(torch))
    print("torch " + " ".join(fields), flush=True)


if __name__ == "__main__":
    main()
