#!/bin/sh
# hostile.sh -- the second round of hostile input (issue 14), by family: configuration, data,
# weights, checkpoints, output paths, signals, numerics. Every case asserts the exit status and
# that the message names the problem; the run's outputs are never left half-written; and
# nothing outside the run's own paths changes: a canary directory beside the checkpoint
# directory and another run's checkpoint directory are compared byte for byte at the end.
. "${srcdir:-.}/tests/lib.sh"

# base.ini: the issue's small synthetic run (10 features, 1000 samples, batch 32, SGD).
cat >"$work/base.ini" <<'INI'
[run]
steps = 4
[data]
kind = synthetic
features = 10
classes = 10
samples = 1000
test_samples = 100
batch = 32
[model]
layers = linear:16, relu, linear:10
[optim]
kind = sgd
lr = 0.05
[parallel]
devices = cpu:1
INI
base="$work/base.ini"

# The canaries: files that no run of this script may touch (a precious folder, and the
# checkpoints of another run), with their checksums taken now and compared in canary_check.
mkdir -p "$work/canary/precious" "$work/other-run"
echo "days of work" >"$work/canary/precious/weights.bin"
echo "notes" >"$work/canary/notes.txt"
"$DPMPTOP" --headless -c "$base" --steps 2 --set checkpoint.every=1 \
    --checkpoint-dir "$work/other-run" >/dev/null 2>&1 </dev/null ||
    fail "could not write the other run's checkpoints"
canary_sums() { (cd "$work" && find canary other-run -type f | sort | xargs sha256sum); }
canary_sums >"$work/canary.sums"
canary_check() {
    canary_sums | cmp -s - "$work/canary.sums" ||
        fail "a file outside the run's own paths changed ($*)"
}

# no_temporaries DIR: a run left no NAME.tmpXXXXXX or .tmp-step-* behind in DIR.
no_temporaries() {
    left=$(find "$1" -maxdepth 2 \( -name '*.tmp??????' -o -name '.tmp-step-*' \) 2>/dev/null)
    [ -z "$left" ] || fail "temporary files left behind: $left"
}

# within SECONDS CODE PATTERN -- COMMAND...: expect_exit under a time limit (a hang is a
# failure, not a stuck test).
within() {
    secs=$1
    shift
    code=$1 pattern=$2
    shift 3
    expect_exit "$code" "$pattern" -- timeout -s KILL "$secs" "$@"
}

# ---- configuration ----

# ---- data ----

# ---- weights ----

# ---- checkpoints ----

# another run's checkpoints: a new run refuses the directory, naming them, and writes nothing
cp -r "$work/other-run" "$work/ck-other"
expect_exit 2 "holds what another run left.*step-00000002 \(run [0-9a-f]{16}\).*--resume" -- \
    "$DPMPTOP" --headless -c "$base" --checkpoint-dir "$work/ck-other" \
    --set checkpoint.every=1 --set checkpoint.keep=1 --steps 5
[ "$(ls "$work/ck-other")" = "$(ls "$work/other-run")" ] || fail "another run's directory changed"
# the issue's case: another run's checkpoint under a later step's name; --resume passes over it
# (its state.ini says step 2), says so, and takes the newest complete one
mv "$work/ck-other/step-00000002" "$work/ck-other/step-00000100"
expect_exit 0 "step-00000100: damaged: its state.ini says step 2; passed over" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-other" --steps 3
grep -q "^resuming from $work/ck-other/step-00000001 (step 1, the newest complete" "$work/out" ||
    fail "--resume did not say which checkpoint it took: $(head -n 1 "$work/out")"
# a checkpoint written before run ids is another run's, and said to be
cp -r "$work/other-run" "$work/ck-old"
for f in "$work"/ck-old/step-*/state.ini; do sed -i '/^run = /d' "$f"; done
expect_exit 2 "step-0000000[12] \(written before run ids\)" -- \
    "$DPMPTOP" --headless -c "$base" --checkpoint-dir "$work/ck-old"
expect_exit 0 "" -- "$DPMPTOP" --headless -c "$base" --resume "$work/ck-old" \
    --checkpoint-dir "$work/ck-old" --set checkpoint.every=1 --set checkpoint.keep=1 --steps 4
grep -q "written before run ids: continued as run [0-9a-f]\{16\}" "$work/out" ||
    fail "resuming an old checkpoint did not say it takes it over"
# ... and pruning leaves it: only this run's own checkpoints are removed
[ "$(ls "$work/ck-old" | tr '\n' ' ')" = "step-00000001 step-00000002 step-00000004 " ] ||
    fail "pruning touched another run's checkpoints: $(ls "$work/ck-old" | tr '\n' ' ')"
# a link named like a checkpoint: never followed, never removed
mkdir "$work/ck-link"
ln -s "$work/canary/precious" "$work/ck-link/step-00000001"
expect_exit 2 "step-00000001 \(a symbolic link, not a checkpoint\)" -- \
    "$DPMPTOP" --headless -c "$base" --checkpoint-dir "$work/ck-link" \
    --set checkpoint.keep=1 --set checkpoint.every=2 --steps 4
"$DPMPTOP" --headless -c "$base" --checkpoint-dir "$work/ck-own" --set checkpoint.every=1 \
    --steps 2 >/dev/null 2>&1 </dev/null || fail "could not write checkpoints in ck-own"
ln -s "$work/canary/precious" "$work/ck-own/step-00000000"
expect_exit 0 "" -- "$DPMPTOP" --headless -c "$base" --resume "$work/ck-own" \
    --checkpoint-dir "$work/ck-own" --set checkpoint.keep=1 --set checkpoint.every=1 --steps 5
[ -L "$work/ck-own/step-00000000" ] && [ "$(ls "$work/ck-own" | tr '\n' ' ')" = \
    "step-00000000 step-00000005 " ] || fail "pruning with a link: $(ls "$work/ck-own")"
# the checkpoint directory is checked before any work: a file, a FIFO, a missing parent
: >"$work/a-file"
mkfifo "$work/ck-fifo"
for dir in "$work/a-file" "$work/ck-fifo" "$work/a-file/sub" "$work/missing/ck" /proc/ck; do
    within 10 2 "checkpoint.dir $dir: (not a directory|cannot make)" -- \
        "$DPMPTOP" --headless -c "$base" --checkpoint-dir "$dir"
    grep -q "^step\|^done" "$work/out" && fail "checkpoint.dir $dir: trained before refusing"
done
# a damaged checkpoint is reported, not skipped silently
mkdir "$work/ck-own/step-00000099"
expect_exit 0 "step-00000099: damaged: no model.safetensors; passed over" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-own" --steps 6
rmdir "$work/ck-own/step-00000099"
# resuming a finished run: no fake summary, what to do, exit 0; --save writes its weights
expect_exit 0 "is at step 5, and this run ends at step 5.*nothing to train.*more --steps" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-own" --steps 5 \
    --save "$work/finished.safetensors"
grep -q "^done\|final loss" "$work/out" && fail "a finished run printed a summary"
[ -s "$work/finished.safetensors" ] || fail "a finished run's --save wrote nothing"
# an impossible step in state.ini is a damaged checkpoint
cp -r "$work/ck-own/step-00000005" "$work/ck-huge"
sed -i 's/^step = 5$/step = 4611686018427387904/' "$work/ck-huge/state.ini"
expect_exit 2 "damaged: its step \(4611686018427387904\).*cannot come from a run" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-huge" --steps 9
no_temporaries "$work"

# ---- output paths ----

# two outputs on one path, an output on an input, an output inside the checkpoint directory
cp "$base" "$work/cfg.ini"
"$DPMPTOP" --headless -c "$base" --steps 1 --save "$work/w.safetensors" >/dev/null 2>&1 ||
    fail "could not write weights for --init"
ln -s "$work/cfg.ini" "$work/cfg-link"
for case in "--save $work/x --metrics $work/x|--metrics $work/x: that is --save's file" \
    "--save $work/cfg.ini|--save $work/cfg.ini: that is the configuration" \
    "--metrics $work/cfg-link|--metrics $work/cfg-link: that is the configuration" \
    "--metrics $work/w.safetensors --init $work/w.safetensors|that is --init's weights" \
    "--save $work/ck-own/step-00000005/model.safetensors|inside the checkpoint directory"; do
    args=${case%%|*}
    # shellcheck disable=SC2086 # the arguments are words
    expect_exit 2 "${case#*|}" -- "$DPMPTOP" --headless -c "$work/cfg.ini" $args \
        --checkpoint-dir "$work/ck-own" --resume
done
cmp -s "$base" "$work/cfg.ini" || fail "an output overwrote the configuration"
# a FIFO without a reader is refused at once; with one, it gets the metrics
mkfifo "$work/out.fifo"
within 10 2 "out.fifo: a named pipe that no process is reading" -- \
    "$DPMPTOP" --headless -c "$base" --metrics "$work/out.fifo"
within 10 2 "out.fifo: a named pipe that no process is reading" -- \
    "$DPMPTOP" --headless -c "$base" --save "$work/out.fifo"
cat "$work/out.fifo" >"$work/fifo.jsonl" &
reader=$!
within 60 0 "" -- "$DPMPTOP" --headless -c "$base" --metrics "$work/out.fifo"
wait $reader
grep -q '"type":"summary"' "$work/fifo.jsonl" || fail "the FIFO's reader got no summary"
within 10 2 "/dev/zero: a device that is not a terminal or /dev/null" -- \
    "$DPMPTOP" --headless -c "$base" --save /dev/zero
# every option and key that takes an input path, at a FIFO and at /dev/zero: refused at once
mkfifo "$work/in.fifo"
for path in "$work/in.fifo" /dev/zero; do
    for args in "-c $path" "-c $base --init $path" "-c $base --resume $path" \
        "-c $base --checkpoint-dir $path" "-c $base --set data.kind=text --set data.path=$path" \
        "-c $base --set data.kind=cifar10 --set data.path=$path" \
        "-c $base --set data.kind=idx --set data.path=$path" \
        "-c $base --set data.kind=mnist --set data.path=$path" \
        "-c $base --set data.kind=fashion-mnist --set data.path=$path"; do
        # shellcheck disable=SC2086 # the arguments are words
        within 10 2 "$path" -- "$DPMPTOP" --headless $args
    done
done
no_temporaries "$work"

# ---- signals ----

# a second Ctrl-C removes the temporaries of --metrics and of a checkpoint being written
mkdir -p "$work/sig"
"$DPMPTOP" --headless -c "$base" --steps 1000000 --checkpoint-dir "$work/sig/ck" \
    --set checkpoint.every=1 --set "model.layers=linear:2048, relu, linear:2048, relu, linear:10" \
    --metrics "$work/sig/m.jsonl" --save "$work/sig/w.safetensors" >/dev/null 2>&1 &
pid=$!
k=0
while [ $k -lt 3000 ] && ! ls -a "$work/sig/ck" 2>/dev/null | grep -q '^\.tmp-step-'; do
    k=$((k + 1))
    sleep 0.01
done
kill -INT $pid
sleep 0.02
kill -INT $pid
wait $pid
status=$?
[ $status -eq 130 ] || fail "two SIGINTs: exit $status, wanted 130"
ls "$work/sig" | grep -q '^m.jsonl.tmp' && fail "two SIGINTs left --metrics's temporary file"
no_temporaries "$work/sig"

# ---- numerics ----

canary_check "at the end"
finish
