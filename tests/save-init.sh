#!/bin/sh
# save-init.sh -- --save writes safetensors that --init reads back exactly; --save replaces a
# file only once the new one is complete.
. "${srcdir:-.}/tests/lib.sh"

conf="$srcdir/examples/seed.ini"
"$DPMPTOP" -c "$conf" --steps 40 --save "$work/a.safetensors" >/dev/null 2>"$work/err" ||
    fail "save run failed: $(cat "$work/err")"

# Starting from a.safetensors with a learning rate too small to move any weight, the saved
# weights come back bit for bit.
"$DPMPTOP" -c "$conf" --steps 1 --set optim.lr=1e-30 --init "$work/a.safetensors" \
    --save "$work/b.safetensors" >/dev/null 2>"$work/err" || fail "init run failed: $(cat "$work/err")"
cmp -s "$work/a.safetensors" "$work/b.safetensors" || fail "--init then --save changed the weights"

# --init takes effect: the first step's loss starts low from trained weights and high from the
# seeded init.
first_loss() {
    "$DPMPTOP" -c "$conf" --steps 1 --metrics "$work/m.jsonl" "$@" >/dev/null 2>&1
    sed -n 's/.*"type":"step".*"loss":\([0-9.e+-]*\),.*/\1/p' "$work/m.jsonl"
}
cold=$(first_loss)
warm=$(first_loss --init "$work/a.safetensors")
awk -v c="$cold" -v w="$warm" 'BEGIN { exit !(w < c - 0.3) }' ||
    fail "--init did not take effect: first loss $warm from trained weights, $cold cold"

# The header names the tensors as PyTorch's nn.Sequential state_dict.
head -c 400 "$work/a.safetensors" | tr -d '\000' | grep -q '"0.weight":{"dtype":"F32","shape":\[100,10\]' ||
    fail "header lacks 0.weight [100, 10]"
head -c 400 "$work/a.safetensors" | tr -d '\000' | grep -q '"1.bias":{"dtype":"F32","shape":\[10\]' ||
    fail "header lacks 1.bias [10]"

# Overwriting keeps no temporary files behind.
"$DPMPTOP" -c "$conf" --steps 2 --save "$work/a.safetensors" >/dev/null 2>&1 || fail "overwrite failed"
ls "$work" | grep -q 'tmp' && fail "temporary file left behind: $(ls "$work")"

finish
