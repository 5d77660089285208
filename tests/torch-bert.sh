#!/bin/sh
# torch-bert.sh -- dpmptop's BERT-style encoders and masked language model ([model] objective =
# mlm) against their PyTorch twin (bench/torch_models.py's modules, bench/torch_train.py's
# training; tests/torch_bert.py compares), on a small text this script writes:
#   1. weights and outputs: a few steps of embed:257:32, pos, enc:2, enc:4:1, linear:256 (a
#      post-LayerNorm and a pre-LayerNorm nn.TransformerEncoderLayer) and of a bare mha:2
#      model, saved by dpmptop, load strictly into the PyTorch modules (each encoder layer
#      alone too, from its part of the state dict), and the twin's masked test loss from them
#      (eval mode, the whole test split with its fixed masks) is dpmptop's last evaluation's
#      (its --metrics eval record) within 1e-5, over the same masked bytes;
#   2. the masks: embed:257:256, pos (each position's logits are its input's embedding row
#      plus its position's vector, so that one step of SGD at lr 1 moves row i by the
#      chosen positions whose input is i, and position j's vector by the chosen positions at
#      j: their labels and count) trained 3 steps from the same weights in both, dpmptop on
#      two data-parallel devices: the weights after equal within 1e-5, so dpmptop's training
#      masks (which positions, what replaces them, the labels) are the twin's, for steps 1-3
#      and rows on both replicas;
#   3. twin training: width 64, 2 post-LN blocks of 4 heads, context 64, batch 16, AdamW
#      under a warm-up, cosine schedule and clipping, data in file order (over an epoch's
#      end), from the same initial weights (dpmptop's, saved after one SGD step at lr 1e-30),
#      300 steps with an evaluation every 50: dpmptop on cpu:1 and on cpu:2, each training
#      loss of the first 10 steps within 1e-4 relative of the twin's and each masked test
#      loss within 5e-4.
# Skipped (77) without PyTorch (Debian's python3-torch for /usr/bin/python3).
. "${srcdir:-.}/tests/lib.sh"

need_torch
twin=$srcdir/tests/torch_bert.py
train=$srcdir/bench/torch_train.py
steps=${BERT_TWIN_STEPS:-300}

write_text "$work/text.txt" 30000

# write_ini FILE CONTEXT BATCH LAYERS [OPTIM...]: an mlm run on the text; OPTIM lines are
# appended under [optim].
write_ini() {
    f=$1 context=$2 batch=$3 layers=$4
    shift 4
    {
        printf '[run]\nsteps = 5\n[data]\nkind = text\npath = %s\ncontext = %s\nbatch = %s\n' \
            "$work/text.txt" "$context" "$batch"
        printf '[model]\nobjective = mlm\nlayers = %s\n[optim]\n' "$layers"
        for line in "$@"; do printf '%s\n' "$line"; done
    } >"$f"
}

# init_weights INI OUT: dpmptop's initial weights for INI, saved after one step of plain SGD
# at lr 1e-30 (only zeros move, by about 1e-30), as bench/run-models.sh gets them.
init_weights() {
    "$DPMPTOP" -c "$1" --headless --devices cpu:1 --steps 1 --set optim.kind=sgd \
        --set optim.lr=1e-30 --set optim.momentum=0 --set optim.weight_decay=0 \
        --set optim.warmup=0 --set optim.clip=0 --save "$2" >"$2.out" 2>&1 ||
        { fail "initial weights of $1: $(tail -n 3 "$2.out")"; return 1; }
}

# 1. weights and outputs
n=0
for layers in "embed:257:32, pos, enc:2, enc:4:1, linear:256" \
    "embed:257:32, pos, mha:2, ln, linear:256"; do
    n=$((n + 1))
    ini=$work/load-$n.ini
    write_ini "$ini" 32 8 "$layers" "kind = adamw" "lr = 0.003"
    if "$DPMPTOP" -c "$ini" --headless --devices cpu:1 --save "$work/load-$n.safetensors" \
        --metrics "$work/load-$n.jsonl" >"$work/load-$n.out" 2>&1; then
        "$py" "$twin" load "$work/text.txt" 32 "$layers" "$work/load-$n.safetensors" \
            "$work/load-$n.jsonl" || fail "$layers: the PyTorch twin differs"
    else
        fail "$layers: dpmptop: $(tail -n 3 "$work/load-$n.out")"
    fi
done

# 2. the masks
ini=$work/masks.ini
write_ini "$ini" 64 16 "embed:257:256, pos" "kind = sgd" "lr = 1"
if init_weights "$ini" "$work/masks-init.safetensors"; then
    "$DPMPTOP" -c "$ini" --headless --devices cpu:2 --steps 3 --set data.shuffle=false \
        --init "$work/masks-init.safetensors" --save "$work/masks-dp.safetensors" \
        >"$work/masks-dp.out" 2>&1 || fail "masks: dpmptop: $(tail -n 3 "$work/masks-dp.out")"
    "$py" "$train" -c "$ini" --steps 3 --set data.shuffle=false --no-eval --threads 1 \
        --init "$work/masks-init.safetensors" --save "$work/masks-torch.safetensors" \
        >"$work/masks-torch.out" 2>&1 ||
        fail "masks: torch_train.py: $(tail -n 3 "$work/masks-torch.out")"
    "$py" "$twin" weights "$work/masks-dp.safetensors" "$work/masks-torch.safetensors" 1e-5 ||
        fail "masks: dpmptop's training masks are not the twin's"
fi

# 3. twin training
ini=$work/twin.ini
write_ini "$ini" 64 16 "embed:257:64, pos, enc:4, enc:4, linear:256" "kind = adamw" \
    "lr = 0.001" "weight_decay = 0.01" "warmup = 30" "lr_schedule = cosine" "clip = 1.0"
if init_weights "$ini" "$work/twin-init.safetensors"; then
    set -- -c "$ini" --steps "$steps" --set data.shuffle=false --set run.eval_every=50 \
        --init "$work/twin-init.safetensors"
    "$py" "$train" "$@" --threads 2 --passive --metrics "$work/twin-torch.jsonl" \
        >"$work/twin-torch.out" 2>&1 ||
        fail "twin: torch_train.py: $(tail -n 3 "$work/twin-torch.out")"
    for devices in cpu:1 cpu:2; do
        name=twin-$(echo "$devices" | tr : -)
        if "$DPMPTOP" "$@" --headless --devices "$devices" --metrics "$work/$name.jsonl" \
            >"$work/$name.out" 2>&1; then
            "$py" "$twin" twin "$work/$name.jsonl" "$work/twin-torch.jsonl" 1e-4 5e-4 ||
                fail "twin, $devices: dpmptop's training differs from the PyTorch twin's"
        else
            fail "twin, $devices: dpmptop: $(tail -n 3 "$work/$name.out")"
        fi
    done
fi
finish
