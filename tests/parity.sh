#!/bin/sh
# parity.sh -- the central test of the engine: every strategy computes the gradient of the
# mean loss over the global batch, so single, dp, pp (GPipe, 1F1B) and hybrid end with the same
# parameters (max |a - b| / max |a| <= 1e-5) and log the same per-step loss (1e-5 relative),
# with or without switches between them, for SGD and for AdamW with clipping. The batch (62)
# is not a multiple of the 4 devices, the 3 micro-batches don't divide it, the layers' FLOPs
# differ, and the 20 steps cross an epoch whose last batch has 8 rows. Dropout draws the same
# masks under every strategy. (Summation orders differ by 1e-7, so a ReLU input that lands
# within that of 0 goes different ways: with dropout right after the ReLU, seed 1 under AdamW
# ends 3.5e-4 apart; seeds 2 and 3 agree to 2e-7. The dropout sits after the tanh.) Three models: an MLP on
# synthetic data, a small CNN with a residual block (and a strided projection) on CIFAR-10
# batch files written here (1000 random images), and a 2-block GPT on a text written here.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

write_mlp_ini "$work/mlp.ini"
cat >>"$work/mlp.ini" <<'INI'
[parallel]
devices = cpu:4
microbatches = 3
INI

write_cifar "$work/cifar" 200 50
write_text "$work/text.txt" 3000
sed -e 's|^kind = synthetic|kind = text\npath = '"$work/text.txt"'\ncontext = 16|' \
    -e 's|^layers = .*|layers = embed:256:16, pos, dropout:10, block:2, block:4, ln, linear:256|' \
    "$work/mlp.ini" >"$work/gpt.ini"
sed -e 's|^kind = synthetic|kind = cifar10\npath = '"$work/cifar"'|' \
    -e 's|^layers = .*|layers = conv:6:3:2:1, relu, res(conv:6:3:1:1, relu, conv:8:3:2:1), maxpool:2, flatten, linear:16, tanh, linear:10|' \
    "$work/mlp.ini" >"$work/cnn.ini"

# run NAME OPTIMIZER-OPTIONS... -- DPMPTOP-OPTIONS...  (the model's ini is $model.ini)
run() {
    name=$model-$1
    shift
    timeout 120 "$DPMPTOP" -c "$work/$model.ini" --save "$work/$name.safetensors" \
        --metrics "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
    sed -n 's/.*"type":"step".*"loss":\([^,]*\),.*/\1/p' "$work/$name.jsonl" >"$work/$name.loss"
}

# same REFERENCE NAME: parameters and per-step losses agree.
same() {
    if ! diff_rel=$("$compare" "$work/$1.safetensors" "$work/$2.safetensors" "$param_tol"); then
        fail "$2: parameters differ from $1 by $diff_rel (relative)"
    fi
    [ "$(wc -l <"$work/$2.loss")" -eq 20 ] || fail "$2: $(wc -l <"$work/$2.loss") step records, not 20"
    paste "$work/$1.loss" "$work/$2.loss" | awk -v name="$2" '
        { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1)) {
              printf "FAIL: %s: step %d loss %s vs %s\n", name, NR, $2, $1 > "/dev/stderr"; bad = 1 } }
        END { exit bad }' || failures=$((failures + 1))
}

# The CNN learns at a tenth of the MLP's rate: on random labels at the MLP's rate its training
# is chaotic, and the summation order of the all-reduce (1e-7) flips ReLUs and maxima, whose
# effect grows to 1e-2 in 20 steps.
# The GPT under AdamW gets 3e-5: the gradient of attention's key bias is 0 in exact arithmetic
# (it adds the same q.b to every score of a query), so what the engine computes is rounding
# noise, which AdamW scales up to steps of lr; its sign depends on the summation order.
for model in mlp cnn gpt; do
for optim in sgd adamw; do
    param_tol=$([ "$model-$optim" = gpt-adamw ] && echo 3e-5 || echo 1e-5)
    lr=$([ "$model" = mlp ] && echo 1 || echo 0.1)
    if [ "$optim" = sgd ]; then
        set -- --set optim.kind=sgd --set "optim.lr=${lr}e-1" --set optim.momentum=0.9 \
            --set optim.nesterov=true --set optim.weight_decay=0.001
    else
        set -- --set optim.kind=adamw --set "optim.lr=${lr}e-2" --set optim.warmup=3 \
            --set optim.lr_schedule=cosine --set optim.clip=0.5
    fi
    run "$optim-single" "$@" --strategy single
    run "$optim-dp" "$@" --strategy dp
    run "$optim-pp-gpipe" "$@" --strategy pp --schedule gpipe
    run "$optim-pp-1f1b" "$@" --strategy pp --schedule 1f1b
    run "$optim-hybrid-gpipe" "$@" --strategy hybrid --schedule gpipe
    run "$optim-hybrid-1f1b" "$@" --strategy hybrid --schedule 1f1b
    run "$optim-switches" "$@" --strategy dp --switch-at 5:pp,10:hybrid,15:single
    run "$optim-switch-ends" "$@" --strategy single --switch-at 1:hybrid,20:pp
    for name in dp pp-gpipe pp-1f1b hybrid-gpipe hybrid-1f1b switches switch-ends; do
        same "$model-$optim-single" "$model-$optim-$name"
    done
    grep -q '"type":"device".*"role":"replica 1, stage 1 (layers ' "$work/$model-$optim-hybrid-1f1b.jsonl" ||
        fail "$model $optim: hybrid device records lack the role of replica 1, stage 1"
    [ "$(grep -c '"type":"switch"' "$work/$model-$optim-switches.jsonl")" -eq 3 ] ||
        fail "$model $optim: expected 3 switch records"
    grep -q '"type":"switch","step":10,"from":"PP 4 stages, 3 micro, 1F1B","to":"DP2 x PP2, 3 micro, 1F1B","seconds":' \
        "$work/$model-$optim-switches.jsonl" || fail "$model $optim: no switch record for step 10"
    grep -q '^step 1: switched from single, 3 micro to DP2 x PP2, 3 micro, 1F1B in ' \
        "$work/$model-$optim-switch-ends.out" || fail "$model $optim: the switch on step 1 is not reported"
done
done
finish
