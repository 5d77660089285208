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

# family NAME: the cases from here on count for family NAME (printed by the end's summary)
family_name= family_start=0 families=
family() {
    [ -n "$family_name" ] && families="$families $family_name $((checks - family_start)),"
    family_name=$1 family_start=$checks
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
family configuration

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
family data

# write_idx DIR: the four MNIST-named IDX files of 4x4 images (60 training, 20 test, labels 0-9).
write_idx() {
    python3 - "$1" <<'PY' || fail "could not write IDX files in $1"
import os, random, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rnd = random.Random(11)
for split, n in (('train', 60), ('t10k', 20)):
    open(f'{d}/{split}-images-idx3-ubyte', 'wb').write(
        struct.pack('>BBBBIII', 0, 0, 8, 3, n, 4, 4) + rnd.randbytes(16 * n))
    open(f'{d}/{split}-labels-idx1-ubyte', 'wb').write(
        struct.pack('>BBBBI', 0, 0, 8, 1, n) + bytes(rnd.randrange(10) for _ in range(n)))
PY
}
# A FIFO, a device or a directory as a data file is refused (exit 2) before training, without
# blocking in open().
write_idx "$work/idx-fifo"
rm "$work/idx-fifo/train-images-idx3-ubyte"
mkfifo "$work/idx-fifo/train-images-idx3-ubyte"
for kind in idx mnist fashion-mnist; do
    within 20 2 'train-images-idx3-ubyte: is a named pipe, not a regular file' -- \
        "$DPMPTOP" --headless -c "$base" --set data.kind=$kind --set data.path="$work/idx-fifo"
done
write_idx "$work/idx-dir"
rm "$work/idx-dir/t10k-labels-idx1-ubyte"
mkdir "$work/idx-dir/t10k-labels-idx1-ubyte"
within 20 2 't10k-labels-idx1-ubyte: is a directory, not a regular file' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=idx --set data.path="$work/idx-dir"
write_cifar "$work/cifar-fifo" 2 2
rm "$work/cifar-fifo/data_batch_3.bin"
mkfifo "$work/cifar-fifo/data_batch_3.bin"
within 20 2 'data_batch_3.bin: is a named pipe' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=cifar10 --set data.path="$work/cifar-fifo"
mkfifo "$work/text.fifo"
within 20 2 'text.fifo: is a named pipe' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path="$work/text.fifo"
within 20 2 '/dev/zero: is a device, not a regular file' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path=/dev/zero
# In a directory of texts a FIFO is skipped like a link: alone it leaves no text; beside a
# text file it is passed over without blocking.
mkdir "$work/text-dir"
mkfifo "$work/text-dir/a.fifo"
within 20 2 'text-dir: no text files in this directory' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path="$work/text-dir"
write_text "$work/text-dir/b.txt" 3000
within 30 0 '' -- \
    "$DPMPTOP" --headless -c "$base" --steps 1 --set data.kind=text --set data.context=16 \
    --set data.path="$work/text-dir" --set model.layers='embed:256:8, linear:256'
grep -q 'done: 1 steps' "$work/out" || fail "the text directory with a FIFO did not train"
# A compressed stream that ends early, or with bytes after it, is refused naming the file.
gzip -c "$work/text-dir/b.txt" | head -c 1000 >"$work/cut.txt.gz"
within 20 2 'cut.txt.gz: truncated: the compressed stream ends early' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path="$work/cut.txt.gz"
{ gzip -c "$work/text-dir/b.txt"; echo trailing; } >"$work/tail.txt.gz"
within 20 2 'tail.txt.gz: damaged: bytes that are not gzip data follow' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path="$work/tail.txt.gz"
write_idx "$work/idx-gz"
gzip -c "$work/idx-gz/train-images-idx3-ubyte" | head -c 500 \
    >"$work/idx-gz/train-images-idx3-ubyte.gz"
rm "$work/idx-gz/train-images-idx3-ubyte"
within 20 2 'train-images-idx3-ubyte.gz: truncated' -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=idx --set data.path="$work/idx-gz"
# Sizes from the configuration are checked in 64 bits, and refused with the limit.
within 20 2 'data.samples = 1000000000 samples of .* more than the 4294967296 values' -- \
    "$DPMPTOP" --headless -c "$base" --set data.samples=1000000000 --set data.features=1048576
within 20 2 'data.batch = 1048576 samples of 8192 values each is more than the 4294967296' -- \
    "$DPMPTOP" --headless -c "$base" --set data.samples=2 --set data.test_samples=2 \
    --set data.features=8192 --set data.batch=1048576
grep -q -- '-[0-9]' "$work/err" && fail "a negative number in: $(cat "$work/err")"

# ---- weights ----
family weights

# write_weights FILE CASE: safetensors for base.ini's model (0.weight [16,10], 0.bias [16],
# 2.weight [10,16], 2.bias [10]) with contiguous offsets and finite values, but for CASE:
# offset0 (every tensor at offset 0), gap (4 bytes before 0.bias), nan (0.weight[7]) or inf
# (+Inf in 2.bias[9]).
write_weights() {
    python3 - "$@" <<'PY' || fail "could not write $1"
import json, struct, sys
path, case = sys.argv[1], sys.argv[2]
shapes = [('0.weight', [16, 10], 160), ('0.bias', [16], 16), ('2.weight', [10, 16], 160),
          ('2.bias', [10], 10)]
values = [0.01 * (i % 7) for i in range(346)]
header, at = {}, 0
for name, shape, n in shapes:
    if case == 'gap' and name == '0.bias':
        at += 4
    begin = 0 if case == 'offset0' else at
    header[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [begin, begin + 4 * n]}
    at = begin + 4 * n
if case == 'nan':
    values[7] = float('nan')
if case == 'inf':
    values[-1] = float('inf')
data = struct.pack(f'<{len(values)}f', *values)
if case == 'gap':
    data = data[:640] + bytes(4) + data[640:]
j = json.dumps(header).encode()
j += b' ' * (-len(j) % 8)
open(path, 'wb').write(struct.pack('<Q', len(j)) + j + data)
PY
}
mkfifo "$work/init.fifo"
within 20 2 'init.fifo: is a named pipe' -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/init.fifo"
within 20 2 '/dev/zero: is a device' -- "$DPMPTOP" --headless -c "$base" --init /dev/zero
write_weights "$work/offset0.safetensors" offset0
within 20 2 'offset0.safetensors: tensor "0.bias" \(data_offsets \[0, 64\]\) overlaps' -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/offset0.safetensors"
write_weights "$work/gap.safetensors" gap
within 20 2 'gap.safetensors: tensor "0.bias" begins at byte 644, leaving a gap of 4 bytes' -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/gap.safetensors"
write_weights "$work/nan.safetensors" nan
within 20 2 'nan.safetensors: tensor 0.weight holds NaN at index 7 \(\[0, 7\]\)' -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/nan.safetensors"
write_weights "$work/inf.safetensors" inf
within 20 2 'inf.safetensors: tensor 2.bias holds \+Inf at index 9 \(\[9\]\)' -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/inf.safetensors"
write_weights "$work/good.safetensors" good
within 20 0 '' -- "$DPMPTOP" --headless -c "$base" --init "$work/good.safetensors"
# A NaN in a checkpoint's model or optimizer state stops --resume the same way.
# poke_nan FILE INDEX: writes a NaN over float INDEX of FILE's data section.
poke_nan() {
    python3 - "$@" <<'PY' || fail "could not write a NaN into $1"
import struct, sys
path, index = sys.argv[1], int(sys.argv[2])
b = bytearray(open(path, 'rb').read())
at = 8 + struct.unpack('<Q', b[:8])[0] + 4 * index
b[at:at + 4] = struct.pack('<f', float('nan'))
open(path, 'wb').write(b)
PY
}
for file in model optimizer; do
    ck="$work/nan-$file"
    "$DPMPTOP" --headless -c "$base" --set optim.momentum=0.9 --checkpoint-dir "$ck" \
        --set checkpoint.every=1 --steps 2 >/dev/null 2>&1 </dev/null ||
        fail "could not write the checkpoints in $ck"
    poke_nan "$ck/step-00000002/$file.safetensors" 170 # 0.bias[10]
    [ "$file" = model ] && tensor=0.bias || tensor=0.bias.momentum_buffer
    within 20 2 "$file.safetensors: tensor $tensor holds NaN at index 10 \(\[10\]\)" -- \
        "$DPMPTOP" --headless -c "$base" --set optim.momentum=0.9 --checkpoint-dir "$ck" \
        --resume --steps 4
done

# ---- checkpoints ----
family checkpoints

# another run's checkpoints: a new run refuses the directory, naming them, and writes nothing
cp -r "$work/other-run" "$work/ck-other"
expect_exit 2 "holds another run's checkpoints: .*step-00000002 \(run [0-9a-f]{16}\).*add --resume" -- \
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
expect_exit 2 "entries it did not write: step-00000001 \(a symbolic link, not a checkpoint\); .*move them away" -- \
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
# ... and a resumed run that could come to write over it refuses to start
expect_exit 2 "holds entries it did not write after step 5.*step-00000099 \(damaged: no model.safetensors\)" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-own" --checkpoint-dir "$work/ck-own" \
    --steps 6
grep -q "^step" "$work/out" && fail "a resumed run trained before refusing its checkpoint directory"
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
sed -i 's/^step = 4611686018427387904$/step = 5/; s/^processes = 1$/processes = 0/' \
    "$work/ck-huge/state.ini"
expect_exit 2 "state.ini:[0-9]+: not a dpmptop checkpoint's state" -- \
    "$DPMPTOP" --headless -c "$base" --resume "$work/ck-huge" --steps 9
no_temporaries "$work"

# ---- output paths ----
family output-paths

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
# /dev/stdout is the stream itself, never a name to rename over, whatever stdout is
within 60 0 "" -- sh -c "\"$DPMPTOP\" --headless -c \"$base\" --metrics /dev/stdout >\"$work/stdout.txt\""
[ -L /dev/stdout ] || fail "--metrics /dev/stdout replaced the link /dev/stdout"
grep -q '"type":"summary"' "$work/stdout.txt" || fail "--metrics /dev/stdout: no metrics in the stream"
# a link is written through: its target gets the file, the link stays a link
: >"$work/target.jsonl"
ln -s "$work/target.jsonl" "$work/link.jsonl"
within 60 0 "" -- "$DPMPTOP" --headless -c "$base" --metrics "$work/link.jsonl"
[ -L "$work/link.jsonl" ] && grep -q '"type":"summary"' "$work/target.jsonl" ||
    fail "--metrics through a link: the link was replaced or its target not written"
# hard links and the data directory count as inputs too
ln "$work/cfg.ini" "$work/cfg-hard"
expect_exit 2 "--metrics $work/cfg-hard: that is the configuration" -- \
    "$DPMPTOP" --headless -c "$work/cfg.ini" --metrics "$work/cfg-hard"
mkdir -p "$work/textdir"
write_text "$work/textdir/a.txt" 3000
expect_exit 2 "--save $work/textdir/m.safetensors: that is a name in the data directory that is read as data" -- \
    "$DPMPTOP" --headless -c "$base" --set data.kind=text --set data.path="$work/textdir" \
    --set "model.layers=embed:256:8, linear:256" --save "$work/textdir/m.safetensors"
# a place where no directory can be made, though permissions say yes (root in /proc)
within 10 2 "checkpoint.dir /proc: cannot write there" -- \
    "$DPMPTOP" --headless -c "$base" --checkpoint-dir /proc
# a weights file far larger than the model's is refused before it is read into memory
cp "$work/w.safetensors" "$work/huge.safetensors"
truncate -s 4G "$work/huge.safetensors"
within 10 2 "huge.safetensors: 4294967296 bytes is larger than the [0-9]+ this reader accepts" -- \
    "$DPMPTOP" --headless -c "$base" --init "$work/huge.safetensors"
rm -f "$work/huge.safetensors"
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
family signals

# a second Ctrl-C removes the temporaries of --metrics and of a checkpoint being written
mkdir -p "$work/sig"
"$DPMPTOP" --headless -c "$base" --steps 1000000 --checkpoint-dir "$work/sig/ck" \
    --set checkpoint.every=1 --set "model.layers=linear:2048, relu, linear:2048, relu, linear:10" \
    --metrics "$work/sig/m.jsonl" --save "$work/sig/w.safetensors" >/dev/null 2>&1 &
pid=$!
wait_for_checkpoint_write "$work/sig/ck" 3000 0.01
kill -INT $pid
sleep 0.02
kill -INT $pid
wait $pid
status=$?
[ $status -eq 130 ] || fail "two SIGINTs: exit $status, wanted 130"
ls "$work/sig" | grep -q '^m.jsonl.tmp' && fail "two SIGINTs left --metrics's temporary file"
no_temporaries "$work/sig"
# a signal while the run is still setting up (a large synthetic set being made) stops it
# before its first step, saying so; two SIGTERMs then leave no temporary file either
big="--set data.samples=500000 --set data.features=100 --steps 300"
for sigs in "INT" "TERM TERM" "HUP"; do
    rm -rf "$work/early" && mkdir "$work/early"
    # shellcheck disable=SC2086 # the options are words
    "$DPMPTOP" --headless -c "$base" $big --metrics "$work/early/m.jsonl" \
        >"$work/early/out" 2>&1 &
    pid=$!
    wait_for_handlers $pid
    for sig in $sigs; do
        kill -"$sig" $pid
        sleep 0.1
    done
    wait $pid
    status=$?
    [ $status -eq 130 ] || fail "SIG$sigs during the setup: exit $status, wanted 130"
    case $sigs in *" "*) ;; *)
        grep -q "interrupted before its first step (at step 0): nothing was trained" \
            "$work/early/out" || fail "SIG$sigs during the setup: $(tail -n 1 "$work/early/out")"
        grep -q '"final_loss":null' "$work/early/m.jsonl" || fail "SIG$sigs: a loss in metrics"
    esac
    no_temporaries "$work/early"
done
# a metrics pipe whose reader goes away ends the run with the error, not a silent SIGPIPE death
mkfifo "$work/short.fifo"
head -c 100 "$work/short.fifo" >/dev/null &
within 60 1 "--metrics $work/short.fifo: cannot write: Broken pipe" -- \
    "$DPMPTOP" --headless -c "$base" --steps 100000 --metrics "$work/short.fifo"

# closed standard descriptors: the metrics file must not take descriptor 1 and get the
# progress lines
"$DPMPTOP" --headless -c "$base" --steps 3 --metrics "$work/closed.jsonl" >&- 2>&- <&-
status=$?
[ $status -eq 0 ] || fail "closed stdout, stderr and stdin: exit $status, wanted 0"
grep -qv '^{' "$work/closed.jsonl" && fail "closed stdout: text in the metrics: $(grep -v '^{' "$work/closed.jsonl" | head -n 1)"
checks=$((checks + 1))

# ---- numerics ----
family numerics

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
family model-sizes
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

family end
echo "hostile cases by family:$families total $checks"
canary_check "at the end"
finish
