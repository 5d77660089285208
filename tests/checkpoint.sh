#!/bin/sh
# checkpoint.sh -- checkpoints and resume on CPU devices:
# - resuming from a checkpoint with the same strategy ends bit for bit where the run that never
#   stopped ends; with another strategy, within float reassociation (1e-5); with batch
#   normalisation (running statistics, an I64 count) byte for byte; a masked language model
#   (its masks and dropout's from the step) byte for byte, and evaluating the same;
# - kill test: a run writing a checkpoint every step, killed with SIGKILL at 20 random moments
#   and 5 more aimed at checkpoint writes (at least one must land in one), always leaves a
#   complete newest checkpoint, and resuming from it to the end gives the uninterrupted run's
#   parameters exactly;
# - SIGINT finishes the step, writes a checkpoint, says where (and the summary names it),
#   exits 130;
# - a checkpoint of another model, batch or seed is refused (exit 2) naming what differs;
# - a full disk (ulimit -f) fails the run with the OS error and leaves the older checkpoints
#   and the old --save file intact;
# - NaN guard: a loss gone non-finite stops the run (exit 1) naming the step and the first
#   layer whose values went bad, the last checkpoint holding finite parameters; with
#   run.on_nan = skip the run goes on, saying which updates it skipped.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

cat >"$work/run.ini" <<'INI'
[run]
steps = 24
[data]
kind = synthetic
features = 64
classes = 10
samples = 2000
test_samples = 200
batch = 50
[model]
layers = linear:256, relu, linear:256, gelu, linear:10
[optim]
kind = adamw
lr = 0.003
[parallel]
devices = cpu:2
strategy = dp
INI
run() { # NAME OPTIONS...: runs to the end; the output in $work/NAME.out
    name=$1
    shift
    timeout 120 "$DPMPTOP" -c "$work/run.ini" --headless "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
}
# resumes INI's run from the newest checkpoint in $work/kill to its end, and requires REFERENCE's
# parameters exactly
resume_killed() { # INI REFERENCE LABEL
    if timeout 120 "$DPMPTOP" -c "$1" --headless --resume "$work/kill" \
        --save "$work/kill.safetensors" >"$work/kill.out" 2>&1; then
        same "$2" "$work/kill.safetensors" 0
    else
        fail "$3: resuming: $(tail -n 1 "$work/kill.out")"
    fi
}
same() { # A B TOLERANCE
    if ! d=$("$compare" "$1" "$2" "$3"); then
        fail "$2 differs from $1 by $d (tolerance $3)"
    fi
}

# the reference: 24 steps without a stop
run full --save "$work/full.safetensors"

# every 5 steps, keeping 2: the newest two remain, then resume from step 15
run ckpt --checkpoint-dir "$work/ck" --set checkpoint.every=5 --set checkpoint.keep=2
kept=$(ls "$work/ck" | tr '\n' ' ')
[ "$kept" = "step-00000020 step-00000024 " ] || fail "kept checkpoints are '$kept'"
grep -q "^checkpoint: $work/ck/step-00000024 ([0-9]* ms)\$" "$work/ckpt.out" ||
    fail "no final checkpoint line"
run ckpt15 --checkpoint-dir "$work/ck15" --set checkpoint.every=15 --steps 15
run resume-dp --resume "$work/ck15/step-00000015" --steps 24 --save "$work/dp.safetensors"
grep -q "resuming from $work/ck15/step-00000015 (step 15, as given)" "$work/resume-dp.out" ||
    fail "resume did not say where from"
same "$work/full.safetensors" "$work/dp.safetensors" 0
run resume-pp --resume "$work/ck15" --steps 24 --strategy pp --save "$work/pp.safetensors"
same "$work/full.safetensors" "$work/pp.safetensors" 1e-5

# batch normalisation: the running statistics and num_batches_tracked (I64, shape []) are in
# model.safetensors, so a run resumed at step 12 ends byte for byte where the run that never
# stopped ends; optimizer.safetensors has state for the trained tensors only; the banner counts
# the trained parameters (64 * 64 + 64, 2 * 64, 10 * 64 + 10: 4938), not the 129 buffers
sed 's/^layers = .*/layers = linear:64, bn, relu, linear:10/' "$work/run.ini" >"$work/bn.ini"
bn_run() { # NAME OPTIONS...
    name=$1
    shift
    timeout 120 "$DPMPTOP" -c "$work/bn.ini" --headless "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
}
bn_run bn-full --save "$work/bn-full.safetensors"
grep -q "^  model: linear:64, bn, relu, linear:10 (4938 parameters)\$" "$work/bn-full.out" ||
    fail "bn: the banner's count: $(grep '^  model:' "$work/bn-full.out")"
bn_run bn-ck --checkpoint-dir "$work/bnck" --set checkpoint.every=12 --steps 12
bn_run bn-resume --resume "$work/bnck" --save "$work/bn-resumed.safetensors"
cmp -s "$work/bn-full.safetensors" "$work/bn-resumed.safetensors" ||
    fail "bn: the resumed run's parameters or buffers differ from the uninterrupted run's"
grep -aq '"1.num_batches_tracked":{"dtype":"I64","shape":\[\],' \
    "$work/bnck/step-00000012/model.safetensors" ||
    fail "bn: the checkpoint's num_batches_tracked is not an I64 scalar"
grep -aq 'running_\|num_batches' "$work/bnck/step-00000012/optimizer.safetensors" &&
    fail "bn: optimizer.safetensors holds state for buffers"
grep -aq '"1.weight.exp_avg_sq"' "$work/bnck/step-00000012/optimizer.safetensors" ||
    fail "bn: optimizer.safetensors lacks 1.weight.exp_avg_sq"

# a masked language model: its masks hang on the step and each sample's place (and dropout's
# on the step), not on state that lives in the process, so a run resumed at step 12 ends byte
# for byte where the one that never stopped ends, and evaluates after step 16 and 24 to the
# same masked loss and accuracy
write_text "$work/text.txt" 3000
cat >"$work/mlm.ini" <<INI
[run]
steps = 24
eval_every = 8
[data]
kind = text
path = $work/text.txt
context = 16
batch = 40
[model]
objective = mlm
layers = embed:257:16, pos, dropout:10, enc:2, enc:4:1, linear:256
[optim]
kind = adamw
lr = 0.003
[parallel]
devices = cpu:2
strategy = dp
INI
mlm_run() { # NAME OPTIONS...
    name=$1
    shift
    timeout 120 "$DPMPTOP" -c "$work/mlm.ini" --headless "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
}
mlm_run mlm-full --save "$work/mlm-full.safetensors"
mlm_run mlm-ck --checkpoint-dir "$work/mlmck" --set checkpoint.every=12 --steps 12
mlm_run mlm-resume --resume "$work/mlmck" --save "$work/mlm-resumed.safetensors"
cmp -s "$work/mlm-full.safetensors" "$work/mlm-resumed.safetensors" ||
    fail "mlm: the resumed run's parameters differ from the uninterrupted run's"
grep '^step 16, .*masked test loss\|^step 24, .*masked test loss' "$work/mlm-full.out" \
    >"$work/mlm-full.eval"
grep '^step 16, .*masked test loss\|^step 24, .*masked test loss' "$work/mlm-resume.out" \
    >"$work/mlm-resume.eval"
[ "$(wc -l <"$work/mlm-full.eval")" -eq 2 ] ||
    fail "mlm: no masked evaluations after steps 16 and 24: $(tail -n 4 "$work/mlm-full.out")"
cmp -s "$work/mlm-full.eval" "$work/mlm-resume.eval" ||
    fail "mlm: the resumed run evaluates to $(cat "$work/mlm-resume.eval"), not $(cat "$work/mlm-full.eval")"

# refusals
expect_exit 2 "another model" -- "$DPMPTOP" -c "$work/run.ini" --headless --resume "$work/ck15" \
    --set "model.layers=linear:128, relu, linear:10"
expect_exit 2 "batch 50; this run's is 40" -- "$DPMPTOP" -c "$work/run.ini" --headless \
    --resume "$work/ck15" --set data.batch=40
expect_exit 2 "seed 1; this run's" -- "$DPMPTOP" -c "$work/run.ini" --headless \
    --resume "$work/ck15" --set run.seed=2
expect_exit 2 "no complete checkpoint there" -- "$DPMPTOP" -c "$work/run.ini" --headless \
    --resume "$work"
expect_exit 2 "needs a directory" -- "$DPMPTOP" -c "$work/run.ini" --headless --resume

# kill test: SIGKILL at random moments of a run writing a checkpoint every step
i=0 resumed=0 mid_write=0
while [ $i -lt 20 ]; do
    i=$((i + 1))
    rm -rf "$work/kill"
    "$DPMPTOP" -c "$work/run.ini" --headless --checkpoint-dir "$work/kill" \
        --set checkpoint.every=1 --set checkpoint.keep=3 >/dev/null 2>&1 &
    pid=$!
    sleep "$(awk -v s="$i" 'BEGIN { srand(s * 7919); printf "%.3f", 0.05 + rand() * 0.6 }')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    ls -a "$work/kill" 2>/dev/null | grep -q '^\.tmp-step-' && mid_write=$((mid_write + 1))
    [ -d "$work/kill" ] && ls "$work/kill" | grep -q '^step-' || continue # killed before step 1
    newest=$(ls -d "$work/kill"/step-* | tail -n 1)
    resumed=$((resumed + 1))
    for f in model.safetensors optimizer.safetensors state.ini config.ini; do
        [ -s "$newest/$f" ] || fail "kill $i: $newest lacks $f"
    done
    resume_killed "$work/run.ini" "$work/full.safetensors" "kill $i ($newest)"
done

# five more kills aimed at checkpoint writes: a larger model (about 10 MB a checkpoint), killed
# as soon as a writer's temporary directory appears
sed 's/^layers = .*/layers = linear:1024, relu, linear:1024, relu, linear:10/' "$work/run.ini" \
    >"$work/big.ini"
timeout 120 "$DPMPTOP" -c "$work/big.ini" --headless --save "$work/big-full.safetensors" \
    >"$work/big-full.out" 2>&1 || fail "big-full: exit $?"
j=0
while [ $j -lt 5 ]; do
    j=$((j + 1))
    rm -rf "$work/kill"
    "$DPMPTOP" -c "$work/big.ini" --headless --checkpoint-dir "$work/kill" \
        --set checkpoint.every=1 --set checkpoint.keep=3 >/dev/null 2>&1 &
    pid=$!
    wait_for_checkpoint_write "$work/kill" 2000 0.002
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    ls -a "$work/kill" 2>/dev/null | grep -q '^\.tmp-step-' && mid_write=$((mid_write + 1))
    ls "$work/kill" 2>/dev/null | grep -q '^step-' || continue
    resumed=$((resumed + 1))
    resume_killed "$work/big.ini" "$work/big-full.safetensors" "aimed kill $j"
done
echo "kill test: 25 kills, $mid_write while a checkpoint was being written, $resumed resumed"
[ $mid_write -gt 0 ] || fail "no kill landed while a checkpoint was being written"

# SIGINT: the step ends, a checkpoint is written, exit 130
sed 's/^steps = 24/steps = 100000/' "$work/run.ini" >"$work/long.ini"
"$DPMPTOP" -c "$work/long.ini" --headless --checkpoint-dir "$work/int" >"$work/int.out" 2>&1 &
pid=$!
wait_for_line "$work/int.out" '^step ' 6000 0.01 # training has begun (60 s at most)
kill -INT $pid
wait $pid
status=$?
[ $status -eq 130 ] || fail "SIGINT: exit $status, wanted 130"
where=$(sed -n 's/^checkpoint: \(.*\) ([0-9]* ms)$/\1/p' "$work/int.out" | tail -n 1)
[ -n "$where" ] && [ -f "$where/state.ini" ] || fail "SIGINT: no checkpoint written ($where)"
grep -q "^interrupted: " "$work/int.out" || fail "SIGINT: no 'interrupted' summary"
grep -qx "checkpoint at the end: $where" "$work/int.out" ||
    fail "SIGINT: the summary does not name the checkpoint $where"

# a full disk: the checkpoint fails with the OS error; older ones and --save's file survive
cp "$work/full.safetensors" "$work/old.safetensors"
(
    ulimit -f 64 # no file past 32 or 64 KiB (blocks of 512 or 1024 bytes, by shell)
    "$DPMPTOP" -c "$work/run.ini" --headless --resume "$work/ck15" \
        --checkpoint-dir "$work/ck15" --set checkpoint.every=1 \
        --save "$work/old.safetensors" >"$work/full-disk.out" 2>&1
    echo $? >"$work/full-disk.status"
)
[ "$(cat "$work/full-disk.status")" -eq 1 ] ||
    fail "full disk: exit $(cat "$work/full-disk.status"), wanted 1"
grep -q "checkpoint $work/ck15/step-00000016 not written (model.safetensors: cannot write: File too large); the earlier checkpoints are intact" "$work/full-disk.out" ||
    fail "full disk: no OS error: $(tail -n 1 "$work/full-disk.out")"
ls "$work/ck15" | grep -q tmp && fail "full disk: a temporary directory was left"
[ "$(ls "$work/ck15")" = "step-00000015" ] || fail "full disk: checkpoints now $(ls "$work/ck15")"
same "$work/full.safetensors" "$work/old.safetensors" 0
timeout 120 "$DPMPTOP" -c "$work/run.ini" --headless --resume "$work/ck15" --steps 16 \
    >"$work/after.out" 2>&1 || fail "full disk: the old checkpoint no longer loads"
(
    ulimit -f 64
    "$DPMPTOP" -c "$work/run.ini" --headless --steps 2 --save "$work/old.safetensors" \
        >"$work/full-save.out" 2>&1
    echo $? >"$work/full-save.status"
)
[ "$(cat "$work/full-save.status")" -eq 1 ] && grep -q "File too large" "$work/full-save.out" ||
    fail "full disk, --save: exit $(cat "$work/full-save.status"): $(tail -n 1 "$work/full-save.out")"
same "$work/full.safetensors" "$work/old.safetensors" 0

# NaN guard: SGD with lr 1e30 blows up at step 2, in the output of the second linear layer;
# NaN is printed "nan" whatever its sign bit
expect_exit 1 "step 2: the loss is nan and the gradient norm nan: .*layer 2 \(linear\)'s output; stopping" -- \
    "$DPMPTOP" -c "$work/run.ini" --headless --set optim.kind=sgd --set optim.lr=1e30 \
    --checkpoint-dir "$work/nan" --set checkpoint.every=1
grep -q "^failed: 1 steps" "$work/out" || fail "NaN guard: the summary does not say failed"
[ "$(ls "$work/nan")" = "step-00000001" ] || fail "NaN guard: checkpoints $(ls "$work/nan")"
expect_exit 0 "" -- "$DPMPTOP" -c "$work/run.ini" --headless --set optim.kind=sgd \
    --set optim.lr=1e30 --set run.on_nan=skip --steps 4
grep -q "^step 2: the loss is -*nan: update skipped; the first non-finite values are layer 2" \
    "$work/out" || fail "on_nan = skip: no report of the skipped update"
finish
