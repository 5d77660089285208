#!/usr/bin/python3
"""gan_quality.py -- the quality figures of a GAN's generator (README.md, "### GANs", "The
quality figures"), computed outside dpmptop, and the PyTorch twin that the figures of dpmptop's
GANs are compared with.

    gan_quality.py figures WEIGHTS_DIR CONFIG [--seed N] [--classifier FILE]
    gan_quality.py train CONFIG SEED OUTDIR [--threads N]
    gan_quality.py table RUNS_DIR TWINS_DIR [--models mlp,dcgan] [--seeds 1,2,3]

figures: G from CONFIG's [model] generator and latent (bench/torch_models.py), loaded from
WEIGHTS_DIR/generator.safetensors (dpmptop --save's names), in evaluation mode, draws the 10,000
samples of dpmptop's evaluation noise (purpose NOISE_EVAL, step 0, samples 0..9999, bit for bit
with engine/kernels.h's, keyed by the run's seed: --seed, else CONFIG's run.seed); the samples,
mapped from [-1, 1] to [0, 1], and Fashion-MNIST's test split go through the classifier
([gan] classifier_layers, weights from --classifier) in evaluation mode; the features are the
input of its last layer, the logits its output. The Frechet distance and the score are README's
numpy code, in float64. Prints "FD <x> score <y>" (and --json FILE writes them).

train: the twin, trained as PyTorch's DCGAN example (pytorch/examples dcgan/main.py) trains its
models: torch.manual_seed(SEED); G and D built from CONFIG (PyTorch's default initialisation,
and DCGAN's weights_init applied with the same global generator under [model] init = dcgan);
[run] epochs of Fashion-MNIST's 60,000 training images scaled to [-1, 1], shuffled each epoch
as DataLoader(shuffle=True) shuffles them (a RandomSampler on the global generator), batches of
[data] batch with the short last batch kept; one Adam per model (lr, beta1 from [optim]; beta2
0.999, eps 1e-8); the step of dcgan/main.py with BCEWithLogitsLoss on D's logit and the twin's
own noise, torch.randn. It saves OUTDIR/generator.safetensors and discriminator.safetensors
(dpmptop's names) and prints the figures of its G (evaluation noise keyed by SEED, as dpmptop's
run of that seed keys its own).

table: dpmptop's figures (the "samples: Frechet distance X, score Y" line that ends
RUNS_DIR/MODEL-sSEED.log: a run still going has none) against the twin's
(TWINS_DIR/MODEL-sSEED/figures.json), each run's and the means over the seeds each side has,
with dpmptop's mean over the twin's as ratios. A TWINS_DIR/dpmptop-MODEL-sSEED.json written by
`figures --json` (the figures recomputed here from dpmptop's saved G) is shown beside dpmptop's
own.

Layers: a conv or deconv whose fifth number is 0 (PyTorch's bias=False, the DCGAN example's
layers) is built without its bias; without_bias sees to it for a bench/torch_models.py that
builds every conv with one (its versions before BIAS). Which version built the twin matters
to its random stream: a bias built and then dropped has drawn its initial values first.
"""
import argparse
import configparser
import gzip
import json
import os
import struct
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_CLASSIFIER = "fashion-cnn.safetensors"
DATA = "/usr/share/datasets/fashion-mnist"
QUALITY_SAMPLES = 10000


def read_ini(path):
    """dpmptop's INI (examples/*.ini): {section: {key: value}}, '#' comments, an indented line
    continuing the value before it (long layer lists)."""
    cp = configparser.ConfigParser(interpolation=None, comment_prefixes=("#", ";"))
    cp.read(path)
    return {s: {k: " ".join(v.split()) for k, v in cp[s].items()} for s in cp.sections()}


def read_idx_images(prefix):
    """An IDX file of unsigned-byte images (plain or .gz) as a numpy uint8 [N, H, W]."""
    import numpy as np
    path = os.path.join(DATA, prefix)
    opener = open if os.path.exists(path) else gzip.open
    with opener(path if os.path.exists(path) else path + ".gz", "rb") as f:
        raw = f.read()
    if raw[:3] != b"\0\0\x08" or raw[3] != 3:
        sys.exit(f"gan_quality.py: {path} is not an IDX file of unsigned-byte images")
    n, h, w = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h, w)


def without_bias(spec, model):
    """Drops the bias of each top-level conv/deconv whose fifth number is 0 (bias=False), so the
    module's names and parameters are dpmptop's."""
    import torch_models
    for i, item in enumerate(torch_models.split_list(spec)):
        name, *args = item.split(":")
        if name in ("conv", "deconv") and len(args) > 4 and int(args[4]) == 0:
            model[i].register_parameter("bias", None)
    return model


def build_gan(cfg):
    import torch_models
    m = cfg["model"]
    latent = torch_models.latent_shape(m["latent"])
    g, d = torch_models.build_gan(m["generator"], m["discriminator"], latent, (1, 28, 28))
    return without_bias(m["generator"], g), without_bias(m["discriminator"], d), latent


def load_into(torch_models, model, path):
    """Loads dpmptop's safetensors into `model`: every tensor of the file must be the module's,
    and every parameter and running statistic of the module must be in the file (only
    num_batches_tracked, which evaluation does not use, may be missing)."""
    state = torch_models.load_safetensors(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"gan_quality.py: {path}: missing {missing}, unexpected {unexpected}")


# README's numpy code for the figures, in float64
def psd_sqrt(s):
    import numpy as np
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(a, b):
    import numpy as np
    a, b = a.astype(np.float64), b.astype(np.float64)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r = psd_sqrt(sa)
    w = np.linalg.eigvalsh(r @ sb @ r)
    return (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb)
            - 2 * np.sqrt(np.clip(w, 0, None)).sum())


def score(logits):
    import numpy as np
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    p = np.exp(logp)
    return np.exp((p * (logp - np.log(p.mean(0)))).sum(1).mean())


def classify(torch, clf, images, chunk=1000):
    """Features (the input of the classifier's last layer) and logits, float64 numpy."""
    import numpy as np
    feats, logits = [], []
    body, head = clf[:-1], clf[-1]
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            f = body(images[i:i + chunk])
            feats.append(f.double().numpy())
            logits.append(head(f).double().numpy())
    return np.concatenate(feats), np.concatenate(logits)


def figures(torch, cfg, g, seed, classifier):
    """(FD, score) of G's 10,000 evaluation samples against the test split."""
    import torch_models
    g.eval()
    z = torch_models.gan_noise(seed, torch_models.NOISE_EVAL, 0, 0, QUALITY_SAMPLES,
                               int(cfg["model"]["latent"].split(":")[0]))
    noise = torch.from_numpy(z).reshape((QUALITY_SAMPLES,) +
                                        torch_models.latent_shape(cfg["model"]["latent"]))
    with torch.no_grad():
        fake = torch.cat([g(noise[i:i + 1000]) for i in range(0, QUALITY_SAMPLES, 1000)])
    fake = (fake + 1) / 2  # [data] range = -1:1 back to the classifier's [0, 1]
    clf = torch_models.build(cfg["gan"]["classifier_layers"], (1, 28, 28), 10)
    load_into(torch_models, clf, classifier)
    clf.eval()
    real = torch.from_numpy(read_idx_images("t10k-images-idx3-ubyte").copy()).float()
    real = real.unsqueeze(1) / 255
    real_f, _ = classify(torch, clf, real)
    fake_f, fake_l = classify(torch, clf, fake)
    return float(frechet(real_f, fake_f)), float(score(fake_l))


def report(fd, sc, json_path, extra):
    print(f"FD {fd:.4f} score {sc:.4f}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(extra, fd=fd, score=sc), f)
            f.write("\n")


def import_torch(threads):
    if threads > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    if threads > 0:
        torch.set_num_threads(threads)
    return torch


def cmd_figures(a):
    torch = import_torch(a.threads)
    import torch_models
    cfg = read_ini(a.config)
    seed = a.seed if a.seed is not None else int(cfg.get("run", {}).get("seed", 1))
    g, _, _ = build_gan(cfg)
    load_into(torch_models, g, os.path.join(a.weights, "generator.safetensors"))
    t0 = time.time()
    fd, sc = figures(torch, cfg, g, seed, a.classifier)
    report(fd, sc, a.json, dict(weights=a.weights, seed=seed, figures_s=time.time() - t0))


def cmd_train(a):
    torch = import_torch(a.threads)
    import torch_models
    cfg = read_ini(a.config)
    seed = a.seed
    torch.manual_seed(seed)
    g, d, latent = build_gan(cfg)
    if cfg["model"].get("init", "") == "dcgan":  # dcgan/main.py: netG.apply, then netD.apply
        torch_models.dcgan_weights_init(g, None)
        torch_models.dcgan_weights_init(d, None)
    epochs = a.epochs if a.epochs else int(cfg["run"].get("epochs", 1))
    batch = int(cfg["data"].get("batch", 64))
    o = cfg["optim"]
    if o.get("kind", "adamw") != "adamw" or float(o.get("weight_decay", 0)) != 0:
        sys.exit("gan_quality.py: the twin runs Adam (kind = adamw, weight_decay = 0)")
    betas = (float(o.get("beta1", 0.9)), float(o.get("beta2", 0.999)))
    opt_d = torch.optim.Adam(d.parameters(), lr=float(o["lr"]), betas=betas,
                             eps=float(o.get("eps", 1e-8)))
    opt_g = torch.optim.Adam(g.parameters(), lr=float(o["lr"]), betas=betas,
                             eps=float(o.get("eps", 1e-8)))
    crit = torch.nn.BCEWithLogitsLoss()
    x = torch.from_numpy(read_idx_images("train-images-idx3-ubyte").copy()).float()
    x = (x / 255).unsqueeze(1) * 2 - 1
    n = len(x)
    if a.limit:
        n = a.limit
        x = x[:n]
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(n)), batch,
                                            drop_last=False)
    g.train()
    d.train()
    step, t0, log = 0, time.time(), []
    for epoch in range(epochs):
        for idx in sampler:  # the permutation drawn at the epoch's first batch, as DataLoader's
            real = x[idx]
            rows = len(idx)
            d.zero_grad()
            out = d(real).view(-1)
            err_real = crit(out, torch.ones_like(out))
            err_real.backward()
            noise = torch.randn((rows,) + tuple(latent))
            fake = g(noise)
            out = d(fake.detach()).view(-1)
            err_fake = crit(out, torch.zeros_like(out))
            err_fake.backward()
            opt_d.step()
            g.zero_grad()
            out = d(fake).view(-1)
            err_g = crit(out, torch.ones_like(out))
            err_g.backward()
            opt_g.step()
            step += 1
            if step % 200 == 0 or step == 1:
                line = (f"step {step} epoch {epoch + 1}/{epochs} loss D "
                        f"{err_real.item() + err_fake.item():.4f} G {err_g.item():.4f} "
                        f"{time.time() - t0:.0f} s")
                print(line, flush=True)
                log.append(line)
    train_s = time.time() - t0
    print(f"trained {step} steps in {train_s:.1f} s", flush=True)
    os.makedirs(a.outdir, exist_ok=True)
    torch_models.save_safetensors(os.path.join(a.outdir, "generator.safetensors"), g.state_dict())
    torch_models.save_safetensors(os.path.join(a.outdir, "discriminator.safetensors"),
                                  d.state_dict())
    t1 = time.time()
    fd, sc = figures(torch, cfg, g, seed, a.classifier)
    report(fd, sc, a.json or os.path.join(a.outdir, "figures.json"),
           dict(config=a.config, seed=seed, steps=step, train_s=train_s,
                figures_s=time.time() - t1, threads=torch.get_num_threads()))


def last_figures(log):
    """The figures that end a finished run's log, and its training time ("done: N steps in S
    s"): (FD, score, seconds), or None."""
    import re
    found, seconds = None, None
    if os.path.exists(log):
        for line in open(log, errors="replace"):
            m = re.match(r"samples: Frechet distance ([0-9.naif]+), score ([0-9.naif]+)", line)
            if m:
                found = (float(m.group(1)), float(m.group(2)))
            m = re.match(r"done: [0-9]+ steps in ([0-9.]+) s", line)
            if m:
                seconds = float(m.group(1))
    return found + (seconds,) if found else None


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cmd_table(a):
    def cell(v, fmt="{:.3f}"):
        return fmt.format(v) if v is not None else "-"

    rows = [["model", "seed", "dpmptop FD", "score", "recomputed FD", "score", "twin FD",
             "score", "dpmptop s", "twin s"]]
    summary = []
    for model in a.models.split(","):
        ours, twins = [], []
        for seed in (int(s) for s in a.seeds.split(",")):
            dp = last_figures(os.path.join(a.runs, f"{model}-s{seed}.log")) or (None,) * 3
            re_ = read_json(os.path.join(a.twins, f"dpmptop-{model}-s{seed}.json")) or {}
            tw = read_json(os.path.join(a.twins, f"{model}-s{seed}", "figures.json")) or {}
            rows.append([model, str(seed), cell(dp[0]), cell(dp[1]), cell(re_.get("fd")),
                         cell(re_.get("score")), cell(tw.get("fd")), cell(tw.get("score")),
                         cell(dp[2], "{:.0f}"), cell(tw.get("train_s"), "{:.0f}")])
            if dp[0] is not None:
                ours.append(dp[:2])
            if tw:
                twins.append((tw["fd"], tw["score"]))
        if ours and twins:
            mo = [sum(v[i] for v in ours) / len(ours) for i in (0, 1)]
            mt = [sum(v[i] for v in twins) / len(twins) for i in (0, 1)]
            summary.append(f"{model}: dpmptop mean of {len(ours)}: FD {mo[0]:.3f} score "
                           f"{mo[1]:.3f}; twin mean of {len(twins)}: FD {mt[0]:.3f} score "
                           f"{mt[1]:.3f}; dpmptop / twin: FD {mo[0] / mt[0]:.3f} "
                           f"score {mo[1] / mt[1]:.3f}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    for line in summary:
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("figures", help="FD and score of a saved generator")
    f.add_argument("weights")
    f.add_argument("config")
    f.add_argument("--seed", type=int, help="the run's seed (keys the evaluation noise)")
    t = sub.add_parser("train", help="train the PyTorch twin, then its figures")
    t.add_argument("config")
    t.add_argument("seed", type=int)
    t.add_argument("outdir")
    t.add_argument("--epochs", type=int, default=0, help="default: the config's run.epochs")
    t.add_argument("--limit", type=int, default=0, help="train on the first N images (tests)")
    for p in (f, t):
        p.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
        p.add_argument("--json", help="also write the figures to this file")
        p.add_argument("--threads", type=int, default=1, help="0: torch's default")
    tb = sub.add_parser("table", help="dpmptop's figures against the twin's, and the means")
    tb.add_argument("runs")
    tb.add_argument("twins")
    tb.add_argument("--models", default="mlp,dcgan")
    tb.add_argument("--seeds", default="1,2,3")
    a = ap.parse_args()
    {"figures": cmd_figures, "train": cmd_train, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
