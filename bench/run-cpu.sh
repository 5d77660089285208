#!/bin/sh
# run-cpu.sh -- dpmptop against PyTorch on this machine's CPUs, in one go (a minute on 2 cores):
#   (1) the MLP 784-1024-1024-10, batch 256, SGD momentum 0.9 (goal: 1.1x the best PyTorch);
#   (2) the seed network 10-100-10, batch 64, plain SGD (goal: 10x);
# each through bench/dpmptop-bench (one device, every core: SGEMM efficiency and the step's
# split) and bench/torch_mlp.py (1 thread; every core, with OpenMP's default busy-wait and with
# OMP_WAIT_POLICY=PASSIVE; torch's own default), then the real program once on the MLP, to show
# it runs at the bench's speed. Ends with tables.
#
# Binaries: $DPMPTOP_BUILD, else the current directory when it holds them (make bench from a
# build directory), else the source tree this script sits in. PyTorch: $TORCH_PYTHON, default
# Debian's /usr/bin/python3 (the python3 first on PATH may be one without torch).
set -eu
. "$(dirname "$0")/lib.sh"

find_build bench/dpmptop-bench
python=${TORCH_PYTHON:-/usr/bin/python3}
cores=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Bring the two programs up to date when there is a build tree; stale ones beat none.
if [ -f "$build/Makefile" ]; then
    make -s -C "$build" dpmptop bench/dpmptop-bench >"$tmp/make.log" 2>&1 ||
        { echo "run-cpu.sh: make failed (using what is built):"; tail -5 "$tmp/make.log"; }
fi
for f in "$build/dpmptop" "$build/bench/dpmptop-bench"; do
    [ -x "$f" ] || { echo "run-cpu.sh: no $f; run ./bootstrap && ./configure && make, or set" \
                          "DPMPTOP_BUILD to the build directory" >&2; exit 1; }
done
if "$python" -c 'import torch' 2>/dev/null; then
    have_torch=yes
else
    have_torch=no
    echo "run-cpu.sh: $python has no torch (apt-get install python3-torch): dpmptop's numbers only"
fi

# kv KEY LINE: the value of KEY=... in LINE.
kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
pct() { awk -v f="$1" 'BEGIN { printf "%.0f%%", 100 * f }'; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
tv=$("$python" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo "no torch")
echo "== $cpu, $cores cores; load $(cut -d' ' -f1-3 /proc/loadavg); $tv"
started=$(date +%s)

# compare NAME LAYERS IN BATCH MOMENTUM BENCH_STEPS TORCH_STEPS GOAL: runs both, appends the
# results to the summary's files in $tmp.
compare() {
    name=$1 layers=$2 in=$3 batch=$4 mom=$5 bsteps=$6 tsteps=$7 goal=$8
    echo
    echo "== $name: layers \"$layers\", in $in, batch $batch, SGD lr 0.01 momentum $mom"
    "$build/bench/dpmptop-bench" --layers "$layers" --in "$in" --batch "$batch" --lr 0.01 \
        --momentum "$mom" --steps "$bsteps" --repeat 3 --threads "$cores" | tee "$tmp/bench.out"
    train=$(grep '^train ' "$tmp/bench.out")
    sgemm=$(grep '^sgemm ' "$tmp/bench.out")
    dp=$(kv samples_per_s "$train")
    best=0 best_cfg=-
    if [ "$have_torch" = yes ]; then
        for cfg in "1" "$cores" "$cores --passive" "0"; do
            [ "$cfg" = "1" ] || [ "$cores" -gt 1 ] || continue
            # shellcheck disable=SC2086 # $cfg is a list of options, split on purpose
            line=$("$python" "$src/bench/torch_mlp.py" --layers "$layers" --in "$in" \
                   --batch "$batch" --lr 0.01 --momentum "$mom" --steps "$tsteps" --repeat 3 \
                   --warmup 5 --threads $cfg)
            echo "$line"
            sps=$(kv samples_per_s "$line")
            label="omp $(kv threads "$line"), blas $(kv blas_threads "$line")"
            [ "$(kv omp_wait "$line")" = passive ] && label="$label, passive"
            [ "$cfg" = 0 ] && label="torch default: $label"
            printf '%s|%s|%.0f\n' "$name" "$label" "$sps" >>"$tmp/torch.txt"
            if awk -v a="$sps" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                best=$sps best_cfg=$label
            fi
        done
    fi
    r=$(ratio "$dp" "$best")
    met=$(awk -v r="$r" -v g="$goal" \
              'BEGIN { print (r == "-" ? "-" : (r + 0 >= g ? "yes" : "no")) }')
    best_text=$(awk -v b="$best" -v c="$best_cfg" \
                    'BEGIN { if (b > 0) printf "%.0f (%s)", b, c; else print "-" }')
    printf '%s|%s|%.0f|%s|%s|%sx|%s|%.1f|%s|%s\n' "$name" "$batch" "$dp" "$best_text" \
        "$r" "$goal" "$met" "$(kv gflops "$sgemm")" \
        "$(pct "$(kv effective_frac "$train")")" "$(pct "$(kv gemm_only_frac "$train")")" \
        >>"$tmp/rows.txt"
    printf '%s|%s|%s|%s|%s\n' "$name" "$(kv step_us "$train")" "$(kv gemm_us "$train")" \
        "$(kv kernel_us "$train")" "$(kv overhead_us "$train")" >>"$tmp/split.txt"
    grep '^kernel ' "$tmp/bench.out" | sed 's/^kernel op=//; s/ us_per_step=/ /' |
        awk -v n="$name" '{ s = s sprintf(" %s %.1f,", $1, $2) } END { print n "|" s }' \
        >>"$tmp/kernels.txt"
}

mlp="linear:1024, relu, linear:1024, relu, linear:10"
compare "MLP 784-1024-1024-10" "$mlp" 784 256 0.9 60 40 1.1
mlp_bench=$(kv samples_per_s "$(grep '^train ' "$tmp/bench.out")")
compare "seed 10-100-10" "linear:100, linear:10" 10 64 0 5000 1000 10

echo
echo "== the program itself: ./dpmptop on the MLP, synthetic data, 200 steps"
"$build/dpmptop" --set data.kind=synthetic --set data.features=784 --set data.samples=20000 \
    --set "model.layers=$mlp" --set data.batch=256 --set optim.momentum=0.9 --steps 200 \
    --metrics "$tmp/e2e.jsonl" | tail -n 3
prog=$(sed -n 's/.*"type":"summary".*"samples_per_s":\([0-9.eE+-]*\).*/\1/p' "$tmp/e2e.jsonl")
echo "program $prog samples/s over all 200 steps, cold start included;" \
     "dpmptop-bench $mlp_bench (best round): $(ratio "$prog" "$mlp_bench")x"

echo
echo "== summary ($(($(date +%s) - started)) s; load $(cut -d' ' -f1-3 /proc/loadavg))"
{
    printf '%s%s\n' "network|batch|dpmptop/s|PyTorch best/s (threads)|ratio|goal|met|" \
        "SGEMM GF/s|step GEMM eff|in-GEMM eff"
    cat "$tmp/rows.txt"
} | table
echo
{
    echo "network|step us|GEMM us|kernels us|overhead us"
    cat "$tmp/split.txt"
} | table
if [ -f "$tmp/torch.txt" ]; then
    echo
    { echo "network|PyTorch setting|samples/s"; cat "$tmp/torch.txt"; } | table
fi
echo
echo "non-GEMM work alone, us per step:"
sed 's/|/:/; s/,$//' "$tmp/kernels.txt"
echo
echo "ratio: dpmptop samples/s over the best PyTorch setting. step GEMM eff: the step's GEMM"
echo "flops over its wall time, against plain cblas_sgemm on the same GEMMs; in-GEMM eff: the"
echo "same flops over the time inside the engine's GEMMs."
