#!/bin/sh
# malformed.sh -- hostile input through the program: truncated, oversized, negative,
# overflowing and wrongly typed variants of every file format dpmptop reads (safetensors for
# --init, IDX data, CIFAR-10 batches, a checkpoint's state.ini and tensors for --resume; a
# good CIFAR-10 directory trains) and hostile
# configurations (huge numbers, empty values, duplicate keys, a 1 MB line). Each must end with
# exit 2 and a one-line message naming the file, never a signal.
. "${srcdir:-.}/tests/lib.sh"

python3 - "$work" <<'PY'
import gzip, json, os, struct, sys
w = sys.argv[1]
def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').write(data if isinstance(data, bytes) else data.encode())

# safetensors for the model linear:4, relu, linear:3 on 5 inputs
shapes = [('0.weight', [4, 5]), ('0.bias', [4]), ('2.weight', [3, 4]), ('2.bias', [3])]
def st(header, data=b'', raw_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if raw_len is None else raw_len
    return struct.pack('<Q', n) + h + data
def good_header(dtype='F32', shapes=shapes):
    hdr, at = {}, 0
    for name, shape in shapes:
        size = 4
        for d in shape:
            size *= d
        hdr[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [at, at + size]}
        at += size
    return hdr, at
hdr, total = good_header()
data = b'\0' * total
v = {
    'empty': b'',
    'short': b'\1\2\3',
    'huge-header-length': st(hdr, data, raw_len=2**63),
    'header-past-end': st(hdr, data, raw_len=len(json.dumps(hdr)) + 10**6),
    'not-json': st(b'this is not json', data),
    'f16': st(good_header('F16')[0], data),
    'negative-shape': st(json.dumps(hdr).replace('[4, 5]', '[-4, 5]').encode(), data),
    'overflowing-shape': st(json.dumps(hdr).replace('[4, 5]', '[99999999999999999999999, 5]').encode(), data),
    'reversed-offsets': st(json.dumps(hdr).replace('"data_offsets": [0, 80]', '"data_offsets": [80, 0]').encode(), data),
    'offsets-past-data': st(hdr, data[:-8]),
    'missing-tensor': st({k: x for k, x in hdr.items() if k != '2.bias'}, data),
    'extra-tensor': st(dict(hdr, **{'9.weight': {'dtype': 'F32', 'shape': [1], 'data_offsets': [0, 4]}}), data),
    'deep-metadata': st(b'{"__metadata__":' + b'[' * 100000 + b']' * 100000 + b'}', data),
    'wrong-type-shape': st(json.dumps(hdr).replace('[4, 5]', '"four"').encode(), data),
}
for name, blob in v.items():
    put(f'{w}/st/{name}.safetensors', blob)

# IDX sets: each a directory of the four files, one of them spoilt
def idx(dims, payload=None, kind=8):
    body = struct.pack('>BBBB', 0, 0, kind, len(dims)) + b''.join(struct.pack('>I', d) for d in dims)
    if payload is None:
        n = 1
        for d in dims:
            n *= d
        payload = bytes(n)
    return body + payload
good = {
    'train-images-idx3-ubyte': idx([6, 2, 2]), 'train-labels-idx1-ubyte': idx([6], bytes([0, 1, 2, 0, 1, 2])),
    't10k-images-idx3-ubyte': idx([3, 2, 2]), 't10k-labels-idx1-ubyte': idx([3], bytes([0, 1, 2])),
}
spoilt = {
    'empty': ('train-images-idx3-ubyte', b''),
    'truncated-header': ('train-images-idx3-ubyte', idx([6, 2, 2])[:9]),
    'truncated-data': ('train-images-idx3-ubyte', idx([6, 2, 2])[:-3]),
    'too-long': ('train-images-idx3-ubyte', idx([6, 2, 2]) + b'extra'),
    'huge-dims': ('train-images-idx3-ubyte', idx([0xffffffff, 0xffffffff, 2], b'')),
    'zero-dim': ('train-images-idx3-ubyte', idx([6, 0, 2], b'')),
    'wrong-type': ('train-images-idx3-ubyte', idx([6, 2, 2], kind=0x0d)),
    'five-dims': ('train-images-idx3-ubyte', idx([1, 1, 1, 1, 1])),
    'label-count': ('train-labels-idx1-ubyte', idx([5], bytes(5))),
    'bad-gzip': ('train-images-idx3-ubyte.gz', b'\x1f\x8b\x08\x00garbage'),
}
for name, (which, blob) in spoilt.items():
    for f, b in good.items():
        if f != which.replace('.gz', ''):
            put(f'{w}/idx/{name}/{f}', b)
    put(f'{w}/idx/{name}/{which}', blob)

# CIFAR-10 directories: a good one, and copies with one batch spoilt
rec = bytes([3]) + bytes((i * 7) % 256 for i in range(3072))
cifar = {f'data_batch_{b}.bin': rec * 4 for b in range(1, 6)}
cifar['test_batch.bin'] = rec * 2
for f, b in cifar.items():
    put(f'{w}/cifar-good/{f}', b)
bad_cifar = {
    'empty': ('data_batch_2.bin', b''),
    'truncated': ('data_batch_2.bin', rec * 2 + rec[:100]),
    'label-10': ('test_batch.bin', bytes([10]) + rec[1:]),
    'missing': ('data_batch_5.bin', None),
}
for name, (which, blob) in bad_cifar.items():
    for f, b in cifar.items():
        if f != which:
            put(f'{w}/cifar/{name}/{f}', b)
    if blob is not None:
        put(f'{w}/cifar/{name}/{which}', blob)

# texts: too short for the context, empty, a directory of binary files only, and a .gz that
# is not gzip data past its header
put(f'{w}/text/short.txt', b'just a few words, not enough for a context of 32 bytes')
put(f'{w}/text/good.txt', b'enough words for a few windows of 32 bytes each. ' * 40)
put(f'{w}/text/empty.txt', b'')
put(f'{w}/text/binary-only/a.dat', bytes(range(256)) * 4)
put(f'{w}/text/broken.gz', b'\x1f\x8b\x08\x00' + bytes(200))
# checkpoints: a good one is made by the run below; these spoil copies of it
# configurations
put(f'{w}/cfg/huge.ini', '[run]\nsteps = 1e400\n')
put(f'{w}/cfg/huge-int.ini', '[data]\nbatch = 99999999999999999999999999\n')
put(f'{w}/cfg/negative.ini', '[data]\nbatch = -3\n')
put(f'{w}/cfg/empty-value.ini', '[optim]\nlr =\n')
put(f'{w}/cfg/duplicate.ini', '[run]\nsteps = 5\nsteps = 6\n')
put(f'{w}/cfg/long-line.ini', '[run]\nname = ' + 'x' * (1 << 20) + '\n')
put(f'{w}/cfg/binary.ini', bytes(range(256)) * 8)
put(f'{w}/cfg/nul.ini', b'[run]\nsteps = 5\0\n')
PY

# One line of stderr, exit 2, no signal.
hostile() { # WHAT PATTERN COMMAND...
    what=$1 pattern=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err" </dev/null
    got=$?
    if [ $got -ne 2 ] || [ "$(wc -l <"$work/err")" -ne 1 ] || ! grep -Eq -- "$pattern" "$work/err"; then
        fail "$what: exit $got: $(head -c 300 "$work/err")"
    fi
}
model="--set data.kind=synthetic --set data.features=5 --set data.classes=3 --set data.samples=60"
layers="linear:4, relu, linear:3"
for f in "$work"/st/*.safetensors; do
    # shellcheck disable=SC2086
    hostile "--init $(basename "$f")" "^dpmptop: --init $f: " \
        "$DPMPTOP" --headless --devices cpu:1 $model --set "model.layers=$layers" --init "$f"
done
for d in "$work"/idx/*/; do
    hostile "IDX $(basename "$d")" "^dpmptop: .*$(basename "$d")/" \
        "$DPMPTOP" --headless --devices cpu:1 --set data.kind=idx --set "data.path=$d" \
        --set "model.layers=linear:8, relu, linear:3" --set data.batch=2
done
cifar="--set data.kind=cifar10 --set model.layers=linear:16,relu,linear:10 --set data.batch=4"
# shellcheck disable=SC2086
expect_exit 0 "" -- "$DPMPTOP" --headless --devices cpu:1 $cifar --set "data.path=$work/cifar-good" \
    --steps 3
for d in "$work"/cifar/*/; do
    # shellcheck disable=SC2086
    hostile "CIFAR $(basename "$d")" "^dpmptop: .*$(basename "$d")/" \
        "$DPMPTOP" --headless --devices cpu:1 $cifar --set "data.path=$d"
done
text="--set data.kind=text --set data.context=32 --set model.layers=embed:256:8,linear:256"
for f in "$work"/text/short.txt "$work"/text/empty.txt "$work"/text/binary-only \
    "$work"/text/broken.gz "$work"/text/none.txt; do
    # shellcheck disable=SC2086
    hostile "text $(basename "$f")" "^dpmptop: $f: " \
        "$DPMPTOP" --headless --devices cpu:1 $text --set "data.path=$f"
done
# the model must predict every position of a text
# shellcheck disable=SC2086
hostile "text with a per-sample model" "text needs a prediction for each of its 32 positions" \
    "$DPMPTOP" --headless --devices cpu:1 $text --set "data.path=$work/text/good.txt" \
    --set "model.layers=linear:256"
for f in "$work"/cfg/*.ini; do
    hostile "config $(basename "$f")" "^dpmptop: $f(:[0-9]+)?: " "$DPMPTOP" -c "$f" --headless
done

# checkpoints: spoil copies of a good one
# shellcheck disable=SC2086
"$DPMPTOP" --headless --devices cpu:1 $model --set "model.layers=$layers" --steps 3 \
    --set optim.momentum=0.9 --checkpoint-dir "$work/ck" >/dev/null 2>&1 || fail "no checkpoint"
good=$work/ck/step-00000003
spoil() { # NAME FILE CONTENT-COMMAND: a copy of the good checkpoint with FILE replaced
    rm -rf "$work/bad/$1"
    mkdir -p "$work/bad"
    cp -r "$good" "$work/bad/$1"
    eval "$3" >"$work/bad/$1/$2"
}
spoil state-empty state.ini "true"
spoil state-negative state.ini "sed 's/^step = 3/step = -3/' $good/state.ini"
spoil state-overflow state.ini "sed 's/^position = .*/position = 99999999999999999999999/' $good/state.ini"
spoil state-words state.ini "sed 's/^epoch = .*/epoch = three/' $good/state.ini"
spoil state-format state.ini "sed 's/^format = 1/format = 7/' $good/state.ini"
spoil state-position state.ini "sed 's/^position = .*/position = 60/' $good/state.ini"
spoil model-truncated model.safetensors "head -c 100 $good/model.safetensors"
spoil optimizer-truncated optimizer.safetensors "head -c 50 $good/optimizer.safetensors"
spoil optimizer-other optimizer.safetensors "cat $good/model.safetensors"
for d in "$work"/bad/*; do
    # shellcheck disable=SC2086
    hostile "checkpoint $(basename "$d")" "^dpmptop: .*$(basename "$d")" \
        "$DPMPTOP" --headless --devices cpu:1 $model --set "model.layers=$layers" \
        --set optim.momentum=0.9 --resume "$d"
done
finish
