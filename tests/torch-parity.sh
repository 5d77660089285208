#!/bin/sh
# torch-parity.sh -- dpmptop and PyTorch train the same network from the same weights on the
# same data: an MLP, a small CNN with residual blocks and a 2-block GPT (PyTorch's modules from
# bench/torch_models.py), each with SGD (Nesterov momentum, weight decay) and with AdamW
# (warm-up, cosine decay, clipping): per-step losses and final weights must agree. Skipped (77)
# without PyTorch, which Debian packages as python3-torch for its own /usr/bin/python3.
. "${srcdir:-.}/tests/lib.sh"

need_torch
for variant in mlp-sgd mlp-adamw cnn-sgd cnn-adamw gpt-sgd gpt-adamw gan-sgd gan-adamw; do
    d="$work/$variant"
    mkdir -p "$d"
    "$py" "$srcdir/tests/torch_parity.py" prepare "$d" "$variant" || { fail "$variant: prepare"; continue; }
    "$DPMPTOP" -c "$d/run.ini" --init "$d/init.safetensors" --save "$d/out.safetensors" \
        --metrics "$d/m.jsonl" >"$d/out" 2>"$d/err" || { fail "$variant: dpmptop: $(cat "$d/err")"; continue; }
    "$py" "$srcdir/tests/torch_parity.py" check "$d" "$variant" || fail "$variant: differs from PyTorch"
done
finish
