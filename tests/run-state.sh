#!/bin/sh
# run-state.sh -- the run's end and its evaluations, headless and under the dashboard:
# - the exit summary fits 80 columns (a hybrid plan's long roles shortened) and names the
#   checkpoint holding the run's end;
# - SIGTERM during a long evaluation stops it within a part of it: the run ends (exit 130)
#   well before the evaluation would have, with no evaluation reported and the checkpoint named;
# - q during an evaluation under the dashboard does the same (where tmux is installed).
. "${srcdir:-.}/tests/lib.sh"

cat >"$work/hybrid.ini" <<'INI'
[run]
steps = 12
eval_every = 5
[data]
kind = synthetic
features = 32
classes = 10
samples = 600
test_samples = 200
batch = 50
[model]
layers = linear:64, relu, linear:64, gelu, linear:32, relu, linear:10
[parallel]
devices = cpu:4
strategy = hybrid
INI
timeout 120 "$DPMPTOP" -c "$work/hybrid.ini" --headless --checkpoint-dir "$work/ck" \
    >"$work/hybrid.out" 2>&1 || fail "hybrid run: exit $?: $(tail -n 2 "$work/hybrid.out")"
sed -n '/^done: /,$p' "$work/hybrid.out" >"$work/summary"
[ -s "$work/summary" ] || fail "hybrid run: no summary: $(tail -n 3 "$work/hybrid.out")"
grep -qx "checkpoint at the end: $work/ck/step-00000012" "$work/summary" ||
    fail "the summary does not name the checkpoint of the end: $(cat "$work/summary")"
grep -q "^test accuracy [0-9.]*, loss [0-9.]* after step 12\$" "$work/summary" ||
    fail "the summary lacks the last evaluation: $(cat "$work/summary")"
grep -v '^checkpoint at the end: ' "$work/summary" | awk 'length($0) > 80 { bad = 1; print }
    END { exit bad }' >"$work/wide" || fail "summary lines wider than 80 columns: $(cat "$work/wide")"
[ "$(grep -c '^cpu:[0-3] ' "$work/summary")" -eq 4 ] ||
    fail "not a row per device: $(cat "$work/summary")"
grep -q '^cpu:3 .* r1 s1 L' "$work/summary" ||
    fail "cpu:3's role is not shortened to fit: $(grep '^cpu:3' "$work/summary")"

# a long evaluation (tens of thousands of test samples through 2048-wide layers) after step 1
write_long_eval_ini "$work/long.ini"
printf '[parallel]\ndevices = cpu:2\n' >>"$work/long.ini"
"$DPMPTOP" -c "$work/long.ini" --headless --checkpoint-dir "$work/eval-ck" \
    --metrics "$work/eval.jsonl" >"$work/term.out" 2>&1 &
pid=$!
wait_for_handlers $pid
wait_for_line "$work/term.out" '^step 1/2' 6000 0.01 # the evaluation begins (60 s at most)
sleep 0.3
kill -TERM $pid
i=0 # within 20 s (the whole evaluation takes several times as long on 2 cores)
while kill -0 $pid 2>/dev/null && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 $pid 2>/dev/null; then
    fail "SIGTERM during an evaluation: still running after 20 s"
    kill -9 $pid
fi
wait $pid
status=$?
echo "SIGTERM during the evaluation: ended $((i / 10)).$((i % 10)) s after it, exit $status"
[ $status -eq 130 ] || fail "SIGTERM during an evaluation: exit $status, wanted 130"
grep -q 'test loss' "$work/term.out" && fail "a stopped evaluation reported: $(grep 'test loss' "$work/term.out")"
grep -q '"type":"eval"' "$work/eval.jsonl" && fail "a stopped evaluation left an eval record"
grep -q '"test_accuracy":null' "$work/eval.jsonl" || fail "the summary record has a test accuracy"
grep -q '^interrupted: 1 steps' "$work/term.out" || fail "no 'interrupted' summary: $(tail -n 4 "$work/term.out")"
grep -q '^the evaluation after step 1 was stopped' "$work/term.out" ||
    fail "the summary does not say the evaluation was stopped"
grep -qx "checkpoint at the end: $work/eval-ck/step-00000001" "$work/term.out" ||
    fail "no checkpoint named at the end: $(tail -n 4 "$work/term.out")"

# q during the evaluation, under the dashboard
if command -v tmux >/dev/null 2>&1; then
    . "$srcdir/tests/tmux.sh"
    tm new-session -d -s q -x 100 -y 30 \
        "env TERM=tmux-256color '$DPMPTOP' -c '$work/long.ini'; echo \$? >'$work/q.status'; sleep 60"
    wait_for q 'step 1/2' 60 || fail "dashboard: step 1 not shown: $(screen q | head -n 3)"
    sleep 0.3
    tm send-keys -t q q
    i=0
    while [ ! -s "$work/q.status" ] && [ $i -lt 200 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "q during the evaluation: ended $((i / 10)).$((i % 10)) s after it"
    [ "$(cat "$work/q.status" 2>/dev/null)" = 0 ] ||
        fail "q during an evaluation: no exit 0 within 20 s ($(cat "$work/q.status" 2>/dev/null))"
    screen q >"$work/q.screen"
    grep -q '^stopped: 1 steps' "$work/q.screen" ||
        fail "q: no 'stopped' summary: $(cat "$work/q.screen")"
    grep -q '^the evaluation after step 1 was stopped' "$work/q.screen" ||
        fail "q: the summary does not say the evaluation was stopped"
    grep -q '^test accuracy' "$work/q.screen" && fail "q: a stopped evaluation reported a result"
fi
finish
