#!/bin/sh
# cuda.sh -- the CUDA backend on a real GPU: the same run on cpu:1 and cuda:0 ends with the same
# parameters (fp32: max |a - b| / max |a| <= 1e-4 across backends, whose GEMMs sum in different
# orders), and every strategy on logical devices of one GPU (cuda:0 named four times) matches
# the single-GPU run (1e-5), switches included; batches gathered on the host and uploaded match
# batches gathered on the GPU from its copy of the data set; TF32 trains to a loss near fp32's.
# Then a CNN with residual blocks (CIFAR-10 files written here) and a GPT with dropout (a text
# written here): GPU against CPU, and dp and pp on the four logical devices against one; the
# CNN and a transposed convolution with the GPU's convolutions through cuDNN and through im2col.
# Skipped (77) in a build without CUDA or where no GPU is usable.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

if ! "$DPMPTOP" --version | grep -q "CUDA backends"; then
    echo "SKIP: this build has no CUDA backend"
    rm -rf "$work"
    exit 77
fi
cat >"$work/run.ini" <<'INI'
[run]
steps = 20
precision = fp32
[data]
kind = synthetic
features = 20
classes = 10
samples = 1000
test_samples = 100
batch = 62
[model]
layers = linear:64, relu, linear:32, tanh, linear:48, gelu, linear:10
[optim]
lr = 0.1
momentum = 0.9
[parallel]
microbatches = 3
INI
if ! "$DPMPTOP" -c "$work/run.ini" --devices cuda:0 --steps 1 >"$work/probe" 2>&1; then
    echo "SKIP: no usable GPU: $(tail -n 1 "$work/probe")"
    rm -rf "$work"
    exit 77
fi

run() { # NAME OPTIONS...
    name=$1
    shift
    timeout 120 "$DPMPTOP" -c "$work/run.ini" --save "$work/$name.safetensors" \
        --metrics "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
}
same() { # REFERENCE NAME TOLERANCE
    if d=$("$compare" "$work/$1.safetensors" "$work/$2.safetensors" "$3"); then
        echo "$2 vs $1: $d"
    else
        fail "$2: parameters differ from $1 by $d (tolerance $3)"
    fi
}

run cpu --devices cpu:1 --strategy single
run gpu --devices cuda:0 --strategy single
same cpu gpu 1e-4
grep -q '"device":"cuda:0","role":"single"' "$work/gpu.jsonl" || fail "no cuda:0 device records"
four=cuda:0,cuda:0,cuda:0,cuda:0
run gpu-dp --devices "$four" --strategy dp
run gpu-pp-gpipe --devices "$four" --strategy pp --schedule gpipe
run gpu-pp-1f1b --devices "$four" --strategy pp --schedule 1f1b
run gpu-hybrid --devices "$four" --strategy hybrid
run gpu-switches --devices "$four" --strategy dp --switch-at 5:pp,10:hybrid,15:single
run gpu-host-batches --devices cuda:0 --strategy single --set data.on_device=false
for name in dp pp-gpipe pp-1f1b hybrid switches; do
    same gpu "gpu-$name" 1e-5
done
# the same batches, gathered on the host instead of the GPU (GEMM kernels are chosen by timing,
# so two GPU runs may differ in the last bits)
same gpu gpu-host-batches 1e-5
run gpu-tf32 --devices cuda:0 --strategy single --set run.precision=tf32
loss() { sed -n 's/.*"type":"summary".*"final_loss":\([0-9.e+-]*\).*/\1/p' "$work/$1.jsonl"; }
awk -v a="$(loss gpu)" -v b="$(loss gpu-tf32)" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.05 * a) }' ||
    fail "TF32 final loss $(loss gpu-tf32) is not within 5% of fp32's $(loss gpu)"

write_cifar "$work/cifar" 200 50
write_text "$work/text.txt" 3000
cp "$work/run.ini" "$work/mlp.ini"
sed -e 's|^kind = synthetic|kind = cifar10\npath = '"$work/cifar"'|' -e 's|^lr = 0.1|lr = 0.01|' \
    -e 's|^layers = .*|layers = conv:6:3:2:1, relu, res(conv:6:3:1:1, relu, conv:8:3:2:1), maxpool:2, flatten, linear:16, tanh, linear:10|' \
    "$work/mlp.ini" >"$work/cnn.ini"
sed -e 's|^kind = synthetic|kind = text\npath = '"$work/text.txt"'\ncontext = 16|' -e 's|^lr = 0.1|lr = 0.01|' \
    -e 's|^layers = .*|layers = embed:256:16, pos, dropout:10, block:2, block:4, ln, linear:256|' \
    "$work/mlp.ini" >"$work/gpt.ini"
for model in cnn gpt; do
    cp "$work/$model.ini" "$work/run.ini"
    run "$model-cpu" --devices cpu:1 --strategy single
    run "$model-gpu" --devices cuda:0 --strategy single
    same "$model-cpu" "$model-gpu" 1e-4
    run "$model-gpu-dp" --devices "$four" --strategy dp
    run "$model-gpu-pp" --devices "$four" --strategy pp
    same "$model-gpu" "$model-gpu-dp" 1e-5
    same "$model-gpu" "$model-gpu-pp" 1e-5
done
# The GPU's library convolutions (cuDNN, where installed) against its own (im2col and GEMMs),
# and a transposed convolution, whose forward is the convolution's backward-data pass, on both.
cp "$work/cnn.ini" "$work/run.ini"
run cnn-gpu-im2col --devices cuda:0 --strategy single --set run.convolutions=im2col
same cnn-gpu cnn-gpu-im2col 1e-4
sed -e 's|^layers = .*|layers = conv:6:3:2:1, relu, deconv:4:4:2:1, relu, maxpool:4, flatten, linear:10|' \
    "$work/cnn.ini" >"$work/run.ini"
run deconv-cpu --devices cpu:1 --strategy single
run deconv-gpu --devices cuda:0 --strategy single
run deconv-gpu-im2col --devices cuda:0 --strategy single --set run.convolutions=im2col
same deconv-cpu deconv-gpu 1e-4
same deconv-gpu deconv-gpu-im2col 1e-4
finish
