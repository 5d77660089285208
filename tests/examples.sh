#!/bin/sh
# examples.sh -- every examples/*.ini builds its model and trains a few steps (on the first
# 256 samples; CIFAR-10 and text examples on small files written here, the Fashion-MNIST ones
# skipped where Debian's dataset-fashion-mnist is not installed), headless, and the text
# examples report bits per byte (tiny-gpt) and per masked byte (tiny-bert). The full runs' figures are in README.md.
. "${srcdir:-.}/tests/lib.sh"

write_cifar "$work/cifar" 60 20
mkdir -p "$work/text"
write_text "$work/text/a.txt" 4000
printf '\0binary index, left out' >"$work/text/b.dat"

for ini in "$srcdir"/examples/*.ini; do
    name=$(basename "$ini" .ini)
    set -- --set data.limit=256 --steps 3 --set run.eval_every=0
    grep -q '^objective = gan' "$ini" && set -- "$@" --set "gan.samples=$work/$name-samples"
    case $name in
    cifar-*) set -- "$@" --set "data.path=$work/cifar" ;;
    *gpt* | *bert*) set -- "$@" --set "data.path=$work/text" --set data.batch=4 ;;
    fashion-*)
        [ -d /usr/share/datasets/fashion-mnist ] || {
            echo "skipped $name: no /usr/share/datasets/fashion-mnist"
            continue
        }
        ;;
    esac
    timeout 300 "$DPMPTOP" --headless -c "$ini" "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 3 "$work/$name.out")"
    grep -q '^done: 3 steps' "$work/$name.out" || fail "$name: no summary of 3 steps"
done
grep -Eq 'test loss [0-9.]+ \([0-9.]+ bits per byte\)' "$work/tiny-gpt.out" ||
    fail "tiny-gpt: no bits per byte in its evaluation"
grep -Eq 'masked test accuracy [0-9.]+, loss [0-9.]+ \([0-9.]+ bits per masked byte\)' \
    "$work/tiny-bert.out" || fail "tiny-bert: no masked accuracy and bits in its summary"
finish
