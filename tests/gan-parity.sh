#!/bin/sh
# gan-parity.sh -- a GAN's step (engine/gan.h: D on real, D on fakes, D's update, G through
# D, G's update) computes the same under every strategy: fashion-dcgan's models (transposed
# convolutions, batch normalisation in both) for 20 steps with single, dp (2, 3 and 4
# replicas), pp (G on one device and D on the other, and 4 stages cut inside them), hybrid,
# GPipe and 1F1B, each with one micro-batch, and a switch sequence among them, end with the
# same parameters of both models (torch.allclose with rtol 1.3e-6 and atol 1e-5, PyTorch's
# test tolerances for float32 as DDP's tests use them) and log the same losses.
#
# The reference runs on one core: single on every core splits its GEMMs across threads, a
# summation order other than that of the workers of the other plans (one thread each), and
# after the first step two of the generator's first-layer weights (of 627,200 in a wider
# version of the model), whose gradients are near Adam's eps, differ by 1e-5; the GAN's
# training amplifies that 25 times a step.
# On one core single sums as every worker does, and pp gives it bit for bit. The rate is
# DCGAN's over 20 (1e-5): at 2e-4, the summation orders of the replicas' shares (1e-7) flip
# ReLU inputs that land within that of 0, and the GAN's training grows the difference to 1e-2
# in 20 steps (dp with 4 replicas: 143 times the tolerance; at 1e-5, 0.09 times).
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

[ -d /usr/share/datasets/fashion-mnist ] || {
    echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
    exit 77
}
sed -e 's/^epochs = .*/steps = 20/' -e 's/^batch = .*/batch = 16/' -e 's/^samples = .*/samples =/' \
    "${srcdir:-.}/examples/fashion-dcgan.ini" >"$work/dcgan.ini"
sed -i 's/^lr = .*/lr = 0.00001/' "$work/dcgan.ini"
printf '[parallel]\nmicrobatches = 1\n' >>"$work/dcgan.ini"

run() { # NAME OPTIONS... (with $prefix before the program)
    name=$1
    shift
    timeout 300 $prefix "$DPMPTOP" -c "$work/dcgan.ini" --headless --save "$work/$name" \
        --metrics "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
    sed -n 's/.*"type":"step".*"loss":\([^,]*\),"loss_g":\([^,]*\),.*/\1 \2/p' \
        "$work/$name.jsonl" >"$work/$name.loss"
}

same() { # NAME: both models' parameters and every step's losses as the reference's
    for model in generator discriminator; do
        if ! d=$("$compare" "$work/ref/$model.safetensors" "$work/$1/$model.safetensors" \
                 1.3e-6 1e-5); then
            fail "$1: the $model's parameters differ from single's ($d x the tolerance)"
        fi
    done
    [ "$(wc -l <"$work/$1.loss")" -eq 20 ] || fail "$1: $(wc -l <"$work/$1.loss") step records"
    paste "$work/ref.loss" "$work/$1.loss" | awk -v name="$1" '
        function off(a, b) { d = a - b; if (d < 0) d = -d; return d > 1e-5 * (a < 0 ? -a : a) }
        off($1, $3) || off($2, $4) {
            printf "FAIL: %s: step %d losses %s %s vs %s %s\n", name, NR, $3, $4, $1, $2 \
                > "/dev/stderr"; bad = 1 }
        END { exit bad }' || failures=$((failures + 1))
}

taskset -c 0 true 2>/dev/null || { echo "SKIP: taskset (util-linux) is missing"; exit 77; }
prefix=
run_one_core() { # NAME OPTIONS...: run on the first core only
    prefix="taskset -c 0"
    run "$@"
    prefix=
}
run_one_core ref --strategy single --devices cpu:1
grep -q '"d_fake_after"' "$work/ref.jsonl" || fail "ref: no GAN step records"

run dp2 --strategy dp --devices cpu:2
run dp3 --strategy dp --devices cpu:3
run dp4 --strategy dp --devices cpu:4
run pp2-1f1b --strategy pp --devices cpu:2 --schedule 1f1b
run pp2-gpipe --strategy pp --devices cpu:2 --schedule gpipe
run pp4-1f1b --strategy pp --devices cpu:4 --schedule 1f1b
run hybrid-gpipe --strategy hybrid --devices cpu:4 --schedule gpipe
run hybrid-1f1b --strategy hybrid --devices cpu:4 --schedule 1f1b
run_one_core switches --strategy dp --devices cpu:4 --switch-at 5:pp,10:hybrid,15:single
grep -q 'stage 1 (layers 8-' "$work/pp2-1f1b.out" || grep -q 's1 L8-' "$work/pp2-1f1b.out" ||
    fail "pp2: the discriminator (layers 8 on) is not the second stage: $(tail -n 3 "$work/pp2-1f1b.out")"
for name in dp2 dp3 dp4 pp2-1f1b pp2-gpipe pp4-1f1b hybrid-gpipe hybrid-1f1b switches; do
    same "$name"
done
finish
