#!/bin/sh
# run-gan.sh -- dpmptop's GAN training against its PyTorch twin on the CPU: training samples/s
# (real samples per second: a step's batch over the step's time, the three passes and two
# updates of engine/gan.h) of dpmptop on one device (--devices cpu:1: every core in its
# GEMMs) and on two data-parallel ones (cpu:2), and of the twin (tests/torch_gan.py speed: the
# same G and D from bench/torch_models.py, trained as PyTorch's DCGAN example trains them) at
# each of PyTorch's thread settings (every core with OpenMP's busy-wait, every core with
# OMP_WAIT_POLICY=PASSIVE, one thread), for two models on Fashion-MNIST:
#   fashion-gan    examples/fashion-gan.ini: MLPs (latent 64)
#   fashion-dcgan  examples/fashion-dcgan.ini
#                  (latent 100:1:1; transposed convolutions, batch normalisation)
# Each program runs --steps steps after --warmup; the programs run one after the other in
# --rounds rounds, the order reversed every other round, and each keeps its best round (a
# shared machine only ever makes a round slower). The ratios divide dpmptop's samples/s by the
# best PyTorch setting's. The twin's timing leaves out the drawing of its noise (numpy, to
# match dpmptop's bit for bit; PyTorch's own torch.randn would cost next to nothing); dpmptop's
# includes its noise.
#
# Usage: bench/run-gan.sh [--models "fashion-gan fashion-dcgan"] [--steps 60] [--warmup 5]
#            [--rounds 2]
# Needs Debian's dataset-fashion-mnist. Binaries: $DPMPTOP_BUILD, else the current directory
# when it holds dpmptop, else the source tree. PyTorch: $TORCH_PYTHON, default /usr/bin/python3.
set -eu
. "$(dirname "$0")/lib.sh"

models="fashion-gan fashion-dcgan" steps=60 warm=5 rounds=2
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=$2; shift ;;
    --steps) steps=$2; shift ;;
    --warmup) warm=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-gan.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

find_build
bench_setup run-gan.sh
twin=$src/tests/torch_gan.py
[ -d /usr/share/datasets/fashion-mnist ] ||
    { echo "run-gan.sh: no /usr/share/datasets/fashion-mnist" \
           "(apt-get install dataset-fashion-mnist)" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
# metrics_rate FILE: training samples/s over the step records after the warm-up (the batches
# are full, so the harmonic mean of the per-step rates).
metrics_rate() {
    awk -v w="$warm" '
        function num(k) {
            if (!match($0, "\"" k "\":[-0-9.eE+]+")) return 0
            return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0
        }
        /"type":"step"/ && num("step") > w && num("samples_per_s") > 0 {
            n++; inv += 1 / num("samples_per_s")
        }
        END { if (n) printf "%.1f", n / inv; else print 0 }' "$1"
}


cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "== $cpu, $cores cores; load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "$("$python" -c 'import torch; print("torch", torch.__version__)')"
echo "   models: $models; $steps steps after $warm, $rounds rounds, data in file order"
started=$(date +%s)

for m in $models; do
    ini=$src/examples/$m.ini
    [ -f "$ini" ] || { echo "run-gan.sh: no $ini" >&2; exit 2; }
    set -- -c "$ini" --headless --steps $((warm + steps)) --set data.shuffle=false \
        --set run.eval_every=0 --set gan.samples="$tmp/samples"
    "$dp" "$@" --print-config >"$tmp/$m.config" 2>"$tmp/err" ||
        { echo "run-gan.sh: $m: $(cat "$tmp/err")" >&2; exit 2; }
    batch=$(awk '/^\[/ { s = $0 } s == "[data]" && $1 == "batch" { print $3; exit }' \
                "$tmp/$m.config")
    echo
    echo "== $m: $steps steps of batch $batch after $warm ($ini)"
    programs="dp cpu:1|torch $cores|dp cpu:2|torch $cores --passive"
    [ "$cores" -gt 1 ] && programs="$programs|torch 1"
    r=1
    while [ "$r" -le "$rounds" ]; do
        list=$(printf '%s\n' "$programs" | tr '|' '\n')
        [ $((r % 2)) -eq 0 ] && list=$(printf '%s\n' "$list" | sed -n '1!G;h;$p')
        printf '%s\n' "$list" | while read -r prog arg; do
            key=$(printf '%s %s' "$prog" "$arg" | tr -c 'a-z0-9\n' '_')
            if [ "$prog" = dp ]; then
                rm -rf "$tmp/samples" "$tmp/speed.jsonl"
                "$dp" "$@" --devices "$arg" --metrics "$tmp/speed.jsonl" >"$tmp/dp.out" 2>&1 ||
                    { echo "dpmptop failed:"; tail -5 "$tmp/dp.out"; }
                rate=$(metrics_rate "$tmp/speed.jsonl" 2>/dev/null || echo 0)
                label="dpmptop $arg"
            else
                # shellcheck disable=SC2086 # $arg: a list of options
                line=$("$python" "$twin" speed "$tmp/$m.config" $((warm + steps)) "$warm" \
                       --threads $arg </dev/null 2>"$tmp/torch.err" | tail -n 1)
                [ -n "$line" ] || { echo "torch_gan.py failed:"; tail -5 "$tmp/torch.err"; }
                rate=$(kv samples_per_s "$line")
                label="PyTorch omp $(kv threads "$line"), blas $(kv blas_threads "$line")"
                [ "$(kv omp_wait "$line")" = passive ] && label="$label, passive"
            fi
            echo "round $r: $label: ${rate:-0} samples/s"
            best=$(cat "$tmp/$m.$key" 2>/dev/null || echo 0)
            if awk -v a="${rate:-0}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                printf '%s\n' "$rate" >"$tmp/$m.$key"
                printf '%s\n' "$label" >"$tmp/$m.$key.label"
            fi
        done
        r=$((r + 1))
    done
    dp1=$(cat "$tmp/$m.dp_cpu_1" 2>/dev/null || echo 0)
    dp2=$(cat "$tmp/$m.dp_cpu_2" 2>/dev/null || echo 0)
    tbest=0 tlabel=-
    for f in "$tmp/$m".torch_*; do
        case $f in *.label) continue ;; esac
        [ -f "$f" ] || continue
        printf '%s|%s|%.1f\n' "$m" "$(cat "$f.label")" "$(cat "$f")" >>"$tmp/torch.txt"
        if awk -v a="$(cat "$f")" -v b="$tbest" 'BEGIN { exit !(a > b) }'; then
            tbest=$(cat "$f") tlabel=$(sed 's/^PyTorch //' "$f.label")
        fi
    done
    printf '%s|%s|%.1f|%.1f|%.1f (%s)|%s|%s\n' "$m" "$batch" "$dp1" "$dp2" "$tbest" "$tlabel" \
        "$(ratio "$dp1" "$tbest")" "$(ratio "$dp2" "$tbest")" >>"$tmp/speed.txt"
done

echo
echo "== summary ($(($(date +%s) - started)) s; load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
{
    printf '%s%s\n' "model|batch|dpmptop cpu:1/s|dpmptop cpu:2/s|PyTorch best/s (threads)|" \
        "cpu:1 ratio|cpu:2 ratio"
    cat "$tmp/speed.txt"
} | table
echo
{ echo "model|PyTorch setting|samples/s"; cat "$tmp/torch.txt"; } | table
echo
echo "ratio: dpmptop's training samples/s over the best PyTorch setting's (best of $rounds" \
     "rounds each)."
