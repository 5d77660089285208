#!/bin/sh
# no-deadlock.sh -- every strategy on 1 to 8 CPU devices, pipelines with 1 to 16 micro-batches
# under both schedules, finishes: 4 steps that cross an epoch whose last batch (44 rows) leaves
# some micro-batches empty, and an evaluation through the same pipeline. Each run has 20 s.
. "${srcdir:-.}/tests/lib.sh"

cat >"$work/run.ini" <<'INI'
[run]
steps = 4
[data]
kind = synthetic
features = 12
classes = 10
samples = 300
test_samples = 50
batch = 128
[model]
layers = linear:16, relu, linear:16, relu, linear:16, relu, linear:16, relu, linear:16, relu, linear:16, relu, linear:16, relu, linear:10
INI

runs=0
# try LABEL DPMPTOP-OPTIONS...
try() {
    label=$1
    shift
    runs=$((runs + 1))
    timeout 20 "$DPMPTOP" -c "$work/run.ini" "$@" >"$work/out" 2>&1
    status=$?
    if [ "$status" -eq 124 ]; then
        fail "$label: still running after 20 s (deadlock?)"
    elif [ "$status" -ne 0 ]; then
        fail "$label: exit $status: $(tail -n 2 "$work/out")"
    elif ! grep -q '^done: 4 steps' "$work/out"; then
        fail "$label: no summary"
    fi
}

for n in 1 2 3 4 5 6 7 8; do
    try "single on cpu:$n" --devices "cpu:$n" --strategy single
    try "dp on cpu:$n" --devices "cpu:$n" --strategy dp
    for m in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
        for sched in gpipe 1f1b; do
            try "pp on cpu:$n, $m micro, $sched" --devices "cpu:$n" --strategy pp \
                --microbatches "$m" --schedule "$sched"
            if [ $((n % 2)) -eq 0 ]; then
                try "hybrid 2 stages on cpu:$n, $m micro, $sched" --devices "cpu:$n" \
                    --strategy hybrid --stages 2 --microbatches "$m" --schedule "$sched"
            fi
        done
    done
done
echo "$runs runs"
finish
