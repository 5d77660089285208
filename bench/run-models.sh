#!/bin/sh
# run-models.sh -- dpmptop against PyTorch on the example models examples/fashion-cnn.ini and
# examples/fashion-resnet.ini (Fashion-MNIST), examples/cifar-resnet.ini (CIFAR-10),
# examples/tiny-gpt.ini and examples/tiny-bert.ini (text: /usr/share/games/fortunes; the BERT a
# masked language model, its masks the same in both), each
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
# The convolutional models (those with conv or deconv layers) have two parts more:
#   (c) the share of a step in the convolution primitives: bench/dpmptop-bench on one CPU device
#       (every core; random data of the model's input shape) with [run] convolutions = library
#       (oneDNN's primitives) and = im2col (the engine's own im2col and GEMMs): the step's time
#       under each, and under library the time in oneDNN's primitives (the device's profile,
#       library_s) over the step's; --speed-steps steps after its warm-up, the best of --rounds
#       rounds; with the speed part (--no-speed leaves it out);
#   (d) peak memory on cpu:1 under both settings: the device's peak engine memory
#       (mem_peak_bytes of --metrics' device records: parameters, gradients, optimizer state,
#       activations and the layers' scratch, where im2col keeps its patches) over --warmup steps,
#       library over im2col, and the process's maximum resident size (/usr/bin/time), which
#       also holds what the engine does not count (the data, oneDNN's scratchpad) (--no-memory
#       leaves it out).
# Before both programs train a model, its parameter count in PyTorch is checked against
# dpmptop's banner (a line says when they differ).
# A part whose data is missing is skipped: Fashion-MNIST without /usr/share/datasets/fashion-mnist
# (Debian's dataset-fashion-mnist), the GPT and the BERT without /usr/share/games/fortunes
# (fortunes). Without CIFAR-10 (the binary version's directory, cifar-10-batches-bin from
# https://www.cs.toronto.edu/~kriz/cifar.html; --cifar10 DIR, default the example's data.path,
# relative to the current directory) cifar-resnet's speed and memory parts run on random images
# of CIFAR's shape (a random set in CIFAR-10's binary format, which both programs read) and its
# quality part is skipped.
#
# Usage: bench/run-models.sh
#            [--models "fashion-cnn fashion-resnet cifar-resnet tiny-gpt tiny-bert"]
#            [--speed-steps 60] [--warmup 5] [--rounds 2] [--steps 100] [--eval-every 50]
#            [--cifar10 DIR] [--no-speed] [--no-quality] [--no-memory]
# e.g. the full GPT comparison:
#        bench/run-models.sh --models tiny-gpt --no-speed --steps 1000 --eval-every 100
#      and the BERT's (issue 19's goals):
#        bench/run-models.sh --models tiny-bert --steps 1000 --eval-every 100
#      and the convolutional networks' speed, share and memory (issue 21's):
#        bench/run-models.sh --models "fashion-cnn fashion-resnet cifar-resnet" --no-quality
#
# Binaries: $DPMPTOP_BUILD, else the current directory when it holds dpmptop, else the source
# tree this script sits in. PyTorch: $TORCH_PYTHON, default Debian's /usr/bin/python3.
set -eu
. "$(dirname "$0")/lib.sh"

models="fashion-cnn fashion-resnet cifar-resnet tiny-gpt tiny-bert"
speed_steps=60 warm=5 rounds=2 qsteps=100 every=50 cifar_dir=""
do_speed=yes do_quality=yes do_memory=yes
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=$2; shift ;;
    --speed-steps) speed_steps=$2; shift ;;
    --warmup) warm=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --steps) qsteps=$2; shift ;;
    --eval-every) every=$2; shift ;;
    --no-speed) do_speed=no ;;
    --cifar10) cifar_dir=$2; shift ;;
    --no-quality) do_quality=no ;;
    --no-memory) do_memory=no ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-models.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

find_build bench/dpmptop-bench
bench_setup run-models.sh
train_py=$src/bench/torch_train.py
bench_bin=$build/bench/dpmptop-bench
if [ -f "$build/Makefile" ]; then
    make -s -C "$build" bench/dpmptop-bench >"$tmp/make-bench.log" 2>&1 ||
        { echo "run-models.sh: make failed (using what is built):"; tail -5 "$tmp/make-bench.log"; }
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
# conf INI SECTION KEY: the effective value of a key (dpmptop --print-config), its indented
# continuation lines joined (a long layer list).
conf() {
    "$dp" -c "$1" --print-config |
        awk -v s="[$2]" -v k="$3" '
            found && /^[ \t]/ { sub(/^[ \t]+/, ""); v = v " " $0; next }
            found { exit }
            /^\[/ { in_s = $0 == s }
            in_s && $1 == k { found = 1; v = $0; sub(/^[^=]*= */, "", v) }
            END { if (found) print v }'
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
                    --set data.shuffle=false --set run.eval_every=0 $data_sets $speed_sets \
                    --metrics "$tmp/speed.jsonl" >"$tmp/dp.out" 2>&1 ||
                    { echo "dpmptop failed:"; tail -5 "$tmp/dp.out"; }
                rate=$(metrics_rate "$tmp/speed.jsonl" 2>/dev/null || echo 0)
                label="dpmptop $arg"
                extra=" (compute/comm/idle ms per step: $(metrics_split "$tmp/speed.jsonl" \
                                                               2>/dev/null || true))"
            else
                # shellcheck disable=SC2086 # $data_sets, $speed_sets, $arg: lists of options
                "$python" "$train_py" -c "$ini" --set data.shuffle=false $data_sets $speed_sets \
                    --steps $((warm + speed_steps)) --skip "$warm" --no-eval \
                    --threads $arg </dev/null >"$tmp/torch.out" 2>"$tmp/torch.err" || true
                line=$(tail -n 1 "$tmp/torch.out")
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
    check_params "$tmp/dp.out" "$tmp/torch.out"
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
    # shellcheck disable=SC2086 # $data_sets, $init_sets: lists of options, split on purpose
    "$dp" -c "$ini" --headless --devices cpu:1 --steps 1 $data_sets $init_sets \
        --set optim.kind=sgd --set optim.lr=1e-30 --set optim.momentum=0 \
        --set optim.nesterov=false --set optim.weight_decay=0 --set optim.warmup=0 \
        --set optim.clip=0 \
        --save "$tmp/$m-init.safetensors" >"$tmp/init.out" 2>&1 ||
        { echo "dpmptop (initial weights) failed:"; tail -5 "$tmp/init.out"; return; }
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$dp" -c "$ini" --headless --set data.shuffle=false $data_sets --steps "$qsteps" \
        --set run.eval_every="$every" --init "$tmp/$m-init.safetensors" >"$tmp/$m-dp.out" 2>&1 ||
        { echo "dpmptop failed:"; tail -5 "$tmp/$m-dp.out"; }
    t1=$(date +%s)
    # shellcheck disable=SC2086
    "$python" "$train_py" -c "$ini" --set data.shuffle=false $data_sets --steps "$qsteps" \
        --set run.eval_every="$every" --init "$tmp/$m-init.safetensors" \
        --threads "$cores" --passive >"$tmp/$m-torch.out" 2>&1 ||
        { echo "torch_train.py failed:"; tail -5 "$tmp/$m-torch.out"; }
    t2=$(date +%s)
    [ "$do_speed" = yes ] || check_params "$tmp/$m-dp.out" "$tmp/$m-torch.out"
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

# check_params DPMPTOP_OUT TORCH_OUT: both programs' parameter counts (their banners), and
# whether they are the same.
check_params() {
    a=$(sed -n 's/.*(\([0-9]*\) parameters).*/\1/p' "$1" | head -n 1)
    b=$(sed -n 's/.*; \([0-9]*\) parameters;.*/\1/p' "$2" | head -n 1)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then
        echo "parameters: $a in both"
    else
        echo "parameters DIFFER: dpmptop ${a:-?}, PyTorch ${b:-?}: not the same model"
    fi
}

# random_cifar DIR SAMPLES: a random set in CIFAR-10's binary format (records of a label byte
# and 3072 pixel bytes): SAMPLES training samples over the five data_batch files, one batch of
# test samples.
random_cifar() {
    mkdir -p "$1"
    "$python" -c 'import sys, numpy as np
out, n, test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
def write(name, records):
    r = rng.integers(0, 256, size=(records, 3073), dtype=np.uint8)
    r[:, 0] %= 10
    r.tofile(f"{out}/{name}")
for b in range(1, 6):
    write(f"data_batch_{b}.bin", (n + 4) // 5)
write("test_batch.bin", test)' "$1" "$2" "$batch"
}

# share MODEL SHAPE: part (c) for one model, its inputs of SHAPE (C:H:W); appends to
# $tmp/share.txt.
share() {
    m=$1
    echo
    echo "== $m: a step on one CPU device ($cores threads) by bench/dpmptop-bench, random data of" \
         "[$2], $speed_steps steps after its warm-up, best of $rounds rounds"
    [ -x "$bench_bin" ] || { echo "skipped: no $bench_bin (make bench/dpmptop-bench)"; return; }
    for c in library im2col; do
        "$bench_bin" --layers "$layers" --in "$2" --batch "$batch" --steps "$speed_steps" \
            --repeat "$rounds" --threads "$cores" --convolutions "$c" >"$tmp/bench-$c.out" 2>&1 ||
            { echo "dpmptop-bench failed:"; tail -5 "$tmp/bench-$c.out"; return; }
        grep '^# engine\|^# the library' "$tmp/bench-$c.out" | sed "s/^# /$c: /"
    done
    # model|batch|im2col ms|library ms|speed-up|ms in the primitives|their share
    awk -v m="$m" -v b="$batch" '
        function num(k) { return match($0, " " k "=[-0-9.e+]+") ? \
                                 substr($0, RSTART + length(k) + 2, RLENGTH - length(k) - 2) : 0 }
        FNR == 1 { f++ } # the first file im2col, the second library
        /^train / && f == 1 { own = num("step_us") }
        /^train / && f == 2 { lib = num("step_us"); prim = num("library_us")
                              frac = num("library_frac") }
        END { printf "%s|%s|%.1f|%.1f|%.2f|%.1f|%.0f%%\n", m, b, own / 1e3, lib / 1e3,
                     (lib > 0 ? own / lib : 0), prim / 1e3, 100 * frac }' \
        "$tmp/bench-im2col.out" "$tmp/bench-library.out" >>"$tmp/share.txt"
}

# mem_run SETTING: "ENGINE_PEAK ACTIVATIONS RSS" in bytes from a run of --warmup steps on cpu:1
# with [run] convolutions = SETTING: the largest of its device records' mem_peak_bytes and
# act_peak_bytes, and the process's maximum resident size (0 without /usr/bin/time).
mem_run() {
    rm -f "$tmp/mem.jsonl" "$tmp/rss"
    timer=""
    [ -x /usr/bin/time ] && timer="/usr/bin/time -f %M -o $tmp/rss"
    # shellcheck disable=SC2086 # $timer, $data_sets: lists of words, split on purpose
    $timer "$dp" -c "$ini" --headless --devices cpu:1 --steps "$warm" $data_sets \
        --set run.eval_every=0 --set run.convolutions="$1" --metrics "$tmp/mem.jsonl" \
        >"$tmp/mem.out" 2>&1 || { tail -5 "$tmp/mem.out" >&2; return 1; }
    awk -v kib="$(cat "$tmp/rss" 2>/dev/null || echo 0)" '
        function num(k) {
            if (!match($0, "\"" k "\":[0-9]+")) return 0
            return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0
        }
        /"type":"device"/ {
            if (num("mem_peak_bytes") > mem) mem = num("mem_peak_bytes")
            if (num("act_peak_bytes") > act) act = num("act_peak_bytes")
        }
        END { printf "%d %d %d\n", mem, act, 1024 * kib }' "$tmp/mem.jsonl"
}

# memory MODEL: part (d) for one model; appends to $tmp/memory.txt.
memory() {
    m=$1
    echo
    echo "== $m: peak memory on cpu:1 over $warm steps of batch $batch, convolutions = im2col" \
         "and library"
    own=$(mem_run im2col) || { echo "dpmptop (im2col) failed"; return; }
    lib=$(mem_run library) || { echo "dpmptop (library) failed"; return; }
    for run in "im2col $own" "library $lib"; do
        echo "$run" | awk '{ printf "%s: engine peak %.1f MiB (activations %.1f MiB), maximum " \
                                    "resident size %.1f MiB\n", $1, $2 / 1048576, $3 / 1048576,
                                    $4 / 1048576 }'
    done
    # model|batch|engine peak im2col|library|ratio|activations|maximum resident im2col|library
    echo "$own $lib" | awk -v m="$m" -v b="$batch" '
        function mib(x) { return sprintf("%.1f", x / 1048576) }
        { printf "%s|%s|%s|%s|%.2f|%s / %s|%s|%s\n", m, b, mib($1), mib($4),
                 ($1 > 0 ? $4 / $1 : 0), mib($2), mib($5), mib($3), mib($6) }' >>"$tmp/memory.txt"
}

for m in $models; do
    ini=$src/examples/$m.ini
    [ -f "$ini" ] || { echo "run-models.sh: no $ini" >&2; exit 2; }
    batch=$(conf "$ini" data batch)
    layers=$(conf "$ini" model layers)
    speed_sets="" init_sets="--set data.limit=$batch" data_sets="" random=no
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
    cifar10)
        path=${cifar_dir:-$(conf "$ini" data path)}
        if [ -d "$path" ]; then
            data_sets="--set data.path=$path"
        else
            echo
            echo "== $m: no CIFAR-10 at $path (the binary version's directory; --cifar10 DIR):" \
                 "speed and memory on random images of CIFAR's shape, quality skipped"
            # samples for every speed step and one batch more: no epoch ends among them
            random_cifar "$tmp/cifar-random" $(((warm + speed_steps + 1) * batch))
            data_sets="--set data.path=$tmp/cifar-random" random=yes
        fi
        ;;
    esac
    case $(conf "$ini" data kind) in
    fashion-mnist | mnist) shape=1:28:28 ;;
    cifar10) shape=3:32:32 ;;
    *) shape="" ;;
    esac
    [ "$do_speed" = yes ] && speed "$m"
    case $layers in *conv:*)
        [ "$do_speed" = yes ] && [ -n "$shape" ] && share "$m" "$shape"
        [ "$do_memory" = yes ] && memory "$m" ;;
    esac
    [ "$do_quality" = yes ] && [ "$random" = no ] && quality "$m"
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
if [ -f "$tmp/share.txt" ]; then
    echo
    { echo "model|batch|step ms, im2col|step ms, library|speed-up|ms in oneDNN's primitives|share"
      cat "$tmp/share.txt"; } | table
    echo
    echo "share: the time a step spends in oneDNN's convolution and pooling primitives over the" \
         "step's, dpmptop-bench on one CPU device (best of $rounds rounds each)."
fi
if [ -f "$tmp/memory.txt" ]; then
    echo
    { printf '%s%s\n' "model|batch|engine peak MiB, im2col|library|library/im2col|" \
          "activations MiB (im2col / library)|max resident MiB, im2col|library"
      cat "$tmp/memory.txt"; } | table
    echo
    echo "memory: the device's peak engine memory on cpu:1 (parameters, gradients, optimizer" \
         "state, activations, the layers' scratch); the resident size also holds the data and" \
         "oneDNN's scratchpad."
fi
if [ -f "$tmp/quality.txt" ]; then
    echo
    { echo "model|steps|measure|dpmptop|PyTorch|ratio"; cat "$tmp/quality.txt"; } | table
    echo
    echo "quality: the last evaluation of the same run in both (same initial weights, batches," \
         "optimizer and schedule); ratio dpmptop over PyTorch."
fi
