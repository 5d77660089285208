#!/bin/sh
# run-bn.sh -- what batch normalisation costs, and what synchronising its statistics across
# data-parallel replicas adds: examples/fashion-vgg-bn.ini (by default) against the same layer
# list without its bn layers, each on one device (single, cpu:1) and on two data-parallel
# replicas (dp, cpu:2, whose bn layers all-reduce two sums per layer in forward and one in
# backward). Each run takes --steps steps after --warmup, data in file order, no evaluation;
# the step time is the mean wall time per step of the step records after the warm-up. The
# four runs go one after the other in --rounds rounds, the order reversed every other round;
# each keeps its best round. Ratios are with bn over without, within a run of this script.
#
# Usage: bench/run-bn.sh [--ini FILE] [--steps 40] [--warmup 5] [--rounds 2]
# Needs the ini's data (Fashion-MNIST: Debian's dataset-fashion-mnist).
set -eu
. "$(dirname "$0")/lib.sh"

ini= steps=40 warm=5 rounds=2
while [ $# -gt 0 ]; do
    case $1 in
    --ini) ini=$2; shift ;;
    --steps) steps=$2; shift ;;
    --warmup) warm=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-bn.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
find_build
dp=$build/dpmptop
ini=${ini:-$src/examples/fashion-vgg-bn.ini}
[ -x "$dp" ] || { echo "run-bn.sh: no $dp; build it, or set DPMPTOP_BUILD" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

layers=$(sed -n 's/^layers *= *//p' "$ini")
plain=$(printf '%s\n' "$layers" | sed 's/, bn//g')
[ "$plain" != "$layers" ] || { echo "run-bn.sh: $ini has no bn layer" >&2; exit 2; }

batch=$("$dp" -c "$ini" --print-config | awk '/^\[/ { d = $0 == "[data]" } d && $1 == "batch" { print $3 }')
# step_ms FILE: mean wall ms per step over the step records after the warm-up (full batches:
# the steps stay within the first epoch), from each step's samples/s.
step_ms() {
    awk -v w="$warm" -v b="$batch" '
        function num(k) {
            if (!match($0, "\"" k "\":[-0-9.eE+]+")) return 0
            return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0
        }
        /"type":"step"/ && num("step") > w && num("samples_per_s") > 0 {
            n++; s += b / num("samples_per_s")
        }
        END { if (n) printf "%.2f", 1e3 * s / n; else print 0 }' "$1"
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   $ini: $steps steps after $warm, $rounds rounds"
runs="bn single cpu:1|plain single cpu:1|bn dp cpu:2|plain dp cpu:2"
r=1
while [ "$r" -le "$rounds" ]; do
    list=$(printf '%s\n' "$runs" | tr '|' '\n')
    [ $((r % 2)) -eq 0 ] && list=$(printf '%s\n' "$list" | sed -n '1!G;h;$p')
    printf '%s\n' "$list" | while read -r model strategy devices; do
        [ "$model" = bn ] && spec=$layers || spec=$plain
        rm -f "$tmp/m.jsonl"
        "$dp" -c "$ini" --headless --devices "$devices" --strategy "$strategy" \
            --set "model.layers=$spec" --steps $((warm + steps)) --set data.shuffle=false \
            --set run.eval_every=0 --metrics "$tmp/m.jsonl" >"$tmp/out" 2>&1 ||
            { echo "dpmptop failed:"; tail -5 "$tmp/out"; exit 1; }
        ms=$(step_ms "$tmp/m.jsonl")
        key=$model-$strategy
        echo "round $r: $model, $strategy on $devices: $ms ms per step"
        best=$(cat "$tmp/$key" 2>/dev/null || echo 0)
        if [ "$best" = 0 ] || awk -v a="$ms" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            echo "$ms" >"$tmp/$key"
        fi
    done
    r=$((r + 1))
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
echo
{
    echo "strategy|with bn ms/step|without ms/step|ratio"
    for s in single dp; do
        a=$(cat "$tmp/bn-$s") b=$(cat "$tmp/plain-$s")
        echo "$s|$a|$b|$(ratio "$a" "$b")"
    done
} | table
echo
echo "ratio: step time with the bn layers over without (best of $rounds rounds each); dp's"
echo "ratio over single's is what synchronising the statistics adds beyond computing them."
