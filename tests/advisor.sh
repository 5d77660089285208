#!/bin/sh
# advisor.sh -- the plan advisor (--strategy auto, issue 20) end to end:
# 1. the search is invisible to the result: for an MLP (the demo's layers), a small CNN (the
#    shape of examples/fashion-cnn.ini at a quarter of its width, on CIFAR-10 files of random
#    images written here) and a small GPT (parity.sh's) on cpu:2 and cpu:4, an auto run finishes,
#    its advice_outcome names the plan its table marks chosen, that plan is the fastest of those
#    measured longest (successive halving's last round), the run switches to it, and its final
#    parameters are the single device's within PyTorch DDP's criterion (every value:
#    |a - b| <= 1e-5 + 1.3e-6 |a|);
# 2. with every plan that fits measured ([parallel] auto_plans = 0), each plan's measured peak
#    on each device is within 15 % of its predicted bytes (they should be equal on CPU devices);
# 3. refusals: a device_memory no plan fits is refused before training (exit 2) naming the
#    smallest plan and its need, with every plan's need listed; a device_memory that admits
#    some plans leaves the others out ("needs ... which has ...") and the run uses only those
#    that fit; malformed sizes are refused in one line; a GAN is refused; batch normalisation
#    keeps pipelines of several micro-batches out unless auto_bn_micro = true;
# 4. under mpirun (skipped without it): every process measures, rank 0 writes the table, and
#    the run ends with the single device's parameters.
# Also: a --switch-at during the search stops it and keeps the hand-chosen plan, and the
# headless table's columns line up.
# The models are small and the data synthetic or written here, so the script needs no dataset.
# The learning rates are low enough that rounding differences (1e-7) do not grow past the
# criterion over the 80 steps: the CNN at lr 0.01 on random labels doubles them every 7 steps.
# The GPT learns by SGD: under AdamW the gradient of attention's key bias, 0 in exact
# arithmetic, is rounding noise that AdamW scales up to steps of lr, whose sign depends on the
# summation order (parity.sh): 8 to 27 times the criterion in that tensor alone, 0.01 elsewhere.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}
started=$(date +%s)

write_cifar "$work/cifar" 200 50
write_text "$work/text.txt" 3000

# The search measures at most 8 plans by default, in 3 rounds of a warm-up step (one more at
# the run's start) and 3, 6, 12 measured steps, keeping at most half each time:
# 1 + 8 x 4 + 4 x 7 + 2 x 13 = 87 steps at most; 130 steps leave the chosen plan at least 43.
cat >"$work/mlp.ini" <<'INI'
[run]
steps = 130
[data]
kind = synthetic
features = 64
classes = 10
samples = 1000
test_samples = 100
batch = 64
[model]
layers = linear:256, relu, linear:10
[optim]
kind = sgd
lr = 0.05
momentum = 0.9
lr_schedule = cosine
INI
cat >"$work/cnn.ini" <<INI
[run]
steps = 130
[data]
kind = cifar10
path = $work/cifar
batch = 64
[model]
layers = conv:8:3:1:1, relu, maxpool:2, conv:16:3:1:1, relu, maxpool:2, flatten, linear:32,
    relu, linear:10
[optim]
kind = sgd
lr = 0.003
momentum = 0.9
lr_schedule = cosine
INI
cat >"$work/gpt.ini" <<INI
[run]
steps = 130
[data]
kind = text
path = $work/text.txt
context = 16
batch = 32
[model]
layers = embed:256:16, pos, dropout:10, block:2, block:4, ln, linear:256
[optim]
kind = sgd
lr = 0.01
momentum = 0.9
lr_schedule = cosine
INI

# run NAME INI OPTIONS...: a headless run with metrics ($work/NAME.jsonl) and the final
# parameters ($work/NAME.safetensors); false when it did not exit 0.
run() {
    name=$1 ini=$2
    shift 2
    timeout 300 "$DPMPTOP" -c "$work/$ini.ini" --headless --save "$work/$name.safetensors" \
        --metrics "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 && return
    fail "$name: exit $?: $(tail -n 3 "$work/$name.out")"
    return 1
}

# same REFERENCE NAME: NAME's parameters are REFERENCE's within DDP's criterion.
same() {
    if d=$("$compare" "$work/$1.safetensors" "$work/$2.safetensors" 1.3e-6 1e-5); then
        echo "$2: parameters as $1's ($d of the criterion)"
    else
        fail "$2: parameters differ from $1's: largest |a - b| / (1e-5 + 1.3e-6 |a|) = $d"
    fi
}

# table NAME [mem] [limit=BYTES] [bn=micro|nomicro]: checks the advice records of
# $work/NAME.jsonl (python3, as lib.sh's writers): one table and its outcome; the chosen plan
# is measured, has the most measured steps and the least step time among those, and is the
# plan the run switched to last. mem: every plan was measured (no plan left out), and each
# device's peak is within 15 % of the prediction (prints the worst ratio). limit: exactly the
# plans predicted over BYTES on some device are left out, saying "needs X on D, which has Y",
# and no measured peak exceeds BYTES. bn=nomicro: exactly the pipelines of several
# micro-batches are left out, for batch normalisation; bn=micro: some are in the table, none
# left out for it.
table() {
    python3 - "$work/$1.jsonl" "$@" <<'PY' || fail "$1: the advice table: see above"
import json, re, sys
path, name, opts = sys.argv[1], sys.argv[2], sys.argv[3:]
recs = [json.loads(line) for line in open(path)]
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
outs = [r for r in recs if r['type'] == 'advice_outcome']
adv = [r for r in recs if r['type'] == 'advice']
switches = [r for r in recs if r['type'] == 'switch']
check(len(outs) == 1, f'{len(outs)} advice_outcome records, not 1')
if outs:
    out = outs[0]
    check(out['plans'] == len(adv), f"outcome says {out['plans']} plans, {len(adv)} advice records")
    check(all(r['step'] == out['step'] for r in adv), 'advice records of another step')
    chosen = [r for r in adv if r['chosen']]
    check(isinstance(out['chosen'], str) and len(chosen) == 1 and chosen[0]['plan'] == out['chosen'],
          f"outcome chose {out['chosen']!r}, the table marks {[r['plan'] for r in chosen]}")
    check(out['measured'] == sum(r['measured'] for r in adv), 'outcome miscounts the measured plans')
    if len(chosen) == 1:
        c = chosen[0]
        longest = max(r['steps'] for r in adv)
        rivals = [r for r in adv if r['measured'] and r['steps'] == longest]
        check(c['measured'] and c['left_out'] is None and not c['dropped'],
              f"the chosen plan is not measured and kept: {c}")
        check(c['steps'] == longest, f"chosen {c['plan']} measured {c['steps']} steps, another {longest}")
        fastest = min(rivals, key=lambda r: r['step_ms'])
        check(c['step_ms'] == fastest['step_ms'],
              f"chosen {c['plan']} ({c['step_ms']} ms) is slower than {fastest['plan']} ({fastest['step_ms']} ms)")
        plan = re.sub(r' \(.* unused\)$', '', c['plan'])
        if switches:
            check(switches[-1]['to'] == plan,
                  f"the run's last switch is to {switches[-1]['to']!r}, not the chosen {plan!r}")
        print(f"{name}: chose {c['plan']} ({c['step_ms']:.3f} ms) of {out['plans']} plans, "
              f"{out['measured']} measured, over steps {out['first_step']}-{out['last_step']}")
    for r in adv:
        need = max((m['predicted_bytes'] for m in r['memory']), default=0)
        why = r['left_out'] or ''
        deeper = why.startswith('the model has ')  # more stages than layers: no plan
        if deeper:
            check(r['memory'] == [] and not r['measured'] and
                  re.fullmatch(r'the model has [0-9]+ layers? with parameters: at most [0-9]+ stages?', why),
                  f"{r['plan']}: {why!r}")
        if 'mem' in opts and not deeper:
            check(r['measured'] and r['left_out'] is None, f"{r['plan']} not measured: {why}")
        for m in r['memory'] if r['measured'] else []:
            check(m['peak_bytes'] is not None and m['peak_bytes'] > 0,
                  f"{r['plan']}: no peak on {m['device']}")
        for o in opts:
            if o.startswith('limit='):
                limit = int(o[6:])
                over = need > limit
                check(over == why.startswith('needs '),
                      f"{r['plan']} needs {need} of {limit} bytes, left out: {why!r}")
                if over:
                    check(re.fullmatch(r'needs [0-9.]+ [KMG]?i?B on cpu:[0-9]+, which has [0-9.]+ [KMG]?i?B', why),
                          f"{r['plan']}: {why!r}")
                for m in r['memory'] if r['measured'] else []:
                    check(m['peak_bytes'] <= limit, f"{r['plan']} used {m['peak_bytes']} on {m['device']}")
            if o.startswith('bn='):
                micro = r['strategy'] in ('pp', 'hybrid') and r['micro'] > 1
                for_bn = 'batch normalisation' in why
                check(for_bn == (micro and o == 'bn=nomicro'), f"{r['plan']}: left out: {why!r}")
    if 'mem' in opts:
        worst = max(((m['peak_bytes'] / m['predicted_bytes'], r['plan'], m['device'])
                     for r in adv for m in r['memory'] if m['peak_bytes']),
                    key=lambda w: abs(w[0] - 1), default=None)
        for r in adv:
            for m in r['memory']:
                if m['peak_bytes']:
                    check(abs(m['peak_bytes'] - m['predicted_bytes']) <= 0.15 * m['predicted_bytes'],
                          f"{r['plan']} on {m['device']}: peak {m['peak_bytes']}, predicted {m['predicted_bytes']}")
        if worst:
            pairs = sum(1 for r in adv for m in r['memory'] if m['peak_bytes'])
            print(f"{name}: worst measured peak / predicted of {pairs} (plan, device) pairs: "
                  f"{worst[0]:.6f} ({worst[1]}, {worst[2]})")
    if any(o == 'bn=micro' for o in opts):
        check(any(r['strategy'] == 'pp' and r['micro'] > 1 and r['left_out'] is None for r in adv),
              'auto_bn_micro = true, yet no pipeline of several micro-batches is in the table')
for b in bad:
    print(f'FAIL: {name}: {b}', file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# ---- 1. the search is invisible to the result; the choice is its table's best ----
for model in mlp cnn gpt; do
    run "$model-single" "$model" --devices cpu:1 --strategy single
    for n in 2 4; do
        name=$model-auto$n
        run "$name" "$model" --devices "cpu:$n" --strategy auto || continue
        table "$name"
        grep -q "^plan advisor: chose " "$work/$name.out" || fail "$name: no headless table"
        # its columns line up, plan names with unused devices ("... (from cpu:2 unused)") too:
        # every row's MFU ends where the header's does
        awk '/^plan advisor: / { table = 1; next }
             table && /^  plan / { col = index($0, "memory (measured") - 2; next }
             table && !/^[ *] / { table = 0 }
             table && (substr($0, col, 2) != "  " || substr($0, col - 1, 1) == " ") {
                 print "FAIL: misaligned: " $0 > "/dev/stderr"; bad = 1 }
             END { exit bad || !col }' "$work/$name.out" || fail "$name: the headless table"
        same "$model-single" "$name"
    done
done

# --switch-at and auto both choose the plan: refused before any step (a switch by hand from the
# dashboard during the search stops it: tests/advisor-dashboard.sh)
if "$DPMPTOP" --headless -c "$work/mlp.ini" --devices cpu:2 --strategy auto --switch-at 5:pp \
    >"$work/hand.out" 2>"$work/hand.err"; then
    fail "mlp-hand: --switch-at with auto accepted"
else
    [ $? -eq 2 ] && grep -q "switch-at and strategy = auto both choose the plan" "$work/hand.err" ||
        fail "mlp-hand: $(cat "$work/hand.err")"
fi

# ---- 2. the memory prediction against the measured peak, every plan measured ----
# 26 plans on cpu:4 take about 8 steps each through the 3 rounds
for model in mlp cnn gpt; do
    for n in 2 4; do
        name=$model-all$n
        run "$name" "$model" --devices "cpu:$n" --strategy auto --steps 400 \
            --set parallel.auto_plans=0 && table "$name" mem
    done
done

# ---- 3. refusals ----
# A model whose first layer (256 x 1024) outweighs 3 MiB: its plans' needs on cpu:2, from
# the prediction of an unlimited run, set the limits below.
sed -e 's/^features = .*/features = 256/' -e 's/^layers = .*/layers = linear:1024, relu, linear:10/' \
    "$work/mlp.ini" >"$work/big.ini"
set --
if run big-all big --devices cpu:2 --strategy auto --set parallel.auto_plans=0 &&
    table big-all mem; then
    # prints: the smallest plan's need, its name, the largest plan's need, the smallest's need
    # as dp_advice_bytes writes it, and the device that needs it
    needs=$(python3 - "$work/big-all.jsonl" <<'PY'
import json, sys
adv = [r for r in map(json.loads, open(sys.argv[1])) if r['type'] == 'advice']
def need(r):
    return max((m['predicted_bytes'], m['device']) for m in r['memory'])
small = min(adv, key=need)
def text(b):
    u = 0
    while b >= 1024 and u < 4:
        b, u = b / 1024, u + 1
    return ('%.1f %s' if u else '%.0f %s') % (b, ['B', 'KiB', 'MiB', 'GiB', 'TiB'][u])
print(need(small)[0], small['plan'].replace(' ', '_'), max(need(r)[0] for r in adv),
      text(need(small)[0]).replace(' ', '_'), need(small)[1])
PY
) || fail "big-all: no needs in its advice records"
    set -- $needs
fi
if [ $# -eq 5 ]; then
    least=$1 smallest=$(echo "$2" | tr _ ' ') most=$3 least_text=$(echo "$4" | tr _ ' ') on=$5
    # no plan fits: refused before training, naming the smallest plan and its need
    limit=$((least * 9 / 10))
    expect_exit 2 "^dpmptop: \[parallel\] strategy = auto: no plan fits the devices' memory: the smallest, $smallest, needs $least_text on $on, which has " -- \
        "$DPMPTOP" -c "$work/big.ini" --headless --devices cpu:2 --strategy auto \
        --set "parallel.device_memory=$limit" --metrics "$work/refused.jsonl"
    [ "$(grep -c "^  .* needs [0-9.]* [KMG]*i*B on cpu:[0-9], which has " "$work/err")" -eq \
        "$(grep -c '"type":"advice"' "$work/big-all.jsonl")" ] ||
        fail "no plan fits: not every plan listed with its need: $(cat "$work/err")"
    grep -q '"type":"step"' "$work/refused.jsonl" 2>/dev/null && fail "no plan fits: it trained"
    # some plans fit: the others are left out, and the run uses only those that fit
    limit=$(((least + most) / 2))
    if run big-some big --devices cpu:2 --strategy auto --set parallel.auto_plans=0 \
        --set "parallel.device_memory=$limit"; then
        table big-some "limit=$limit"
        grep -q '"left_out":"needs ' "$work/big-some.jsonl" || fail "big-some: no plan left out"
        # single does not fit: the run starts on the plan that needs least, on both devices
        grep '"type":"device","step":1,' "$work/big-some.jsonl" | grep -q '"role":"single"' &&
            fail "big-some: the first step ran on one device, which single does not fit"
        grep '"type":"device"' "$work/big-some.jsonl" | grep -o '"mem_peak_bytes":[0-9]*' |
            awk -F: -v limit="$limit" '$2 > limit { bad = 1 } END { exit bad }' ||
            fail "big-some: a device's peak exceeds the limit of $limit bytes"
    fi
fi

# malformed sizes: exit 2 with one line that says what is expected
for size in 0 -1 12Q 512Mx M "512 M" 1e30 512 nan; do
    expect_exit 2 "^dpmptop: \[parallel\] device_memory: expected a size from 1M to 1024T" -- \
        "$DPMPTOP" -c "$work/mlp.ini" --headless --devices cpu:2 --strategy auto \
        --set "parallel.device_memory=$size"
    [ "$(wc -l <"$work/err")" -eq 1 ] || fail "device_memory=$size: not one line: $(cat "$work/err")"
done
for size in 64M 1.5G 512Mi 2GiB; do
    expect_exit 0 "" -- "$DPMPTOP" -c "$work/mlp.ini" --headless --devices cpu:2 \
        --strategy auto --steps 2 --set "parallel.device_memory=$size"
done

# a GAN: both of its models train together, and auto cannot plan that yet (refused before
# the data is read)
for how in "--strategy auto" "--set parallel.strategy=auto"; do
    expect_exit 2 "^dpmptop: \[parallel\] strategy = auto cannot plan a GAN yet" -- \
        "$DPMPTOP" -c "$srcdir/examples/fashion-gan.ini" --headless --devices cpu:2 $how \
        --set data.path="$work/none"
done

# batch normalisation: pipelines of several micro-batches would normalise each on its own,
# so the search leaves them out (and ends where one device does), unless auto_bn_micro
sed -e 's/^layers = .*/layers = linear:64, bn, relu, linear:32, bn, relu, linear:10/' \
    "$work/mlp.ini" >"$work/bn.ini"
run bn-single bn --devices cpu:1 --strategy single
for n in 2 4; do
    run "bn-auto$n" bn --devices "cpu:$n" --strategy auto --set parallel.auto_plans=0 &&
        table "bn-auto$n" bn=nomicro && same bn-single "bn-auto$n"
    run "bn-micro$n" bn --devices "cpu:$n" --strategy auto --set parallel.auto_plans=0 \
        --set parallel.auto_bn_micro=true --steps 400 && table "bn-micro$n" bn=micro
done

# ---- 4. under mpirun: every process measures, rank 0 decides and writes the table ----
if command -v mpirun >/dev/null && "$DPMPTOP" --version | grep -q "with MPI"; then
    root=
    [ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
    for case in mlp:1 mlp:2 cnn:2; do
        model=${case%:*} n=${case#*:}
        name=mpi-$model-$n
        timeout 300 mpirun $root --oversubscribe -np 2 "$DPMPTOP" -c "$work/$model.ini" \
            --headless --devices "cpu:$n" --strategy auto --save "$work/$name.safetensors" \
            --metrics "$work/$name.jsonl" >"$work/$name.out" 2>&1 ||
            { fail "$name: exit $?: $(tail -n 3 "$work/$name.out")"; continue; }
        table "$name"
        [ "$(grep -c '^plan advisor: ' "$work/$name.out")" -eq 1 ] ||
            fail "$name: not one table (rank 0's): $(grep -c '^plan advisor: ' "$work/$name.out")"
        same "$model-single" "$name"
        [ -f "$work/$model-auto2.safetensors" ] && same "$model-auto2" "$name"
    done
else
    echo "mpirun or MPI missing: the cross-process cases are not run"
fi
echo "advisor.sh: $(($(date +%s) - started)) s"
finish
