#!/bin/sh
# fuzz-replay.sh -- every input of the fuzz corpus (tests/fuzz/corpus/TARGET: seeds, hostile
# variants, and every input that ever crashed a target) run through its target built without
# libFuzzer: each must end normally. A crash names the input.
. "${srcdir:-.}/tests/lib.sh"
bindir=${BINDIR:-.}
for t in config idx safetensors checkpoint cifar text; do
    set -- "$srcdir"/tests/fuzz/corpus/$t/*
    if ! "$bindir/tests/fuzz/replay-$t" "$@" >"$work/$t.log" 2>&1; then
        fail "$t: crashed on $(tail -n 1 "$work/$t.log"): $(tail -n 3 "$work/$t.log" | tr '\n' ' ')"
    else
        echo "$t: $# inputs replayed"
    fi
done
finish
