#!/bin/sh
# bert-parity.sh -- a masked language model (objective = mlm: a small post-LN and pre-LN
# encoder with dropout on a text written here) trains the same under every strategy: single,
# dp (2, 3 and 4 replicas), pp (2 and 3 stages, GPipe and 1F1B), hybrid (DP2 x PP2, both
# schedules) and a switch sequence dp -> pp -> hybrid -> single end 20 steps with the same
# parameters (torch.allclose with rtol 1.3e-6 and atol 1e-5, PyTorch DDP's criterion), log the
# same per-step loss (1e-5 relative) and evaluate to the same masked test loss and accuracy.
#
# The masks (engine/kernels.h dp_mlm_input) hang on each sample's place in the global batch,
# and the loss is the mean over the positions chosen in the whole global batch, so a replica's
# or a micro-batch's share sums its chosen positions' losses but divides by the global count
# (a local mean would weigh the shares' positions unequally, as their counts differ).
#
# Under SGD every parameter meets the criterion (0.01 of it). Under AdamW every parameter but
# the key third of each encoder's self_attn.in_proj_bias does (0.07 of it); those key biases
# end 1e-3 apart. Their gradient is 0 in exact arithmetic (the bias adds the same q . b_k to
# every score of a query, which the softmax takes out), so what any strategy computes there is
# rounding noise of the order of 1e-9 whose sign follows the summation order, and Adam turns
# noise into steps of about lr. PyTorch's DDP has the same noise there. So the AdamW runs
# compare the key biases only for staying small (Adam's steps of noise under a falling rate,
# 1e-3 here; a real gradient would move them by about lr = 1e-2 a step), everything else as
# the SGD runs do.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

write_text "$work/text.txt" 3000
cat >"$work/bert.ini" <<INI
[run]
steps = 20
eval_every = 5
[data]
kind = text
path = $work/text.txt
context = 16
batch = 62
[model]
objective = mlm
layers = embed:257:16, pos, dropout:10, enc:2, enc:4:1, linear:256
[parallel]
devices = cpu:4
microbatches = 3
INI

# run NAME OPTIONS...: trains with the options and keeps the step losses and the evaluations
run() {
    name=$optim-$1
    shift
    timeout 300 "$DPMPTOP" -c "$work/bert.ini" --headless --save "$work/$name.safetensors" \
        --metrics "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 ||
        fail "$name: exit $?: $(tail -n 2 "$work/$name.out")"
    sed -n 's/.*"type":"step".*"loss":\([^,]*\),.*/\1/p' "$work/$name.jsonl" >"$work/$name.loss"
    sed -n 's/.*"type":"eval","step":\([0-9]*\),.*"loss":\([^,]*\),"masked":true,"masked_bytes":\([0-9]*\),.*"accuracy":\([^,}]*\).*/\1 \2 \3 \4/p' \
        "$work/$name.jsonl" >"$work/$name.eval"
}

# params REFERENCE NAME: every parameter within DDP's tolerance of the reference's; under
# AdamW the key biases apart (see above), which must stay below 5e-3 in both.
params() {
    if [ "$optim" = sgd ]; then
        d=$("$compare" "$work/$1.safetensors" "$work/$2.safetensors" 1.3e-6 1e-5) ||
            fail "$2: parameters differ from $1's by $d x the tolerance"
        return
    fi
    python3 - "$work/$1.safetensors" "$work/$2.safetensors" <<'PY' || failures=$((failures + 1))
import array, json, struct, sys

def load(path):
    with open(path, 'rb') as f:
        blob = f.read()
    size = struct.unpack('<Q', blob[:8])[0]
    header = json.loads(blob[8:8 + size])
    tensors = {}
    for name, info in header.items():
        if name == '__metadata__' or info['dtype'] != 'F32':
            continue
        start, end = info['data_offsets']
        values = array.array('f')
        values.frombytes(blob[8 + size + start:8 + size + end])
        if sys.byteorder != 'little':
            values.byteswap()
        tensors[name] = values
    return tensors

ref, got = load(sys.argv[1]), load(sys.argv[2])
if ref.keys() != got.keys():
    sys.exit(f'FAIL: {sys.argv[2]}: not the tensors of {sys.argv[1]}')
worst, where, keys = 0.0, '', 0
for name, a in ref.items():
    b = got[name]
    key = range(len(a) // 3, 2 * len(a) // 3) if name.endswith('self_attn.in_proj_bias') \
        else range(0)
    for i, (x, y) in enumerate(zip(a, b)):
        if i in key:
            keys += 1
            if abs(x) >= 5e-3 or abs(y) >= 5e-3:
                sys.exit(f'FAIL: {sys.argv[2]}: key bias {name}[{i}] = {y} (reference {x}): '
                         'not the noise of a zero gradient')
            continue
        ratio = abs(x - y) / (1e-5 + 1.3e-6 * abs(x))
        if ratio > worst:
            worst, where = ratio, f'{name}[{i}] {y} vs {x}'
if keys == 0:
    sys.exit(f'FAIL: {sys.argv[2]}: no in_proj_bias: the model has no encoder')
if worst > 1:
    sys.exit(f'FAIL: {sys.argv[2]}: {worst:.3g} x the tolerance at {where}')
PY
}

# same REFERENCE NAME: parameters, per-step losses and evaluations agree.
same() {
    params "$1" "$2"
    [ "$(wc -l <"$work/$2.loss")" -eq 20 ] || fail "$2: $(wc -l <"$work/$2.loss") step records, not 20"
    paste "$work/$1.loss" "$work/$2.loss" | awk -v name="$2" '
        { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1)) {
              printf "FAIL: %s: step %d loss %s vs %s\n", name, NR, $2, $1 > "/dev/stderr"; bad = 1 } }
        END { exit bad }' || failures=$((failures + 1))
    # step, masked loss, masked bytes, masked accuracy: the same masks, the same count, the
    # same loss to 1e-5 and accuracy to 1e-6 (an argmax that rounding flips moves it 1/251).
    [ "$(wc -l <"$work/$2.eval")" -eq 5 ] || fail "$2: $(wc -l <"$work/$2.eval") masked evaluations, not 5"
    paste -d ' ' "$work/$1.eval" "$work/$2.eval" | awk -v name="$2" '
        function off(a, b, tol) { d = a - b; if (d < 0) d = -d; return d > tol * (a < 0 ? -a : a) }
        $1 != $5 || $3 != $7 || off($2, $6, 1e-5) || off($4, $8, 1e-6) {
            printf "FAIL: %s: evaluation %s vs %s\n", name, $5 " " $6 " " $7 " " $8,
                $1 " " $2 " " $3 " " $4 > "/dev/stderr"; bad = 1 }
        END { exit bad }' || failures=$((failures + 1))
}

for optim in sgd adamw; do
    if [ "$optim" = sgd ]; then
        set -- --set optim.kind=sgd --set optim.lr=0.1 --set optim.momentum=0.9 \
            --set optim.nesterov=true --set optim.weight_decay=0.001
    else
        set -- --set optim.kind=adamw --set optim.lr=0.01 --set optim.warmup=3 \
            --set optim.lr_schedule=cosine --set optim.clip=0.5
    fi
    run single "$@" --strategy single
    run dp2 "$@" --strategy dp --devices cpu:2
    run dp3 "$@" --strategy dp --devices cpu:3
    run dp4 "$@" --strategy dp --devices cpu:4
    run pp2-gpipe "$@" --strategy pp --devices cpu:2 --schedule gpipe
    run pp2-1f1b "$@" --strategy pp --devices cpu:2 --schedule 1f1b
    run pp3-gpipe "$@" --strategy pp --devices cpu:3 --schedule gpipe
    run pp3-1f1b "$@" --strategy pp --devices cpu:3 --schedule 1f1b
    run hybrid-gpipe "$@" --strategy hybrid --schedule gpipe
    run hybrid-1f1b "$@" --strategy hybrid --schedule 1f1b
    run switches "$@" --strategy dp --switch-at 5:pp,10:hybrid,15:single
    # The reference is a masked run: a step loss near ln 256 at first, masked evaluations
    # that count the masked bytes of the test split.
    grep -q '^masked test loss ' "$work/$optim-single.out" ||
        grep -q 'masked test accuracy' "$work/$optim-single.out" ||
        fail "$optim-single: no masked evaluation in its report: $(tail -n 3 "$work/$optim-single.out")"
    awk 'NR == 1 && ($1 < 5.3 || $1 > 5.8) { exit 1 }' "$work/$optim-single.loss" ||
        fail "$optim-single: first loss $(head -n 1 "$work/$optim-single.loss"), not about ln 256"
    awk '$3 < 100 { exit 1 }' "$work/$optim-single.eval" ||
        fail "$optim-single: evaluations over too few masked bytes: $(cat "$work/$optim-single.eval")"
    for name in dp2 dp3 dp4 pp2-gpipe pp2-1f1b pp3-gpipe pp3-1f1b hybrid-gpipe hybrid-1f1b \
                switches; do
        same "$optim-single" "$optim-$name"
    done
    grep -q 's2 L' "$work/$optim-pp3-1f1b.out" || grep -q 'stage 2 (layers ' "$work/$optim-pp3-1f1b.out" ||
        fail "$optim: pp on 3 devices has no third stage: $(tail -n 4 "$work/$optim-pp3-1f1b.out")"
    [ "$(grep -c '"type":"switch"' "$work/$optim-switches.jsonl")" -eq 3 ] ||
        fail "$optim: expected 3 switch records"
done
finish
