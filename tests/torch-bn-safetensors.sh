#!/bin/sh
# torch-bn-safetensors.sh -- batch normalisation's state_dict from PyTorch to dpmptop and back
# (tests/torch_bn_safetensors.py): a file PyTorch's way (num_batches_tracked I64, shape []) loads
# with --init, --save writes the same names, dtypes and shapes with the values PyTorch expects,
# and the banner counts PyTorch's model.parameters() only; num_batches_tracked written as F32 is
# refused naming the tensor and both dtypes. Skipped (77) without PyTorch, which Debian
# packages as python3-torch for its own /usr/bin/python3.
. "${srcdir:-.}/tests/lib.sh"

need_torch
d="$work/bn"
mkdir -p "$d"
if ! "$py" "$srcdir/tests/torch_bn_safetensors.py" prepare "$d"; then
    fail "prepare"
elif ! "$DPMPTOP" -c "$d/run.ini" --headless --init "$d/init.safetensors" \
    --save "$d/out.safetensors" >"$d/out" 2>"$d/err"; then
    fail "dpmptop --init (PyTorch's file): $(cat "$d/err")"
else
    "$py" "$srcdir/tests/torch_bn_safetensors.py" check "$d" || fail "differs from PyTorch"
fi
expect_exit 2 \
    "init-f32.safetensors: tensor \"1.num_batches_tracked\" is F32 but dpmptop reads it as I64" \
    -- "$DPMPTOP" -c "$d/run.ini" --headless --init "$d/init-f32.safetensors"
finish
