#!/usr/bin/python3
"""PyTorch reference for bench/dpmptop-bench: the same MLP, SGD and batch, timed per step.

Each step is the typical training loop: zero_grad, forward, loss, backward, optimizer.step.
The data are random batches already in memory (Fashion-MNIST's shape by default), so the step
cost is all that is measured. After --warmup steps, --repeat rounds of --steps: the fastest
counts. Run with Debian's /usr/bin/python3 (torch 1.13, CPU). Prints one key=value line:
torch threads=... samples_per_s=...

Threads: --threads and --passive, as bench/torch_threads.py says.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ in the source tree
import torch_threads  # noqa: E402 (found beside this file)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="linear:1024, relu, linear:1024, relu, linear:10")
    ap.add_argument("--in", dest="inputs", type=int, default=784)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of --steps; the fastest counts")
    torch_threads.add_arguments(ap)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls on CUDA")
    a = ap.parse_args()

    torch = torch_threads.import_torch(a)
    import torch.nn as nn
    import torch_models
    torch.manual_seed(0)

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    classes = int(a.layers.rsplit("linear:", 1)[1])  # the last layer's width
    model = torch_models.build(a.layers, (a.inputs,), classes).to(a.device)
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
    print(f"torch {torch_threads.describe(torch)} "
          f"batch={a.batch} steps={a.steps} repeat={a.repeat} "
          f"samples_per_s={a.batch / wall:.1f} step_us={1e6 * wall:.2f} "
          f"final_loss={loss.item():.4f} torch={torch.__version__}")


if __name__ == "__main__":
    main()
