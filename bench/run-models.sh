#!/bin/sh
# run-models.sh -- dpmptop against PyTorch on the example models examples/fashion-cnn.ini
# (Fashion-MNIST), examples/tiny-gpt.ini and examples/tiny-bert.ini (text:
# /usr/share/games/fortunes; the BERT a masked language model, its masks the same in both), each
#   (a) speed: training samples/s of dpmptop on one CPU device (--devices cpu:1: every core in
#       its GEMMs) and on two data-parallel devices (cpu:2, the default without a GPU), read from
#       its --metrics step records, and of PyTorch (bench/torch_train.py: the same model, batch
#       and data; every core with OpenMP's busy-wait, every core with OMP_WAIT_POLICY=PASSIVE,
#       one thread), over --speed-steps steps after --warmup steps. The programs run one after
#       the other in --rounds rounds, the order reversed every other round; each keeps its
#       best round (a shared machine only ever makes a round slower). The GPT's speed runs read
#       the first bytes of the corpus only (enough windows for the steps), so that the
#       evaluation dpmptop always runs at the end is short (a step's cost does not depend on
#       the text);
#   (b) quality: the same run in both from dpmptop's initial weights (its --save after one step
#       of plain SGD at lr 1e-30: only zeros move, by about 1e-30), data in file order
#       (shuffle off, so both see the same batches), --steps steps with an evaluation every
#       --eval-every steps (the cosine schedule ends at --steps): both evaluation curves and the
#       final accuracy (fashion-cnn), bits per byte (tiny-gpt) or masked accuracy and bits per
#       masked byte (tiny-bert) of each, and their ratio.
# A part whose data is missing is skipped: Fashion-MNIST without /usr/share/datasets/fashion-mnist
# (Debian's dataset-fashion-mnist), the GPT and the BERT without /usr/share/games/fortunes
# (fortunes).
#
# Usage: bench/run-models.sh [--models "fashion-cnn tiny-gpt tiny-bert"] [--speed-steps 60]
#            [--warmup 5] [--rounds 2] [--steps 100] [--eval-every 50] [--no-speed] [--no-quality]
# e.g. the full GPT comparison:
#        bench/run-models.sh --models tiny-gpt --no-speed --steps 1000 --eval-every 100
#      and the BERT's (issue 19's goals):
#        bench/run-models.sh --models tiny-bert --steps 1000 --eval-every 100
#
# Binaries: $DPMPTOP_BUILD, else the current directory when it holds dpmptop, else the source
# tree this script sits in. PyTorch: $TORCH_PYTHON, default Debian's /usr/bin/python3.
set -eu
. "$(dirname "$0")/lib.sh"

models="fashion-cnn tiny-gpt tiny-bert" speed_steps=60 warm=5 rounds=2 qsteps=100 every=50
do_speed=yes do_quality=yes
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=$2; shift ;;
    --speed-steps) speed_steps=$2; shift ;;
    --warmup) warm=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --steps) qsteps=$2; shift ;;
    --eval-every) every=$2; shift ;;
    --no-speed) do_speed=no ;;
    --no-quality) do_quality=no ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-models.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

find_build
bench_setup run-models.sh
train_py=$src/bench/torch_train.py

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
# conf INI SECTION KEY: the effective value of a key (dpmptop --print-config).
conf() {
    "$dp" -c "$1" --print-config |
        awk -v s="[$2]" -v k="$3" '/^\[/ { in_s = $0 == s } in_s && $1 == k { print $3; exit }'
}
# metrics_rate FILE: training samples/s over the step records after the warm-up (the batches
# are full, so the harmonic mean of the per-step rates).
metrics_rate() {
    awk -v w="$warm" '
        function num(k) {
            if (!match($0, "\"" k "\":[-0-9.eE+]+")) return 0
            return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0
        }
        /"type":"step"/ && num("step") > w && num("samples_per_s") > 0 {
            n++; inv += 1 / num("samples_per_s")
        }
        END { if (n) printf "%.1f", n / inv; else print 0 }' "$1"
}
# metrics_split FILE: each device's mean compute, comm and idle ms per step after the warm-up.
metrics_split() {
    awk -v w="$warm" '
        function num(k) {
            if (!match($0, "\"" k "\":[-0-9.eE+]+")) return 0
            return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0
        }
        /"type":"device"/ && num("step") > w {
            match($0, "\"device\":\"[^\"]*\""); d = substr($0, RSTART + 10, RLENGTH - 11)
            if (!(d in n)) order[++devs] = d
            n[d]++; c[d] += num("compute_s"); m[d] += num("comm_s"); i[d] += num("idle_s")
        }
        END { for (k = 1; k <= devs; k++) { d = order[k]
                  printf "%s%s %.0f/%.0f/%.0f", (k > 1 ? ", " : ""), d, 1e3 * c[d] / n[d],
                         1e3 * m[d] / n[d], 1e3 * i[d] / n[d] } }' "$1"
}
# evals FILE: "step loss bits accuracy" for each evaluation line (dpmptop's and torch_train.py's
# are the same text; a masked language model's are per masked byte); bits is - for images.
evals() {
    awk '/^step [0-9]+, epoch [0-9]+: (masked )?test loss/ {
            s = $2; sub(",", "", s); loss = bits = acc = "-"
            for (i = 3; i < NF; i++) {
                if ($i == "loss") { loss = $(i + 1); sub(",", "", loss) }
                if ($(i + 1) == "bits") { bits = $i; sub("\\(", "", bits) }
                if ($i == "accuracy") acc = $(i + 1)
            }
            print s, loss, bits, acc
        }' "$1"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "== $cpu, $cores cores; load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "$("$python" -c 'import torch; print("torch", torch.__version__)')"
echo "   models: $models; speed: $speed_steps steps after $warm, $rounds rounds;" \
     "quality: $qsteps steps, eval every $every"
started=$(date +%s)
torch_cfgs="$cores|$cores --passive"
[ "$cores" -gt 1 ] && torch_cfgs="$torch_cfgs|1"

# speed MODEL: part (a) for one model; appends to $tmp/speed.txt, split.txt and torch.txt.
speed() {
    m=$1
    echo
    echo "== $m: speed, $speed_steps steps after $warm of batch $batch, data in file order"
    programs="dp cpu:1|torch $cores|dp cpu:2|torch $cores --passive"
    [ "$cores" -gt 1 ] && programs="$programs|torch 1"
    r=1
    while [ "$r" -le "$rounds" ]; do
        list=$(printf '%s\n' "$programs" | tr '|' '\n')
        [ $((r % 2)) -eq 0 ] && list=$(printf '%s\n' "$list" | sed -n '1!G;h;$p')
        printf '%s\n' "$list" | while read -r prog arg; do
            key=$(printf '%s %s' "$prog" "$arg" | tr -c 'a-z0-9\n' '_')
            if [ "$prog" = dp ]; then
                rm -f "$tmp/speed.jsonl"
                # shellcheck disable=SC2086 # $speed_sets is a list of options, split on purpose
                "$dp" -c "$ini" --headless --devices "$arg" --steps $((warm + speed_steps)) \
                    --set data.shuffle=false --set run.eval_every=0 $speed_sets \
                    --metrics "$tmp/speed.jsonl" >"$tmp/dp.out" 2>&1 ||
                    { echo "dpmptop failed:"; tail -5 "$tmp/dp.out"; }
                rate=$(metrics_rate "$tmp/speed.jsonl" 2>/dev/null || echo 0)
                label="dpmptop $arg"
                extra=" (compute/comm/idle ms per step: $(metrics_split "$tmp/speed.jsonl" \
                                                               2>/dev/null || true))"
            else
                # shellcheck disable=SC2086 # $speed_sets, $arg: lists of options
                line=$("$python" "$train_py" -c "$ini" --set data.shuffle=false $speed_sets \
                       --steps $((warm + speed_steps)) --skip "$warm" --no-eval \
                       --threads $arg </dev/null 2>"$tmp/torch.err" | tail -n 1)
                [ -n "$line" ] || { echo "torch_train.py failed:"; tail -5 "$tmp/torch.err"; }
                rate=$(kv samples_per_s "$line")
                label="PyTorch omp $(kv threads "$line"), blas $(kv blas_threads "$line")"
                [ "$(kv omp_wait "$line")" = passive ] && label="$label, passive"
                extra=""
            fi
            echo "round $r: $label: ${rate:-0} samples/s$extra"
            best=$(cat "$tmp/$m.$key" 2>/dev/null || echo 0)
            if awk -v a="${rate:-0}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                printf '%s\n' "$rate" >"$tmp/$m.$key"
                printf '%s\n' "$label" >"$tmp/$m.$key.label"
                if [ "$prog" = dp ]; then
                    printf '%s|%s|%s\n' "$m" "$arg" \
                        "$(metrics_split "$tmp/speed.jsonl" 2>/dev/null || true)" \
                        >"$tmp/$m.$key.split"
                fi
            fi
        done
        r=$((r + 1))
    done
    dp1=$(cat "$tmp/$m.dp_cpu_1") dp2=$(cat "$tmp/$m.dp_cpu_2")
    tbest=0 tlabel=-
    for f in "$tmp/$m".torch_*; do
        case $f in *.label) continue ;; esac
        printf '%s|%s|%.1f\n' "$m" "$(cat "$f.label")" "$(cat "$f")" >>"$tmp/torch.txt"
        if awk -v a="$(cat "$f")" -v b="$tbest" 'BEGIN { exit !(a > b) }'; then
            tbest=$(cat "$f") tlabel=$(sed 's/^PyTorch //' "$f.label")
        fi
    done
    printf '%s|%s|%.1f|%.1f|%.1f (%s)|%s|%s\n' "$m" "$batch" "$dp1" "$dp2" "$tbest" "$tlabel" \
        "$(ratio "$dp1" "$tbest")" "$(ratio "$dp2" "$tbest")" >>"$tmp/speed.txt"
    cat "$tmp/$m".dp_*.split >>"$tmp/split.txt"
}

# quality MODEL: part (b) for one model; appends to $tmp/quality.txt.
quality() {
    m=$1
    echo
    echo "== $m: quality, $qsteps steps of batch $batch from the same initial weights," \
         "data in file order"
    # shellcheck disable=SC2086 # $init_sets is a list of options, split on purpose
    "$dp" -c "$ini" --headless --devices cpu:1 --steps 1 $init_sets --set optim.kind=sgd \
        --set optim.lr=1e-30 --set optim.momentum=0 --set optim.nesterov=false \
        --set optim.weight_decay=0 --set optim.warmup=0 --set optim.clip=0 \
        --save "$tmp/$m-init.safetensors" >"$tmp/init.out" 2>&1 ||
        { echo "dpmptop (initial weights) failed:"; tail -5 "$tmp/init.out"; return; }
    t0=$(date +%s)
    "$dp" -c "$ini" --headless --set data.shuffle=false --steps "$qsteps" \
        --set run.eval_every="$every" --init "$tmp/$m-init.safetensors" >"$tmp/$m-dp.out" 2>&1 ||
        { echo "dpmptop failed:"; tail -5 "$tmp/$m-dp.out"; }
    t1=$(date +%s)
    "$python" "$train_py" -c "$ini" --set data.shuffle=false --steps "$qsteps" \
        --set run.eval_every="$every" --init "$tmp/$m-init.safetensors" \
        --threads "$cores" --passive >"$tmp/$m-torch.out" 2>&1 ||
        { echo "torch_train.py failed:"; tail -5 "$tmp/$m-torch.out"; }
    t2=$(date +%s)
    echo "dpmptop: $(grep -E '^(done|failed|stopped|interrupted):' "$tmp/$m-dp.out" || true)" \
         "($((t1 - t0)) s with evaluations)"
    echo "PyTorch: samples/s $(kv samples_per_s "$(tail -n 1 "$tmp/$m-torch.out")")," \
         "final loss $(kv final_loss "$(tail -n 1 "$tmp/$m-torch.out")"), $((t2 - t1)) s"
    evals "$tmp/$m-dp.out" >"$tmp/$m-dp.ev"
    evals "$tmp/$m-torch.out" >"$tmp/$m-torch.ev"
    # measures as "name:column" of evals' output
    if [ "$mlm" = yes ]; then measures="bits/masked byte:3 masked accuracy:4"
    elif [ "$text" = yes ]; then measures="bits/byte:3"
    else measures="accuracy:4"; fi
    printf '%s\n' "$measures" | sed 's/:\([0-9]\) */:\1\n/g' | sed '/^$/d' |
        while IFS=: read -r what col; do
            {
                echo "step|dpmptop loss|PyTorch loss|dpmptop $what|PyTorch $what"
                awk -v c="$col" 'NR == FNR { l[$1] = $2; v[$1] = $c; next }
                                 { printf "%s|%s|%s|%s|%s\n", $1, l[$1], $2, v[$1], $c }' \
                    "$tmp/$m-dp.ev" "$tmp/$m-torch.ev"
            } | table
            a=$(tail -n 1 "$tmp/$m-dp.ev" | cut -d' ' -f"$col")
            b=$(tail -n 1 "$tmp/$m-torch.ev" | cut -d' ' -f"$col")
            printf '%s|%s|%s|%s|%s|%s\n' "$m" "$qsteps" "$what" "${a:--}" "${b:--}" \
                "$(ratio "${a:-0}" "${b:-0}")" >>"$tmp/quality.txt"
        done
}

for m in $models; do
    ini=$src/examples/$m.ini
    [ -f "$ini" ] || { echo "run-models.sh: no $ini" >&2; exit 2; }
    batch=$(conf "$ini" data batch)
    speed_sets="" init_sets="--set data.limit=$batch"
    text=no mlm=no
    [ "$(conf "$ini" model objective)" = mlm ] && mlm=yes
    case $(conf "$ini" data kind) in
    text)
        text=yes
        path=$(conf "$ini" data path)
        if [ ! -e "$path" ]; then
            echo
            echo "== $m: skipped: no $path (apt-get install fortunes)"
            continue
        fi
        # The corpus's first bytes: windows for every speed step, plus a tenth held out.
        context=$(conf "$ini" data context)
        need=$(((((warm + speed_steps) * batch + 1) * context + 2) * 10 / 9 + 2 * context))
        [ "$need" -ge $((20 * context)) ] || need=$((20 * context))
        "$python" -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import torch_train
sys.stdout.buffer.write(torch_train.read_text(sys.argv[2])[:int(sys.argv[3])])' \
            "$src/bench" "$path" "$need" >"$tmp/$m-corpus.txt"
        speed_sets="--set data.path=$tmp/$m-corpus.txt"
        init_sets="--set data.path=$tmp/$m-corpus.txt"
        ;;
    fashion-mnist)
        path=$(conf "$ini" data path)
        if [ ! -d "${path:-/usr/share/datasets/fashion-mnist}" ]; then
            echo
            echo "== $m: skipped: no ${path:-/usr/share/datasets/fashion-mnist}" \
                 "(apt-get install dataset-fashion-mnist)"
            continue
        fi
        ;;
    esac
    [ "$do_speed" = yes ] && speed "$m"
    [ "$do_quality" = yes ] && quality "$m"
done

echo
echo "== summary ($(($(date +%s) - started)) s; load $(cut -d' ' -f1-3 /proc/loadavg))"
if [ -f "$tmp/speed.txt" ]; then
    echo
    {
        printf '%s%s\n' "model|batch|dpmptop cpu:1/s|dpmptop cpu:2/s|PyTorch best/s (threads)|" \
            "cpu:1 ratio|cpu:2 ratio"
        cat "$tmp/speed.txt"
    } | table
    echo
    { echo "model|dpmptop devices|per device: compute/comm/idle ms per step"
      cat "$tmp/split.txt"; } | table
    echo
    { echo "model|PyTorch setting|samples/s"; cat "$tmp/torch.txt"; } | table
    echo
    echo "ratio: dpmptop's training samples/s over the best PyTorch setting's (best of $rounds" \
         "rounds each)."
fi
if [ -f "$tmp/quality.txt" ]; then
    echo
    { echo "model|steps|measure|dpmptop|PyTorch|ratio"; cat "$tmp/quality.txt"; } | table
    echo
    echo "quality: the last evaluation of the same run in both (same initial weights, batches," \
         "optimizer and schedule); ratio dpmptop over PyTorch."
fi
