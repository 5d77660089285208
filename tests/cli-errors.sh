#!/bin/sh
# cli-errors.sh -- bad command lines, configurations and data files: each gets one clear line
# naming the problem, exit status 2, and no output file where --save or --metrics pointed.
. "${srcdir:-.}/tests/lib.sh"

# A small valid run to break one key at a time (synthetic data, so no files are needed).
cat >"$work/good.ini" <<'INI'
[run]
steps = 3
[data]
kind = synthetic
features = 8
classes = 4
samples = 256
test_samples = 64
batch = 16
[model]
layers = linear:16, relu, linear:4
INI
expect_exit 0 "" -- "$DPMPTOP" -c "$work/good.ini"

# Replaces line $2 of good.ini with $3 (or appends when $2 is "+") into $1.
variant() {
    if [ "$2" = "+" ]; then
        { cat "$work/good.ini"; printf '%s\n' "$3"; } >"$1"
    else
        awk -v n="$2" -v t="$3" 'NR == n { print t; next } { print }' "$work/good.ini" >"$1"
    fi
}

variant "$work/a.ini" + "[bogus]"
expect_exit 2 "a\.ini:12: unknown section \[bogus\]" -- "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" 2 "stepz = 3"
expect_exit 2 "a\.ini:2: \[run\] has no key \"stepz\"; its keys are name, seed, steps" -- \
    "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" 9 "batch = 0"
expect_exit 2 "a\.ini:9: \[data\] batch = 0: expected a whole number from 1" -- \
    "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" + "[optim]
lr = -0.1"
expect_exit 2 "a\.ini:13: \[optim\] lr = -0.1: expected a number > 0" -- "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" 11 "layers = linear:16, relux, linear:4"
expect_exit 2 "a\.ini:11: \[model\] layers: layer 1 \(relux\): unknown layer kind" -- \
    "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" 11 "layers = linear:16, relu, linear:5"
expect_exit 2 "a\.ini:11: \[model\] layers: the last layer gives 5 outputs but the data has 4 classes" -- \
    "$DPMPTOP" -c "$work/a.ini"
variant "$work/a.ini" 2 "this line is not ini"
expect_exit 2 "a\.ini:2: not a \"key = value\" line" -- "$DPMPTOP" -c "$work/a.ini"

# Command-line mistakes.
expect_exit 2 "^dpmptop: -c: $work/missing.ini: cannot open: No such file" -- "$DPMPTOP" -c "$work/missing.ini"
expect_exit 2 "unknown option --bogus" -- "$DPMPTOP" --bogus
expect_exit 2 "--steps needs a value" -- "$DPMPTOP" --steps
expect_exit 2 "--set: \[optim\] lr = abc: expected a number" -- \
    "$DPMPTOP" -c "$work/good.ini" --set optim.lr=abc
expect_exit 2 "--set nolr: expected SECTION\.KEY=VALUE" -- "$DPMPTOP" --set nolr
expect_exit 2 "--steps: \[run\] steps = -4" -- "$DPMPTOP" -c "$work/good.ini" --steps -4
# cuda:0: refused by a build without CUDA (2); in a CUDA build without a GPU or driver, exit 1
# naming the CUDA error; with a GPU it trains (checked by tests/cuda.sh).
if "$DPMPTOP" --version | grep -q "without CUDA"; then
    expect_exit 2 "this build has no CUDA support" -- "$DPMPTOP" -c "$work/good.ini" --devices cuda:0
elif ! "$DPMPTOP" -c "$work/good.ini" --devices cuda:0 >/dev/null 2>&1; then
    expect_exit 1 "parallel.devices = cuda:0: CUDA: .*\(cuda[A-Za-z]*\)" -- \
        "$DPMPTOP" -c "$work/good.ini" --devices cuda:0
    expect_exit 0 "no usable GPU \(CUDA: .*\); using 2 CPU devices" -- \
        "$DPMPTOP" -c "$work/good.ini" --devices auto
fi
expect_exit 0 "" -- "$DPMPTOP" --help
grep -q "^Usage: dpmptop" "$work/out" || fail "--help prints no usage"
expect_exit 0 "" -- "$DPMPTOP" --version
grep -Eq "^dpmptop [0-9]+\.[0-9]+" "$work/out" || fail "--version prints no version"

# Plans that cannot be made are refused before any work (good.ini: 2 linear layers, batch 16).
expect_exit 2 "\[parallel\]: pp runs one stage per device: 3 stages need 3 devices, and there are 2" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:2 --strategy pp --stages 3
expect_exit 2 "\[parallel\]: 3 stages but the model has only 2 layers with parameters" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:4 --strategy pp --stages 3
expect_exit 2 "\[parallel\]: hybrid needs the devices \(3\) to be a multiple of the stages \(2\)" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:3 --strategy hybrid
expect_exit 2 "\[parallel\]: a batch of 16 cannot feed 2 replicas x 9 micro-batches" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:4 --strategy hybrid --microbatches 9
expect_exit 2 "\[parallel\]: a batch of 16 cannot feed 17 replicas x 1 micro-batch" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:17 --strategy dp
expect_exit 2 "--measure-peak takes no other options or arguments" -- \
    "$DPMPTOP" --measure-peak --bogus
expect_exit 2 "--measure-peak takes no other options or arguments" -- \
    "$DPMPTOP" -c "$work/good.ini" --measure-peak
expect_exit 2 "--switch-at 5:bogus: \"5:bogus\" is not STEP:STRATEGY" -- \
    "$DPMPTOP" -c "$work/good.ini" --switch-at 5:bogus
expect_exit 2 "--switch-at 2:dp,2:pp: \"2:pp\" is not STEP:STRATEGY with steps increasing" -- \
    "$DPMPTOP" -c "$work/good.ini" --switch-at 2:dp,2:pp
expect_exit 2 "--switch-at 3:pp: 3 stages but the model has only 2 layers" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:4 --stages 3 --switch-at 3:pp
# Without --stages, pp cuts the model into as many stages as it can (2 here, on cpu:0 and 1).
expect_exit 0 "" -- "$DPMPTOP" -c "$work/good.ini" --devices cpu:4 --strategy pp
grep -q "on 4 devices (cpu:0..cpu:3), PP 2 stages, 4 micro, 1F1B" "$work/out" ||
    fail "pp on cpu:4 with 2 layers did not make 2 stages: $(head -n 1 "$work/out")"
expect_exit 2 "parallel.devices = cpu:65: expected auto, cpu:N with N from 1 to 64" -- \
    "$DPMPTOP" -c "$work/good.ini" --devices cpu:65

# --print-config writes a file that reads back to the same configuration.
"$DPMPTOP" -c "$work/good.ini" --set optim.lr=0.25 --print-config >"$work/p1.ini" ||
    fail "--print-config failed"
"$DPMPTOP" -c "$work/p1.ini" --print-config >"$work/p2.ini" || fail "printed config does not load"
cmp -s "$work/p1.ini" "$work/p2.ini" || fail "--print-config does not round-trip"
grep -q "^lr = 0.25$" "$work/p1.ini" || fail "--print-config lacks the --set value"

# Data files: a missing directory, a truncated IDX file, an IDX file of the wrong type.
datadir="$work/idx"
mkdir -p "$datadir"
cat >"$work/idx.ini" <<INI
[run]
steps = 2
[data]
kind = idx
path = $datadir
batch = 4
[model]
layers = linear:3
INI
# Writes an IDX file: $1 path, $2 type byte (octal escape), $3 dims as "d1 d2 ...", $4 bytes of data.
write_idx() {
    {
        printf '\000\000'
        printf "$2"
        set -- "$1" "$2" "$3" "$4"
        ndim=$(echo "$3" | wc -w)
        printf "\\$(printf '%03o' "$ndim")"
        for d in $3; do
            printf "\\$(printf '%03o' $((d >> 24 & 255)))\\$(printf '%03o' $((d >> 16 & 255)))"
            printf "\\$(printf '%03o' $((d >> 8 & 255)))\\$(printf '%03o' $((d & 255)))"
        done
        head -c "$4" /dev/zero
    } >"$1"
}
write_idx "$datadir/train-images-idx3-ubyte" '\010' "8 2 2" 32
write_idx "$datadir/train-labels-idx1-ubyte" '\010' "8" 8
write_idx "$datadir/t10k-images-idx3-ubyte" '\010' "4 2 2" 16
printf '\002' | dd of="$datadir/train-labels-idx1-ubyte" bs=1 seek=10 conv=notrunc 2>/dev/null
write_idx "$datadir/t10k-labels-idx1-ubyte" '\010' "4" 4
expect_exit 0 "" -- "$DPMPTOP" -c "$work/idx.ini"
write_idx "$datadir/t10k-images-idx3-ubyte" '\010' "4 2 2" 10
expect_exit 2 "t10k-images-idx3-ubyte: truncated: the header announces 16 data bytes but the file holds 10" -- \
    "$DPMPTOP" -c "$work/idx.ini"
write_idx "$datadir/t10k-images-idx3-ubyte" '\015' "4 2 2" 64
expect_exit 2 "IDX data type 0x0d is not supported" -- "$DPMPTOP" -c "$work/idx.ini"
expect_exit 2 "$work/nowhere: No such file or directory; data.path must name a directory" -- "$DPMPTOP" -c "$work/idx.ini" \
    --set data.path="$work/nowhere"

# --init: unreadable and wrong-shaped files; nothing is left where --save and --metrics point.
expect_exit 2 "--init $work/none\.safetensors: cannot open" -- "$DPMPTOP" -c "$work/good.ini" \
    --init "$work/none.safetensors" --save "$work/out.safetensors" --metrics "$work/m.jsonl"
"$DPMPTOP" -c "$work/good.ini" --save "$work/w.safetensors" >/dev/null || fail "--save failed"
expect_exit 2 "tensor \"0\.weight\" has shape \[16, 8\] but the model needs \[32, 8\]" -- \
    "$DPMPTOP" -c "$work/good.ini" --set "model.layers=linear:32, relu, linear:4" \
    --init "$work/w.safetensors" --save "$work/out.safetensors" --metrics "$work/m.jsonl"
variant "$work/a.ini" 9 "batch = 0"
expect_exit 2 "batch = 0" -- "$DPMPTOP" -c "$work/a.ini" --save "$work/out.safetensors" \
    --metrics "$work/m.jsonl"
for f in out.safetensors m.jsonl; do
    [ ! -e "$work/$f" ] || fail "$f was left behind by a refused run"
done
expect_exit 2 "--save $work/no/dir/w\.safetensors: cannot create a file there" -- \
    "$DPMPTOP" -c "$work/good.ini" --save "$work/no/dir/w.safetensors"
expect_exit 2 "--save $work: is a directory" -- "$DPMPTOP" -c "$work/good.ini" --save "$work"
expect_exit 2 "^dpmptop: -c: $work: is a directory, not a regular file" -- "$DPMPTOP" -c "$work"

# Options naming one file or directory may be given once: a second is refused, naming both,
# and nothing is written where either pointed.
cp "$work/good.ini" "$work/b.ini"
expect_exit 2 "^dpmptop: -c given twice: $work/good\.ini and $work/b\.ini; give one\$" -- \
    "$DPMPTOP" -c "$work/good.ini" --config "$work/b.ini"
for opt in --save --metrics --init --checkpoint-dir; do
    expect_exit 2 "^dpmptop: $opt given twice: $work/one and $work/two; give one\$" -- \
        "$DPMPTOP" -c "$work/good.ini" "$opt" "$work/one" "$opt=$work/two"
    [ ! -e "$work/one" ] && [ ! -e "$work/two" ] || fail "$opt twice left a file behind"
done
expect_exit 2 "^dpmptop: --resume given twice; give it once\$" -- \
    "$DPMPTOP" -c "$work/good.ini" --resume "$work" --resume
# A value longer than any option or key takes is refused whole, never cut to fit.
long=$(head -c 5000 /dev/zero | tr '\0' 1)
expect_exit 2 "^dpmptop: --set: a value of 5011 characters; no option or key takes more than 4096\$" -- \
    "$DPMPTOP" -c "$work/good.ini" --set "optim.lr=0.$long"

# A refused run leaves an existing metrics file as it was; a run that cannot write its
# metrics (a full disk) fails with exit 1 and leaves the file as it was.
echo '{"type":"old"}' >"$work/old.jsonl"
expect_exit 2 "batch = 0" -- "$DPMPTOP" -c "$work/a.ini" --metrics "$work/old.jsonl"
[ "$(cat "$work/old.jsonl")" = '{"type":"old"}' ] || fail "a refused run changed --metrics's file"
(
    ulimit -f 1 # no file past 512 or 1024 bytes: the metrics cannot all be written
    "$DPMPTOP" -c "$work/good.ini" --metrics "$work/old.jsonl" >/dev/null 2>"$work/full.out"
    echo $? >"$work/full.status"
)
[ "$(cat "$work/full.status")" = 1 ] &&
    grep -q -- "--metrics $work/old.jsonl: cannot write: File too large; the previous file" \
        "$work/full.out" || fail "full disk, --metrics: exit $(cat "$work/full.status")"
[ "$(cat "$work/old.jsonl")" = '{"type":"old"}' ] || fail "a failed run changed --metrics's file"
# a device other than a terminal or /dev/null is no place for an output
if [ -c /dev/full ]; then
    expect_exit 2 "--metrics /dev/full: a device that is not a terminal or /dev/null" -- \
        "$DPMPTOP" -c "$work/good.ini" --metrics /dev/full
    [ -c /dev/full ] || fail "/dev/full is no longer a character device"
fi

# Out of memory (an address-space limit makes the activations' allocation fail): the device, the
# bytes, the bytes a row takes, and what would help.
(
    ulimit -v 1500000
    "$DPMPTOP" --headless --devices cpu:1 --set data.kind=synthetic --set data.samples=2000 \
        --set data.features=100 --set "model.layers=linear:20000, relu, linear:10" \
        --set data.batch=20000 --steps 1 >"$work/oom.out" 2>&1
    echo $? >"$work/oom.status"
)
[ "$(cat "$work/oom.status")" = 1 ] || fail "out of memory: exit $(cat "$work/oom.status")"
grep -q "cpu:0: out of memory for the activations of micro-batches of 20000 rows ([0-9]* bytes, [0-9]* a row.*\[parallel\] microbatches.*--strategy pp" \
    "$work/oom.out" || fail "out of memory: $(tail -n 1 "$work/oom.out")"
finish
