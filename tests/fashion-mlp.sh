#!/bin/sh
# fashion-mlp.sh -- examples/fashion-mlp.ini reaches 0.87 test accuracy in its 5 epochs on
# Fashion-MNIST. Skipped (77) where Debian's dataset-fashion-mnist is not installed.
. "${srcdir:-.}/tests/lib.sh"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "SKIP: no /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"
    rm -rf "$work"
    exit 77
fi
"$DPMPTOP" -c "$srcdir/examples/fashion-mlp.ini" --metrics "$work/m.jsonl" >"$work/out" 2>&1 ||
    fail "fashion-mlp run failed: $(tail -n 3 "$work/out")"
accuracy=$(sed -n 's/.*"type":"summary".*"test_accuracy":\([0-9.]*\).*/\1/p' "$work/m.jsonl")
echo "test accuracy after 5 epochs: $accuracy"
[ "$(grep -c '"type":"eval"' "$work/m.jsonl")" -eq 5 ] || fail "expected one evaluation per epoch"
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.87) }' || fail "test accuracy $accuracy is below 0.87"
finish
