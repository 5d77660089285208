#!/bin/sh
# run-gemm-libs.sh -- OpenBLAS's SGEMM against oneDNN's (bench/gemm-libs) on the GEMM shapes of
# a training step of the example models, with one thread (a device among several) and with
# every core (a single device): whether the CPU backend's GEMMs should go through oneDNN.
# The shapes (row-major, as engine/layers/linear.c and attention.c issue them: forward
# x W^T, weight gradient dy^T x, input gradient dy W):
#   fashion-mlp (batch 64): 784 -> 256 -> 10;
#   fashion-cnn's head (batch 64): 3136 -> 128 -> 10;
#   tiny-gpt (batch 32 x context 128 = 4096 positions, width 128, 4 heads): the blocks'
#   qkv (128 -> 384), projection (128 -> 128), MLP (128 -> 512 -> 128) and the logits
#   (128 -> 256); attention's per-head products (128 x 128 x 32) are batched GEMMs, one of
#   them shown.
# Usage: bench/run-gemm-libs.sh   (binaries: $DPMPTOP_BUILD or the tree it sits in)
set -eu
. "$(dirname "$0")/lib.sh"
find_build
bin=$build/bench/gemm-libs
[ -x "$bin" ] || make -C "$build" bench/gemm-libs >/dev/null || {
    echo "run-gemm-libs.sh: bench/gemm-libs needs OpenBLAS, its reference: install libopenblas-dev" \
         "(./bootstrap --for-tests does), then run ./bootstrap again" >&2
    exit 1
}
fwd() { echo "$1-fwd:0:1:$2:$4:$3 $1-wgrad:1:0:$4:$3:$2 $1-dgrad:0:0:$2:$3:$4"; }
shapes="$(fwd mlp1 64 784 256) $(fwd mlp2 64 256 10) $(fwd cnn-head 64 3136 128)
$(fwd gpt-qkv 4096 128 384) $(fwd gpt-proj 4096 128 128) $(fwd gpt-mlp1 4096 128 512)
$(fwd gpt-mlp2 4096 512 128) $(fwd gpt-logits 4096 128 256) gpt-scores:0:1:128:128:32"
cores=$(nproc)
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $cores cores;" \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
for t in 1 "$cores"; do
    echo
    echo "== $t thread(s): GFLOP/s at best of 7 runs, ratio = OpenBLAS time / oneDNN time"
    # shellcheck disable=SC2086 # the shapes are a list
    "$bin" "$t" $shapes
    [ "$cores" -gt 1 ] || break
done
