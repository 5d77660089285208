# lib.sh -- shared by the end-to-end test scripts (sourced, not run).
# make check sets DPMPTOP (the binary), srcdir and TMPDIR_BASE; the defaults let a script run
# by hand from the source root.
set -u
DPMPTOP=${DPMPTOP:-./dpmptop}
srcdir=${srcdir:-.}
base=${TMPDIR_BASE:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/$(basename "$0" .sh).XXXXXX")
failures=0
checks=0 # expect_exit calls, for scripts that report how many cases they ran
# Under ThreadSanitizer the reports go to files in $work, where finish shows them: a test that
# watches a terminal would otherwise lose them with the screen.
if [ -n "${TSAN_OPTIONS:-}" ]; then
    export TSAN_OPTIONS="$TSAN_OPTIONS log_path=$work/tsan"
fi

# write_cifar DIR PER_BATCH TEST: CIFAR-10 binary batches of random images and labels in DIR,
# PER_BATCH records in each of data_batch_1..5.bin and TEST in test_batch.bin.
write_cifar() {
    python3 - "$@" <<'PY' || fail "could not write CIFAR-10 files in $1"
import os, random, sys
d, per, test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
rnd = random.Random(7)
def batch(n):
    return b''.join(bytes([rnd.randrange(10)]) + rnd.randbytes(3072) for _ in range(n))
for b in range(1, 6):
    open(f'{d}/data_batch_{b}.bin', 'wb').write(batch(per))
open(f'{d}/test_batch.bin', 'wb').write(batch(test))
PY
}

# write_text FILE WORDS: WORDS random words of a small vocabulary, separated by spaces.
write_text() {
    python3 - "$@" <<'PY' || fail "could not write the text $1"
import random, sys
rnd = random.Random(3)
words = 'a the of pipeline device stage gradient block sample replica layer step'.split()
open(sys.argv[1], 'w').write(' '.join(rnd.choice(words) for _ in range(int(sys.argv[2]))))
PY
}

# write_mlp_ini FILE [adamw]: the small run the parity tests share (20 steps of a 4-layer MLP
# with dropout on synthetic data, 1000 samples in batches of 62), with adamw AdamW under a
# warm-up, a cosine schedule and clipping (else plain SGD); callers append their sections.
write_mlp_ini() {
    [ "${2:-}" = adamw ] && optim='[optim]
kind = adamw
lr = 0.01
warmup = 3
lr_schedule = cosine
clip = 0.5' || optim=
    cat >"$1" <<INI
[run]
steps = 20
[data]
kind = synthetic
features = 20
classes = 10
samples = 1000
test_samples = 100
batch = 62
[model]
layers = linear:64, relu, linear:32, tanh, dropout:20, linear:48, gelu, linear:10
$optim
INI
}

# need_torch: sets py to Debian's /usr/bin/python3, whose python3-torch the PyTorch
# comparisons use, or skips the script (77) when it cannot import torch.
need_torch() {
    py=/usr/bin/python3
    if ! "$py" -c "import torch" 2>/dev/null; then
        echo "SKIP: $py cannot import torch (apt-get install python3-torch)"
        rm -rf "$work"
        exit 77
    fi
}

# Reports a failed check and remembers it; the script exits 1 at the end.
# write_long_eval_ini FILE: two steps, each followed by an evaluation long enough to stop in
# the middle (40000 test samples through 2048-wide layers: seconds, in 20 parts).
write_long_eval_ini() {
    cat >"$1" <<'INI'
[run]
steps = 2
eval_every = 1
[data]
kind = synthetic
features = 64
classes = 10
samples = 500
test_samples = 40000
batch = 50
[model]
layers = linear:2048, relu, linear:2048, relu, linear:10
INI
}

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect_exit CODE PATTERN -- COMMAND...: runs COMMAND, requires exit status CODE and, unless
# PATTERN is empty, a line of stderr matching PATTERN (grep -E). stderr is kept in $work/err.
expect_exit() {
    checks=$((checks + 1))
    want=$1 pattern=$2
    shift 3
    "$@" >"$work/out" 2>"$work/err" </dev/null
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "exit $got (wanted $want): $*"
        sed 's/^/    stderr: /' "$work/err" >&2
        return
    fi
    if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$work/err"; then
        fail "stderr lacks /$pattern/: $*"
        sed 's/^/    stderr: /' "$work/err" >&2
    fi
}

# wait_for_checkpoint_write DIR TRIES PAUSE: returns once a checkpoint writer's temporary
# directory appears in DIR, or after TRIES looks PAUSE seconds apart.
wait_for_checkpoint_write() {
    tries=0
    while [ "$tries" -lt "$2" ] && ! ls -a "$1" 2>/dev/null | grep -q '^\.tmp-step-'; do
        tries=$((tries + 1))
        sleep "$3"
    done
}

# wait_for_handlers PID: waits (up to 10 s) until process PID catches SIGHUP, SIGINT and
# SIGTERM (SigCgt in /proc): a signal sent before would find the default action, or the
# SIG_IGN a background job of a non-interactive shell starts with.
wait_for_handlers() {
    tries=0
    while [ $tries -lt 1000 ]; do
        mask=$(awk '/^SigCgt/ { print $2 }' "/proc/$1/status" 2>/dev/null)
        [ -n "$mask" ] && [ $((0x${mask#????????} & 0x4003)) -eq $((0x4003)) ] && return
        tries=$((tries + 1))
        sleep 0.01
    done
}

# wait_for_line FILE REGEX TRIES PAUSE: waits until a line of FILE matches REGEX.
wait_for_line() {
    tries=0
    while [ "$tries" -lt "$3" ] && ! grep -q "$2" "$1" 2>/dev/null; do
        tries=$((tries + 1))
        sleep "$4"
    done
}

# Ends the script: 0 when every check passed.
finish() {
    for report in "$work"/tsan.*; do
        [ -f "$report" ] && fail "ThreadSanitizer: $(cat "$report")"
    done
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed; files kept in $work" >&2
        exit 1
    fi
    rm -rf "$work"
    exit 0
}
