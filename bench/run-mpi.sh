#!/bin/sh
# run-mpi.sh -- what the reduction across processes costs on one machine: the MLP
# 784-1024-1024-10 (1.9 M parameters) on Fashion-MNIST at batch 256, momentum SGD, 300 steps,
# as one process with two CPU devices (data parallel inside it) and as two processes of one CPU
# device each under mpirun (data parallel across them), the same cores; samples/s of each from
# the summary, in --rounds rounds with the order reversed every other round, and the ratio.
# Needs mpirun and a build with MPI; Fashion-MNIST from Debian's dataset-fashion-mnist.
set -eu
. "$(dirname "$0")/lib.sh"
find_build
rounds=${1:-4}
root=
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
command -v mpirun >/dev/null || { echo "run-mpi.sh: no mpirun (apt-get install openmpi-bin)"; exit 1; }
"$build/dpmptop" --version | grep -q "with MPI" ||
    { echo "run-mpi.sh: $build/dpmptop was built without MPI"; exit 1; }
set -- --headless --set data.kind=fashion-mnist --set data.batch=256 \
    --set "model.layers=linear:1024, relu, linear:1024, relu, linear:10" \
    --set optim.momentum=0.9 --steps 300 --set run.eval_every=0
rate() { sed -n 's/^\(done\|stopped\): .* s, \([0-9]*\) samples\/s.*/\2/p'; }
one() { "$build/dpmptop" "$@" --devices cpu:2 --strategy dp 2>&1 | rate; }
two() { mpirun $root --oversubscribe -np 2 "$build/dpmptop" "$@" --devices cpu:1 --strategy single 2>&1 | rate; }
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(mpirun --version | head -n 1)"
i=1
while [ "$i" -le "$rounds" ]; do
    if [ $((i % 2)) -eq 1 ]; then a=$(one "$@"); b=$(two "$@"); else b=$(two "$@"); a=$(one "$@"); fi
    echo "round $i: 1 process x cpu:2 $a samples/s, 2 processes x cpu:1 $b samples/s, ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
    i=$((i + 1))
done
