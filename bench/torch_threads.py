"""torch_threads.py -- the CPU thread pools of the PyTorch references, set before torch loads.

Debian's torch runs its GEMMs in OpenBLAS, whose thread pool is separate from torch's OpenMP
threads. --threads N sets both (OMP_NUM_THREADS and OPENBLAS_NUM_THREADS before torch loads,
and torch.set_num_threads); --threads 0 leaves both at their defaults. With both pools at N and
OpenMP's default busy-wait, the pools fight over the cores; --passive sets
OMP_WAIT_POLICY=PASSIVE. This module does not import torch itself.
"""
import os


def add_arguments(ap):
    """--threads and --passive on an argparse parser."""
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="0: torch's default")
    ap.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE")


def import_torch(a):
    """Sets the pools from the parsed --threads and --passive, then imports and returns torch."""
    if a.threads > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(a.threads)
    if a.passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    return torch


def describe(torch):
    """threads=... blas_threads=... omp_wait=..., for the result line."""
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    return f"threads={torch.get_num_threads()} blas_threads={blas} omp_wait={wait}"
