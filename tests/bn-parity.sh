#!/bin/sh
# bn-parity.sh -- batch normalisation under every strategy: its statistics are over the samples
# a step processes together, so data parallelism (the per-channel sums all-reduced, as
# SyncBatchNorm) and pipelines with one micro-batch compute what one device computes. A CNN with
# bn after convolutions (one inside a residual block) and after a linear layer trains for 20
# steps (crossing an epoch whose last batch is short) and ends with the same parameters and
# running statistics (PyTorch DDP's criterion: |a - b| <= 1e-5 + 1.3e-6 |a| for every value,
# num_batches_tracked equal) under single, dp with 2, 3 and 4 replicas, pp and hybrid with one
# micro-batch, a switch sequence among those, a checkpoint and resume, and mpirun with 2
# processes (skipped without mpirun). A pipeline of several micro-batches normalises each
# micro-batch by design: it differs, and the switch into it says so; with replicas too, the
# j-th micro-batches of every replica together (hybrid as dp with as many micro-batches).
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

write_cifar "$work/cifar" 200 50
cat >"$work/cnn.ini" <<INI
[run]
steps = 20
[data]
kind = cifar10
path = $work/cifar
batch = 62
[model]
layers = conv:6:3:2:1, bn, relu, res(conv:6:3:1:1, bn, relu), maxpool:2, flatten, linear:16, bn, tanh, linear:10
[optim]
kind = sgd
lr = 0.01
momentum = 0.9
weight_decay = 0.001
[parallel]
microbatches = 1
INI

run() { # NAME OPTIONS...
    name=$1
    shift
    timeout 300 "$DPMPTOP" -c "$work/cnn.ini" --headless --save "$work/$name.safetensors" \
        "$@" >"$work/$name.out" 2>&1 || fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
}
same() { # NAME: NAME's parameters and running statistics are the single device's
    if d=$("$compare" "$work/single.safetensors" "$work/$1.safetensors" 1.3e-6 1e-5); then
        echo "$1: within the criterion ($d of it)"
    else
        fail "$1: differs from one device (largest |a - b| / (1e-5 + 1.3e-6 |a|) = $d)"
    fi
}

run single --devices cpu:1 --strategy single
for n in 2 3 4; do
    run "dp$n" --devices "cpu:$n" --strategy dp
    same "dp$n"
done
run pp --devices cpu:2 --strategy pp
same pp
run pp3-gpipe --devices cpu:3 --strategy pp --schedule gpipe
same pp3-gpipe
run hybrid --devices cpu:4 --strategy hybrid
same hybrid
run switches --devices cpu:4 --strategy dp --switch-at 5:pp,10:hybrid,15:single
same switches
grep -q "batch normalisation now" "$work/switches.out" &&
    fail "switches: a switch among plans of one micro-batch says batch normalisation changed"

# the running statistics and num_batches_tracked resume exactly
run ck10 --devices cpu:2 --strategy dp --checkpoint-dir "$work/ck" --set checkpoint.every=10 \
    --steps 10
run resumed --devices cpu:2 --strategy pp --resume "$work/ck"
same resumed

# evaluation uses the running statistics: the same test accuracy as one device
want=$(grep -o 'test accuracy [0-9.]*' "$work/single.out")
[ -n "$want" ] || fail "single: no test accuracy in its summary"
for name in dp4 hybrid switches resumed; do
    [ "$(grep -o 'test accuracy [0-9.]*' "$work/$name.out")" = "$want" ] ||
        fail "$name: $(grep -o 'test accuracy [0-9.]*' "$work/$name.out"), one device: $want"
done

# several micro-batches (pp on 2 devices by default: 4): per micro-batch statistics, by design
# not one device's; the switch into such a plan says so
run micro4 --devices cpu:2 --strategy dp --switch-at 5:pp --set parallel.microbatches=0
grep -q "step 5: switched from DP x2 to PP 2 stages, 4 micro.*; batch normalisation now over 4 micro-batches of about 16, not the whole batch of 62" \
    "$work/micro4.out" || fail "micro4: the switch does not say what batch normalisation sees: $(grep switched "$work/micro4.out")"
"$compare" "$work/single.safetensors" "$work/micro4.safetensors" 1.3e-6 1e-5 >/dev/null &&
    fail "micro4: per micro-batch statistics end where one device does (the test cannot tell)"

# with micro-batches and replicas, the j-th micro-batches of all replicas are normalised
# together: hybrid DP2 x PP2 (both schedules) groups the samples as dp x2 does with as many
# micro-batches
run dp2-micro2 --devices cpu:2 --strategy dp --set parallel.microbatches=2
for schedule in gpipe 1f1b; do
    run "hybrid-micro2-$schedule" --devices cpu:4 --strategy hybrid \
        --set parallel.microbatches=2 --schedule "$schedule"
    if d=$("$compare" "$work/dp2-micro2.safetensors" "$work/hybrid-micro2-$schedule.safetensors" \
        1.3e-6 1e-5); then
        echo "hybrid-micro2-$schedule: as dp x2 with 2 micro-batches ($d of the criterion)"
    else
        fail "hybrid-micro2-$schedule: differs from dp x2 with 2 micro-batches ($d)"
    fi
done

# a plan under which bn after vectors would normalise a single sample is refused (exit 2), as
# PyTorch refuses such a batch: a batch of 1, micro-batches of 1 in the short last batch of an
# epoch (1000 samples in batches of 62 leave 8; pp makes 3 stages, one per layer with parameters,
# and 6 micro-batches), and a
# switch to such a plan
cat >"$work/vec.ini" <<'INI'
[run]
steps = 3
[data]
kind = synthetic
features = 16
classes = 10
samples = 1000
test_samples = 200
batch = 62
[model]
layers = linear:32, bn, relu, linear:10
INI
one="layer 1's batch normalisation has one value per channel in a sample"
expect_exit 2 "$one, and batches of 1 in 1 micro-batch give it a single sample" -- \
    "$DPMPTOP" -c "$work/vec.ini" --headless --devices cpu:1 --set data.batch=1
expect_exit 2 "$one, and the last batch of each epoch \(1000 samples in batches of 62 leave 8\) in 6 micro-batches" -- \
    "$DPMPTOP" -c "$work/vec.ini" --headless --devices cpu:4 --strategy pp
expect_exit 2 "^dpmptop: --switch-at 2:pp: $one" -- \
    "$DPMPTOP" -c "$work/vec.ini" --headless --devices cpu:4 --strategy dp --switch-at 2:pp
expect_exit 0 "" -- "$DPMPTOP" -c "$work/vec.ini" --headless --devices cpu:4 --strategy pp \
    --set parallel.microbatches=4

# across processes: dp and hybrid under mpirun with 2 processes
if command -v mpirun >/dev/null && "$DPMPTOP" --version | grep -q "with MPI"; then
    root=
    [ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
    for s in dp:cpu:1 dp:cpu:2 hybrid:cpu:4; do
        strategy=${s%%:*} devices=${s#*:}
        name=mpi-$strategy-$(echo "$devices" | tr : -)
        timeout 300 mpirun $root --oversubscribe -np 2 "$DPMPTOP" -c "$work/cnn.ini" --headless \
            --devices "$devices" --strategy "$strategy" --save "$work/$name.safetensors" \
            >"$work/$name.out" 2>&1 || fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
        same "$name"
    done
else
    echo "mpirun or MPI missing: the cross-process cases are not run"
fi
finish
