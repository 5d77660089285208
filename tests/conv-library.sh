#!/bin/sh
# conv-library.sh -- [run] convolutions = library (oneDNN on CPU devices) trains as im2col (the
# engine's own kernels) does: a small CNN (conv, bn, relu, maxpool, two residual blocks, the
# second strided with a projection, global average pooling, linear) trains 30 steps on
# Fashion-MNIST on cpu:1 and on cpu:2 (dp) each way, and the two end with the same per-step
# losses and parameters by PyTorch DDP's criterion (|a - b| <= 1e-5 + 1.3e-6 |a| for every
# value), yet not the same to the bit (else the key changed nothing), and a run repeated gives
# the same parameters to the bit. Also: --version names
# the CPU devices' library, oneDNN, with its version, runtime and instruction set. Skipped (77) where
# Debian's dataset-fashion-mnist is not installed, once --version is checked.
#
# The convolutions before a bn have no bias (PyTorch's bias=False, as in its ResNets): bn takes
# away each channel's mean, so such a bias's gradient is 0 in exact arithmetic and what the two
# ways compute is rounding noise of different summation orders, which momentum carries to 1e-5
# in 30 steps. Without those biases the two runs agree to about 0.03 of the criterion. (On
# synthetic data, random features and labels, training is chaotic: ReLUs and maxima flip
# with the last bits and the runs part by 5x the criterion.)
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

"$DPMPTOP" --version >"$work/version" 2>&1 || fail "--version: exit $?"
version='[0-9]+\.[0-9]+(\.[0-9]+)?'
grep -Eq "^CPU devices: oneDNN $version \((OpenMP|threads), [A-Za-z0-9. -]+\)\$" \
    "$work/version" || fail "--version lacks the CPU devices' libraries: $(cat "$work/version")"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    [ "$failures" -eq 0 ] || finish
    echo "SKIP: no /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"
    rm -rf "$work"
    exit 77
fi

cat >"$work/cnn.ini" <<'INI'
[run]
steps = 30
[data]
kind = fashion-mnist
batch = 32
limit = 2000
[model]
layers = conv:8:3:1:1:0, bn, relu, maxpool:2,
    res(conv:8:3:1:1:0, bn, relu, conv:8:3:1:1), relu,
    res(conv:16:3:2:1:0, bn, relu, conv:16:3:1:1), relu, avgpool, flatten, linear:10
[optim]
kind = sgd
lr = 0.05
momentum = 0.9
INI

run() { # NAME DEVICES CONVOLUTIONS
    timeout 120 "$DPMPTOP" -c "$work/cnn.ini" --headless --devices "$2" \
        --set "run.convolutions=$3" --save "$work/$1.safetensors" --metrics "$work/$1.jsonl" \
        >"$work/$1.out" 2>&1 || fail "$1: exit $?: $(tail -n 2 "$work/$1.out")"
    sed -n 's/.*"type":"step".*"loss":\([^,]*\),.*/\1/p' "$work/$1.jsonl" >"$work/$1.loss"
}

for n in 1 2; do
    devices=cpu:$n
    run "library-$n" "$devices" library
    run "im2col-$n" "$devices" im2col
    a=$work/library-$n b=$work/im2col-$n
    [ "$(wc -l <"$a.loss")" -eq 30 ] && [ "$(wc -l <"$b.loss")" -eq 30 ] ||
        fail "$devices: $(wc -l <"$a.loss") and $(wc -l <"$b.loss") step records, not 30"
    paste "$b.loss" "$a.loss" | awk -v devices="$devices" '
        { d = $1 - $2; if (d < 0) d = -d; a = $1 < 0 ? -$1 : $1
          if (d > 1e-5 + 1.3e-6 * a) {
              printf "FAIL: %s: step %d loss %s through the library, %s through im2col\n",
                     devices, NR, $2, $1 > "/dev/stderr"; bad = 1 } }
        END { exit bad }' || failures=$((failures + 1))
    if d=$("$compare" "$b.safetensors" "$a.safetensors" 1.3e-6 1e-5); then
        echo "$devices: library vs im2col parameters within the criterion ($d of it)"
    else
        fail "$devices: library vs im2col parameters: largest |a - b| / (1e-5 + 1.3e-6 |a|) = $d"
    fi
    cmp -s "$b.safetensors" "$a.safetensors" &&
        fail "$devices: the library's parameters are im2col's to the bit (the key changed nothing)"
    # the same run again gives the same parameters to the bit: which layout a convolution runs
    # in (and so its rounding) must not depend on the machine's load
    run "again-$n" "$devices" library
    cmp -s "$a.safetensors" "$work/again-$n.safetensors" ||
        fail "$devices: two identical runs through the library end with different parameters"
done
finish
