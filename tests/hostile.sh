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

# A key given twice is refused however long the configuration's path is: 200+ characters,
# and one near PATH_MAX (a fixed buffer once cut the path, and the duplicate went through).
printf '[run]\nsteps = 1\n[optim]\nlr = 0.1\nlr = 0.2\n' >"$work/dup.ini"
p200=$(printf 'p%.0s' $(seq 1 200))
for depth in 1 19; do
    dir="$work/deep"
    for i in $(seq 1 "$depth"); do dir="$dir/$i$p200"; done
    mkdir -p "$dir" && cp "$work/dup.ini" "$dir/c.ini" || fail "cannot make $dir"
    expect_exit 2 "p/c\.ini:5: \[optim\] lr is set twice \(first at line 4\); a key may appear once" \
        -- "$DPMPTOP" --headless -c "$dir/c.ini"
done
[ ${#dir} -gt 3800 ] || fail "the deep path has only ${#dir} characters"

# -c must be a regular file: a FIFO (which blocked open forever), /dev/zero, and /dev/stdin
# when it is a pipe are refused at once, exit 2.
mkfifo "$work/config.fifo"
within 10 2 "^dpmptop: -c: $work/config\.fifo: is a named pipe, not a regular file" -- \
    "$DPMPTOP" --headless -c "$work/config.fifo"
within 10 2 "^dpmptop: -c: /dev/zero: is a device, not a regular file" -- \
    "$DPMPTOP" --headless -c /dev/zero
cat "$base" | timeout -s KILL 10 "$DPMPTOP" --headless -c /dev/stdin >"$work/out" 2>"$work/err"
got=$?
{ [ "$got" -eq 2 ] && grep -q "^dpmptop: -c: /dev/stdin: is a named pipe" "$work/err"; } ||
    fail "-c /dev/stdin from a pipe: exit $got, $(cat "$work/err")"

# Options naming one file may be given once.
cp "$base" "$work/base2.ini"
expect_exit 2 "^dpmptop: -c given twice: $base and $work/base2\.ini; give one$" -- \
    "$DPMPTOP" --headless -c "$base" -c "$work/base2.ini"
expect_exit 2 "^dpmptop: --save given twice: $work/w1 and $work/w2; give one$" -- \
    "$DPMPTOP" --headless -c "$base" --save "$work/w1" --save "$work/w2"
[ ! -e "$work/w1" ] && [ ! -e "$work/w2" ] || fail "--save twice wrote a file"

# --print-config reads back: its output fed to -c prints the same, for names with spaces,
# '=', unicode, and a ';' inside a path.
for name in 'a name with spaces' 'k=v=w' 'naïve – 学习 ✓' 'semi;colon' 'x#y'; do
    expect_exit 0 "" -- "$DPMPTOP" -c "$base" --set "run.name=$name" \
        --set "data.path=/srv/a;b/c d.bin" --set "checkpoint.dir=$work/c=k;p" --print-config
    cp "$work/out" "$work/printed.ini"
    grep -qxF "name = $name" "$work/printed.ini" || fail "--print-config lost the name $name"
    expect_exit 0 "" -- "$DPMPTOP" -c "$work/printed.ini" --print-config
    cmp -s "$work/out" "$work/printed.ini" || fail "--print-config with name $name does not read back"
done
# ... and what would not read back is refused: a comment where inih sees one, control
# characters (a newline would have injected lines into config.ini), spaces around a value.
expect_exit 2 "^dpmptop: --set: \[run\] name = ;x: ';' at the start of a value starts a comment" \
    -- "$DPMPTOP" -c "$base" --set 'run.name=;x' --print-config
expect_exit 2 "\[run\] name = a ;x: ';' after a space starts a comment.*remove the space" \
    -- "$DPMPTOP" -c "$base" --set 'run.name=a ;x' --print-config
nl='
'
expect_exit 2 "^dpmptop: --set: \[run\] name: the value holds a control character \(byte 0x0a\)" \
    -- "$DPMPTOP" --headless -c "$base" --set "run.name=a${nl}[optim]${nl}lr = 9" \
    --checkpoint-dir "$work/ck-inject" --set checkpoint.every=1
[ ! -e "$work/ck-inject" ] || fail "a refused run wrote $work/ck-inject"
printf '[run]\nname = a\tb\n' >"$work/tab.ini"
expect_exit 2 "tab\.ini:2: \[run\] name: the value holds a control character \(byte 0x09\)" \
    -- "$DPMPTOP" -c "$work/tab.ini" --print-config
expect_exit 2 "a value with spaces around it" -- "$DPMPTOP" -c "$base" --set 'run.name=x ' \
    --print-config

# Messages: a learning rate too small for a float says it underflows; an empty --set key;
# weight decay that makes the update diverge is named, not lr and clip.
printf '[optim]\nlr = 1e-320\n' >"$work/tiny.ini"
expect_exit 2 "tiny\.ini:2: \[optim\] lr = 1e-320: underflows.*expected a number > 0" -- \
    "$DPMPTOP" --headless -c "$work/tiny.ini"
expect_exit 2 "^dpmptop: --set \.=1: the section and key are empty; expected SECTION\.KEY=VALUE" \
    -- "$DPMPTOP" --headless -c "$base" --set .=1
expect_exit 2 "weight_decay = 1e308: too large for a float" -- \
    "$DPMPTOP" --headless -c "$base" --set optim.weight_decay=1e308
for kind in sgd adamw; do
    expect_exit 1 "optim\.weight_decay = 1e\+30 with optim\.lr = 0\.05 makes the weights grow.*lower optim\.weight_decay" \
        -- "$DPMPTOP" --headless -c "$base" --set optim.kind=$kind --set optim.weight_decay=1e30
done
expect_exit 1 "lower optim\.lr, set optim\.clip" -- \
    "$DPMPTOP" --headless -c "$base" --set optim.lr=1e30

# Every numeric key refuses what is not a plain number in range, with FILE:LINE.
for key in run.seed run.steps run.epochs run.eval_every data.batch data.limit data.context \
    data.features data.classes data.samples data.test_samples optim.lr optim.momentum \
    optim.weight_decay optim.beta1 optim.beta2 optim.eps optim.warmup optim.clip \
    parallel.stages parallel.microbatches parallel.bucket_mb parallel.watchdog \
    checkpoint.every checkpoint.keep dashboard.refresh_ms; do
    for value in 1e400 -1e400 nan inf 0x10 5x '1 2' 1e39; do
        printf '[%s]\n%s = %s\n' "${key%%.*}" "${key#*.}" "$value" >"$work/num.ini"
        expect_exit 2 "num\.ini:2: \[${key%%.*}\] ${key#*.} = $value: .*expected" -- \
            "$DPMPTOP" --headless -c "$work/num.ini"
    done
done
expect_exit 2 "lr = -0: expected a number > 0" -- "$DPMPTOP" -c "$base" --set optim.lr=-0
expect_exit 0 "" -- "$DPMPTOP" -c "$base" --set optim.weight_decay=-0 --print-config
grep -qx "weight_decay = 0" "$work/out" || fail "weight_decay = -0 printed as $(grep weight_decay "$work/out")"

# A 1 MB value, a NUL byte, a key before any section, unicode in a section's name.
{ printf '[run]\nname = '; head -c 1048576 /dev/zero | tr '\0' n; printf '\n'; } >"$work/huge.ini"
expect_exit 2 "huge\.ini:2: line too long" -- "$DPMPTOP" --headless -c "$work/huge.ini"
printf '[run]\nsteps = 1\0 0\n' >"$work/nul.ini"
expect_exit 2 "nul\.ini:2: a NUL byte" -- "$DPMPTOP" --headless -c "$work/nul.ini"
printf 'steps = 1\n[run]\n' >"$work/nosection.ini"
expect_exit 2 "nosection\.ini:1: \"steps\" comes before any \[section\]" -- \
    "$DPMPTOP" --headless -c "$work/nosection.ini"
printf '[rün]\nsteps = 1\n' >"$work/unicode.ini"
expect_exit 2 "unicode\.ini:1: unknown section \[rün\]; the sections are run, data" -- \
    "$DPMPTOP" --headless -c "$work/unicode.ini"
printf '\357\273\277[bogus]\n[run]\nsteps = 1\n' >"$work/bom.ini"
expect_exit 2 "bom\.ini:1: unknown section \[bogus\]" -- "$DPMPTOP" --headless -c "$work/bom.ini"
canary_check "configuration"

# ---- data ----

# ---- weights ----

# ---- checkpoints ----

# ---- output paths ----

# ---- signals ----

# ---- numerics ----

canary_check "at the end"
finish
