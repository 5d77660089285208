#!/usr/bin/python3
"""PyTorch reference for bench/dpmptop-bench: the same MLP, SGD and batch, timed per step.

Each step is the typical training loop: zero_grad, forward, loss, backward, optimizer.step.
The data are random batches already in memory (Fashion-MNIST's shape by default), so the step
cost is all that is measured. After --warmup steps, --repeat rounds of --steps: the fastest
counts. Run with Debian's /usr/bin/python3 (torch 1.13, CPU). Prints one key=value line:
torch threads=... samples_per_s=...

Threads: Debian's torch runs its GEMMs in OpenBLAS, whose thread pool is separate from torch's
OpenMP threads. --threads N sets both (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS before torch loads,
and torch.set_num_threads); --threads 0 leaves both at their defaults. With both pools at N and
OpenMP's default busy-wait, the pools fight over the cores; --passive sets OMP_WAIT_POLICY=PASSIVE.
"""
import argparse
import os
import sys
import time


def parse_layers(spec, width):
    """dpmptop's [model] layers syntax -> a list of modules; returns (modules, out width)."""
    import torch.nn as nn
    mods = []
    for item in (s.strip() for s in spec.split(",")):
        name, _, arg = item.partition(":")
        if name == "linear":
            mods.append(nn.Linear(width, int(arg)))
            width = int(arg)
        elif name in ("relu", "tanh"):
            mods.append(nn.ReLU() if name == "relu" else nn.Tanh())
        elif name == "gelu":
            mods.append(nn.GELU(approximate="tanh"))
        else:
            sys.exit(f"torch_mlp.py: unknown layer '{item}'")
    return mods, width


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="linear:1024, relu, linear:1024, relu, linear:10")
    ap.add_argument("--in", dest="inputs", type=int, default=784)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of --steps; the fastest counts")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="0: torch's default")
    ap.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls on CUDA")
    a = ap.parse_args()

    # Both libraries read these when they load, so they are set before torch is imported.
    if a.threads > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(a.threads)
    if a.passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch
    import torch.nn as nn
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    mods, classes = parse_layers(a.layers, a.inputs)
    model = nn.Sequential(*mods).to(a.device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    loss_fn = nn.CrossEntropyLoss()
    pool = 8  # distinct batches, cycled: no loader cost, but not one batch cached either
    xs = torch.randn(pool, a.batch, a.inputs, device=a.device)
    ys = torch.randint(0, classes, (pool, a.batch), device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def step(i):
        opt.zero_grad()
        loss = loss_fn(model(xs[i % pool]), ys[i % pool])
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)
    sync()
    wall = float("inf")  # a shared machine only ever makes a round slower: keep the best
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for i in range(a.steps):
            loss = step(i)
        sync()
        wall = min(wall, (time.perf_counter() - t0) / a.steps)
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    print(f"torch threads={torch.get_num_threads()} blas_threads={blas} omp_wait={wait} "
          f"batch={a.batch} steps={a.steps} repeat={a.repeat} "
          f"samples_per_s={a.batch / wall:.1f} step_us={1e6 * wall:.2f} "
          f"final_loss={loss.item():.4f} torch={torch.__version__}")


if __name__ == "__main__":
    main()
