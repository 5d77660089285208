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

# An embedding's vocabulary must hold every id of the data (text: bytes 0..255), and embed
# takes ids only: floats and images are refused at the model's line in the configuration.
write_text "$work/words.txt" 3000
cat >"$work/text.ini" <<INI
[data]
kind = text
path = $work/words.txt
context = 16
batch = 4
[model]
layers = embed:2:16, linear:256
[parallel]
devices = cpu:1
INI
within 60 2 'text.ini:7: \[model\] layers: layer 0 \(embed:2:16\): a vocabulary of 2, but the data.s ids go up to 255; use embed:256:16' -- \
    "$DPMPTOP" --headless --steps 2 -c "$work/text.ini" --save "$work/embed.safetensors"
[ -e "$work/embed.safetensors" ] && fail "a refused model left --save's file behind"
no_temporaries "$work"
within 60 2 'layer 0 \(embed:255:16\): a vocabulary of 255' -- \
    "$DPMPTOP" --headless --steps 2 -c "$work/text.ini" --set model.layers='embed:255:16, linear:256'
within 60 0 '' -- "$DPMPTOP" --headless --steps 2 -c "$work/text.ini" \
    --set model.layers='embed:300:16, linear:256'
within 60 2 'layer 0 \(embed:256:8\): embed looks up integer ids.*not ids' -- \
    "$DPMPTOP" --headless --steps 2 -c "$base" --set model.layers='embed:256:8, flatten, linear:10'
within 60 2 'layer 1: embed:256:8 looks up the data.s ids, so it goes first' -- \
    "$DPMPTOP" --headless --steps 2 -c "$base" --set model.layers='linear:4, embed:256:8, flatten, linear:10'

# ---- model sizes ----
# Sizes computed from layer arguments, the data's shape and the batch are refused with exit 2,
# naming the layer and the limit, before anything is allocated: no product wraps to a small
# number (the conv case below died of SIGSEGV), and no message shows a negative count.
sizes() { # sizes PATTERN -- ARGS...: a refused model, its message, and no negative number
    pattern=$1
    shift 2
    within 60 2 "$pattern" -- "$DPMPTOP" --headless --steps 2 "$@"
    if grep -Eq -- '-[0-9]{3,}' "$work/err"; then
        fail "a negative count in the message: $*"
        sed 's/^/    stderr: /' "$work/err" >&2
    fi
}
sizes 'layer 0 \(conv:5478275:1\): gives 4294967600 values per sample \(at most 16777216\)' -- \
    --devices cpu:1 --set data.limit=256 --set data.batch=1 \
    --set model.layers='conv:5478275:1, flatten, linear:10'
sizes 'layer 0 \(conv:8:1000000:1:500000\): has [0-9]+ parameters \(at most 2147483647\)' -- \
    --devices cpu:1 --set data.limit=256 --set model.layers='conv:8:1000000:1:500000, flatten, linear:10'
sizes 'layer 1 \(linear:16000000\): has 12560000000 parameters \(at most 2147483647\)' -- \
    --devices cpu:1 --set data.limit=256 --set model.layers='flatten, linear:16000000, linear:10'
# text: attention's scores over a long context, an embedding's table, a context x width
python3 -c "import random; r = random.Random(3); w = 'a the of pipeline device stage'.split()
open('$work/long.txt', 'w').write(' '.join(r.choice(w) for _ in range(60000)))"
text="--devices cpu:1 --set data.kind=text --set data.path=$work/long.txt --set data.batch=2"
sizes 'layer 1 \(attn:1024\): needs [0-9]+ floats of working memory per sample \(at most 2147483647\)' -- \
    $text --set data.context=16384 --set model.layers='embed:256:1024, attn:1024, linear:256'
sizes 'layer 0 \(embed:16777216:256\): has 4294967296 parameters \(at most 2147483647\)' -- \
    $text --set data.context=64 --set model.layers='embed:16777216:256, linear:256'
sizes 'layer 0 \(embed:256:2048\): gives 33554432 values per sample \(at most 16777216\)' -- \
    $text --set data.context=16384 --set model.layers='embed:256:2048, linear:256'
sizes 'layer 1 \(res\(linear:16777216, linear:64\)\): layer 0 \(linear:16777216\): gives 1073741824' -- \
    $text --set data.context=64 --set model.layers='embed:256:64, res(linear:16777216, linear:64), linear:256'
sizes 'layer 1 \(block:4\): layer 0 \(res\(ln, attn:4\)\): layer 1 \(attn:4\): has [0-9]+ parameters' -- \
    $text --set data.context=4 --set model.layers='embed:256:4194304, block:4, linear:256'
# a batch x width: each layer's buffers for a micro-batch, checked when the plan is made
sizes 'layer 0 \(linear\): micro-batches of 256 samples need 4096000000 floats in one buffer' -- \
    -c "$base" --set data.batch=256 --set model.layers='linear:16000000, relu, linear:10'
sizes 'micro-batches of 150 samples need 2400000000' -- -c "$base" --devices cpu:2 --strategy dp \
    --set data.batch=300 --set model.layers='linear:16000000, relu, linear:10'
# a plan cut short by the model says why: the default pp on 4 devices, 2 layers with parameters
within 60 0 '' -- "$DPMPTOP" --headless -c "$base" --devices cpu:4 --strategy pp
grep -q 'PP 2 stages' "$work/out" && grep -q '^  plan:  pp: 2 stages, not 4: the model has 2 layers with parameters' "$work/out" ||
    fail "the pp plan on cpu:4 does not say why it has 2 stages: $(head -5 "$work/out")"

canary_check "at the end"
finish
