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

# ---- output paths ----

# ---- signals ----

# ---- numerics ----

canary_check "at the end"
finish
