#!/bin/sh
# gan.sh -- a GAN run as a user meets it: its configuration's refusals, the samples written at
# every evaluation (IDX and PNG), each run's in a directory of its own,
# --save DIR and --init DIR (a model's file in the other's place refused), a resumed
# checkpoint ending bit for bit where the run without a stop ends, and --generate (the same
# samples for the same seed, other samples for another, the count asked for, its refusals).
. "${srcdir:-.}/tests/lib.sh"

[ -d /usr/share/datasets/fashion-mnist ] || {
    echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
    exit 77
}
ini=$work/gan.ini
sed -e 's/^epochs = .*/steps = 6/' -e "s|^samples = .*|samples = $work/samples|" \
    "${srcdir:-.}/examples/fashion-gan.ini" >"$ini"
printf '[run]\neval_every = 3\n[data]\nlimit = 2000\n' >>"$ini"

# ---- the configuration's refusals (exit 2, one line saying what to do) ----
expect_exit 2 'needs both \[model\] generator and \[model\] discriminator' -- \
    "$DPMPTOP" -c "$ini" --set model.generator=
expect_exit 2 'set \[model\] objective = gan' -- \
    "$DPMPTOP" -c "$ini" --set model.objective=classify
expect_exit 2 'on_nan = skip is not supported for a GAN' -- \
    "$DPMPTOP" -c "$ini" --set run.on_nan=skip
expect_exit 2 'latent = 0:1: expected Z' -- "$DPMPTOP" -c "$ini" --set model.latent=0:1
expect_exit 2 'end it with unflatten:1:28:28' -- \
    "$DPMPTOP" -c "$ini" --set 'model.generator=linear:784, tanh'
expect_exit 2 'needs \[gan\] classifier_layers' -- \
    "$DPMPTOP" -c "$ini" --set gan.classifier=x.safetensors --set gan.classifier_layers=
expect_exit 2 'range = -1:1 scales images' -- \
    "$DPMPTOP" --set data.kind=synthetic --set data.range=-1:1

# ---- a run: samples at every evaluation, and the weights as a directory ----
"$DPMPTOP" -c "$ini" --devices cpu:2 --strategy dp --save "$work/saved" \
    --checkpoint-dir "$work/ckpt" --set checkpoint.every=3 >"$work/run.out" 2>&1 ||
    fail "the run: exit $?: $(tail -n 3 "$work/run.out")"
grep -q 'loss D .* G .* D(x) .* D(G(z))' "$work/run.out" ||
    fail "no GAN progress line: $(head -n 8 "$work/run.out")"
grep -q 'D on the test split: loss' "$work/run.out" || fail "no GAN evaluation line"
for step in 3 6; do
    for ext in idx png; do
        [ -s "$work/samples/run-1/step-$step.$ext" ] || fail "no samples/run-1/step-$step.$ext"
    done
done
# 64 images of 28 x 28 bytes behind a 16-byte header (magic 0x00000803, 64, 28, 28)
header=$(od -An -tx1 -N16 "$work/samples/run-1/step-6.idx" | tr -d ' \n')
[ "$header" = 00000803000000400000001c0000001c ] ||
    fail "samples/run-1/step-6.idx: header $header"
[ "$(wc -c <"$work/samples/run-1/step-6.idx")" -eq $((16 + 64 * 28 * 28)) ] ||
    fail "samples/run-1/step-6.idx: $(wc -c <"$work/samples/run-1/step-6.idx") bytes"
head -c 8 "$work/samples/run-1/step-6.png" | od -An -c | grep -q 'P   N   G' ||
    fail "samples/run-1/step-6.png is not a PNG"
for model in generator discriminator; do
    [ -s "$work/saved/$model.safetensors" ] || fail "--save wrote no $model.safetensors"
done
# a second run into the same samples directory writes into a directory of its own
expect_exit 0 '' -- "$DPMPTOP" -c "$ini" --devices cpu:2 --strategy dp --steps 3
[ -s "$work/samples/run-2/step-3.png" ] || fail "the second run's samples are not in run-2"
cmp -s "$work/samples/run-1/step-3.idx" "$work/samples/run-2/step-3.idx" ||
    fail "two runs of one configuration wrote different samples at step 3"
ln -s "$work/samples" "$work/samples-link"
expect_exit 2 'a symbolic link' -- "$DPMPTOP" -c "$ini" --set "gan.samples=$work/samples-link"

# ---- --init DIR: the models' files, each in its place ----
mkdir "$work/swapped"
cp "$work/saved/generator.safetensors" "$work/swapped/generator.safetensors"
cp "$work/saved/generator.safetensors" "$work/swapped/discriminator.safetensors"
expect_exit 2 "discriminator.safetensors holds a generator's weights" -- \
    "$DPMPTOP" -c "$ini" --set gan.samples= --init "$work/swapped"
expect_exit 2 'not a directory' -- \
    "$DPMPTOP" -c "$ini" --set gan.samples= --init "$work/saved/generator.safetensors"
expect_exit 0 '' -- "$DPMPTOP" -c "$ini" --set gan.samples= --init "$work/saved" --steps 1

# ---- a resumed checkpoint ends where the run without a stop ends, bit for bit ----
"$DPMPTOP" -c "$ini" --devices cpu:2 --strategy dp --set gan.samples= \
    --resume "$work/ckpt/step-00000003" --save "$work/resumed" >"$work/resume.out" 2>&1 ||
    fail "resume: exit $?: $(tail -n 3 "$work/resume.out")"
for model in generator discriminator; do
    cmp -s "$work/saved/$model.safetensors" "$work/resumed/$model.safetensors" ||
        fail "the resumed run's $model differs from the run's without a stop"
done

# ---- --generate ----
gen() { # OUTPUT OPTIONS...
    out=$1
    shift
    "$DPMPTOP" -c "$ini" --set gan.samples= --init "$work/saved" --generate 10 \
        --output "$out" "$@" >"$work/gen.out" 2>&1 || fail "--generate: exit $?: $(cat "$work/gen.out")"
}
gen "$work/a.idx"
gen "$work/b.idx"
gen "$work/c.idx" --set run.seed=2
cmp -s "$work/a.idx" "$work/b.idx" || fail "--generate: two runs with one seed differ"
cmp -s "$work/a.idx" "$work/c.idx" && fail "--generate: another seed gave the same samples"
[ "$(wc -c <"$work/a.idx")" -eq $((16 + 10 * 28 * 28)) ] ||
    fail "--generate 10: $(wc -c <"$work/a.idx") bytes"
[ -s "$work/a.png" ] || fail "--generate: no PNG beside the IDX file"
expect_exit 2 'needs trained weights' -- \
    "$DPMPTOP" -c "$ini" --generate 4 --output "$work/x.idx"
expect_exit 2 'needs --output' -- "$DPMPTOP" -c "$ini" --generate 4 --init "$work/saved"
expect_exit 2 'a classifier' -- "$DPMPTOP" --generate 4 --output "$work/x.idx" --init "$work/saved"
ln -s /etc/passwd "$work/link.idx"
expect_exit 2 'a symbolic link' -- \
    "$DPMPTOP" -c "$ini" --generate 4 --output "$work/link.idx" --init "$work/saved"
finish
