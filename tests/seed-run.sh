#!/bin/sh
# seed-run.sh -- a headless run of examples/seed.ini: its loss falls, it beats chance on the
# test split, its metrics file holds every record type, and the same seed gives the same run.
. "${srcdir:-.}/tests/lib.sh"

run() { # $1: name of the outputs
    "$DPMPTOP" --headless -c "$srcdir/examples/seed.ini" --metrics "$work/$1.jsonl" \
        --save "$work/$1.safetensors" >"$work/$1.out" 2>"$work/$1.err"
}
run a || { fail "seed run failed: $(cat "$work/a.err")"; finish; }

# Mean loss of the first and last 50 steps, from the step records.
awk -F'"loss":' '/"type":"step"/ { split($2, v, ","); loss[++n] = v[1] }
    END {
        for (i = 1; i <= 50; i++) { first += loss[i]; last += loss[n + 1 - i] }
        printf "%d %.6f %.6f\n", n, first / 50, last / 50
    }' "$work/a.jsonl" >"$work/losses"
read -r steps first last <"$work/losses"
[ "$steps" -eq 938 ] || fail "expected 938 step records, found $steps"
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < 0.6 * f) }' ||
    fail "loss did not fall: first 50 steps $first, last 50 steps $last"

accuracy=$(sed -n 's/.*"type":"summary".*"test_accuracy":\([0-9.]*\).*/\1/p' "$work/a.jsonl")
awk -v a="$accuracy" 'BEGIN { exit !(a > 0.5) }' ||
    fail "test accuracy $accuracy is not above 0.5 (chance is 0.1)"

for type in step device eval summary; do
    grep -q "\"type\":\"$type\"" "$work/a.jsonl" || fail "no $type record in the metrics"
done
# The default plan: data parallel over two CPU devices, a device record for each per step (a
# CPU device's total memory is 0: it shares the host's).
for d in 0 1; do
    grep '"type":"device"' "$work/a.jsonl" | sed -n "$((d + 1))p" | grep -Eq \
        "\"step\":1,\"device\":\"cpu:$d\",\"role\":\"replica $d\",\"loss\":[0-9.e+-]+,\"mem_bytes\":[1-9][0-9]*,\"mem_peak_bytes\":[1-9][0-9]*,\"mem_total_bytes\":0,\"act_peak_bytes\":[1-9][0-9]*,\"util\":[0-9.e+-]+,\"threads\":1,\"cpu_s\":[0-9.e+-]+,\"compute_s\":[0-9.e+-]+,\"comm_s\":[0-9.e+-]+,\"idle_s\":[0-9.e+-]+,\"flops\":[1-9][0-9.e+]*,\"peak_flops\":[1-9][0-9.e+]*,\"mfu\":[0-9.e+-]+}" ||
        fail "device record of cpu:$d lacks fields: $(grep '"type":"device"' "$work/a.jsonl" | sed -n "$((d + 1))p")"
done
[ "$(grep -c '"type":"device"' "$work/a.jsonl")" -eq $((2 * 938)) ] || fail "expected 2 device records a step"
grep -q '"strategy":"dp"' "$work/a.jsonl" || fail "step records do not name the dp strategy"
grep -q '^done: 938 steps' "$work/a.out" || fail "no summary line: $(tail -n 3 "$work/a.out")"
grep -q "$(printf '\r')" "$work/a.out" && fail "progress redrawn with CR although stdout is a file"

# The same seed gives the same run, bit for bit; another seed gives another.
run b || fail "second seed run failed"
cmp -s "$work/a.safetensors" "$work/b.safetensors" || fail "same seed, different weights"
"$DPMPTOP" -c "$srcdir/examples/seed.ini" --set run.seed=2 --save "$work/c.safetensors" \
    >/dev/null 2>&1 || fail "seed 2 run failed"
cmp -s "$work/a.safetensors" "$work/c.safetensors" && fail "seeds 1 and 2 gave the same weights"

finish
