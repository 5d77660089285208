#!/bin/sh
# run-advisor.sh -- the plan advisor (--strategy auto, issue 20) against every plan run on its
# own: issue 20's "goals to measure".
#
#   (a) quality of the choice: for each model (examples/fashion-mlp.ini, fashion-cnn.ini,
#       tiny-gpt.ini) and device set (cpu:2, cpu:4), a headless --strategy auto run long
#       enough for the search to end (a bound from the plans it may measure) plus --warmup and
#       --steady steps under the chosen plan; its --metrics file gives the advisor's table and
#       choice. Then every plan of that table that fits (all but those left out for memory,
#       batch normalisation or a plan that cannot be made; those the search did not measure
#       included) runs on its own with --strategy/--stages/--microbatches/--schedule on the
#       same devices, --steps steps after --warmup, in --rounds rounds (the order reversed
#       every other round; each plan keeps its best round: a shared machine only ever makes a
#       round slower). A plan's steady samples/s is the harmonic mean of its step records'
#       samples/s after the warm-up (the batches are full: samples over time), or with
#       --median their median (deaf to the steps other work on a busy machine slowed).
#       Reported: the chosen plan's samples/s over the best plan's (goal >= 0.95), and the
#       auto run's own samples/s after the search over the same best.
#   (b) cost: a --cost-epochs (5) epoch fashion-cnn run on --cost-devices (cpu:2) under
#       --strategy auto against the same run with the plan the first auto run chose fixed from
#       the start, in --rounds rounds (reversed order every other round, best of each).
#       Training time: the run loop's wall time (the summary record's seconds: every step, the
#       search's switches and its own work, and the end-of-epoch evaluations, the same in both;
#       not the start-up or the data loading). Reported: the time auto adds (goal <= 5 %) and
#       how many plans it measured of how many.
#
# Data: the speed runs of (a) read a small copy of the data (a step's cost does not depend on
# the values): 64 batches of Fashion-MNIST (and 256 test images) or of text windows from
# /usr/share/games/fortunes; random images or random printable text when those are missing.
# The cost run (b) trains on the whole of Fashion-MNIST (random images of its size when it is
# missing) unless --cost-limit N keeps N training samples.
#
# Usage: bench/run-advisor.sh [--models "fashion-mlp fashion-cnn tiny-gpt"]
#            [--devices "cpu:2 cpu:4"] [--steps 30] [--warmup 5] [--rounds 2] [--steady 30]
#            [--auto-plans N] [--auto-steps N] [--device-memory SIZE] [--cost-epochs 5]
#            [--cost-devices cpu:2] [--cost-limit N] [--median] [--no-quality] [--no-cost]
#            [--quick]
# --quick: a smoke run: fashion-mlp only, 10 steps after 2, one round, and the cost run over
#   5 epochs of 1920 samples (two minutes on two busy cores). --auto-plans sets [parallel]
#   auto_plans (0: the search measures every plan that fits; default 8), --auto-steps the
#   steps the search may take (default 8 per plan it may measure, plus 8), --device-memory
#   [parallel] device_memory for every run. The full run takes about 35 minutes on two idle
#   cores (an hour or more on busy ones; --rounds 1 saves about 40 %).
#
# Binaries: $DPMPTOP_BUILD, else the current directory when it holds dpmptop, else the source
# tree this script sits in. Python (numpy): $ADVISOR_PYTHON, default /usr/bin/python3.
set -eu
. "$(dirname "$0")/lib.sh"

models="fashion-mlp fashion-cnn tiny-gpt" devsets="cpu:2 cpu:4" steps=30 warm=5 rounds=2
steady=30 auto_plans="" auto_steps="" device_memory="" cost_epochs=5 cost_devices=cpu:2
cost_limit=0 stat="harmonic mean" do_quality=yes do_cost=yes
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=$2; shift ;;
    --devices) devsets=$2; shift ;;
    --steps) steps=$2; shift ;;
    --warmup) warm=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --steady) steady=$2; shift ;;
    --auto-plans) auto_plans=$2; shift ;;
    --auto-steps) auto_steps=$2; shift ;;
    --device-memory) device_memory=$2; shift ;;
    --cost-epochs) cost_epochs=$2; shift ;;
    --cost-devices) cost_devices=$2; shift ;;
    --cost-limit) cost_limit=$2; shift ;;
    --median) stat=median ;;
    --no-quality) do_quality=no ;;
    --no-cost) do_cost=no ;;
    --quick) models=fashion-mlp steps=10 warm=2 rounds=1 steady=10 cost_limit=1920 ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-advisor.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

find_build
bench_program run-advisor.sh
python=${ADVISOR_PYTHON:-/usr/bin/python3}
helper=$src/bench/advisor_bench.py
"$python" -c 'import numpy' 2>/dev/null ||
    { echo "run-advisor.sh: $python has no numpy (apt-get install python3-numpy)" >&2; exit 1; }

# Options every run gets: the memory limit, when one is asked for.
common_sets=""
[ -n "$device_memory" ] && common_sets="--set parallel.device_memory=$device_memory"
auto_sets=""
[ -n "$auto_plans" ] && auto_sets="--set parallel.auto_plans=$auto_plans"
if [ -z "$auto_steps" ]; then
    # successive halving over K plans takes at most 1 + (1 + 3) K + (1 + 6) K / 2 + (1 + 12) K / 4
    # steps (a warm-up step more at the start), under 11 K + 2; K is auto_plans (default 8) or,
    # for every plan, those of cpu:4 and more
    k=${auto_plans:-8}
    [ "$k" -eq 0 ] && k=40
    auto_steps=$((11 * k + 2))
fi

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }'
}
greater() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
field() { printf '%s\n' "$1" | cut -d'|' -f"$2"; }
# conf INI SECTION KEY: the effective value of a key (dpmptop --print-config).
conf() {
    "$dp" -c "$1" --print-config |
        awk -v s="[$2]" -v k="$3" '/^\[/ { in_s = $0 == s } in_s && $1 == k { print $3; exit }'
}
# mdtable: '|'-separated rows on stdin, the first a header, as a markdown table.
mdtable() {
    awk -F'|' '
        { for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
          if (NF > nf) nf = NF }
        END {
            for (r = 1; r <= NR; r++) {
                s = "|"
                for (i = 1; i <= nf; i++) s = s sprintf(" %-" w[i] "s |", c[r, i])
                print s
                if (r == 1) {
                    s = "|"
                    for (i = 1; i <= nf; i++) {
                        d = ""; for (j = 0; j < w[i]; j++) d = d "-"
                        s = s " " d " |"
                    }
                    print s
                }
            }
        }'
}
# plan_opts STRATEGY STAGES MICRO SCHEDULE: the command line options of a table's plan.
plan_opts() {
    case $1 in
    pp | hybrid) echo "--strategy $1 --stages $2 --microbatches $3 --schedule $4" ;;
    *) echo "--strategy $1 --microbatches $3" ;; # one stage: no schedule
    esac
}
# banner_plan OUT: the plan a run's banner names ("... on 2 devices (cpu:0..cpu:1), DP x2").
banner_plan() { sed -n '1s/^dpmptop [^:]*: run "[^"]*" on [0-9]* devices* ([^)]*), //p' "$1"; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "== $cpu, $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   quality: models $models on $devsets; auto: up to $auto_steps search steps" \
     "+ $warm + $steady; each plan on its own: $steps steps after $warm, $rounds rounds"
echo "   cost: fashion-cnn, $cost_epochs epochs on $cost_devices" \
     "$([ "$cost_limit" -gt 0 ] && echo "of $cost_limit samples")"
started=$(date +%s)

# speed_data MODEL INI: the small data of part (a); sets data_sets (options) and data_note.
speed_data() {
    batch=$(conf "$2" data batch)
    per_epoch=64
    case $(conf "$2" data kind) in
    text)
        path=$(conf "$2" data path)
        context=$(conf "$2" data context)
        # windows of context bytes (the next bytes the targets), a tenth held out: room for
        # 64 batches of training windows
        bytes=$(((per_epoch * batch * context + 2) * 230 / 180 + 4 * context))
        data_note=$("$python" "$helper" text "$tmp/$1-corpus.txt" "$bytes" "$path")
        data_sets="--set data.path=$tmp/$1-corpus.txt --set data.limit=$((per_epoch * batch))"
        data_note="$data_note text, $bytes bytes"
        ;;
    fashion-mnist | mnist | idx)
        path=$(conf "$2" data path)
        path=${path:-/usr/share/datasets/fashion-mnist}
        data_note=$("$python" "$helper" idx "$tmp/$1-idx" $((per_epoch * batch)) 256 "$path")
        data_sets="--set data.path=$tmp/$1-idx --set data.limit=$((per_epoch * batch))"
        data_note="$data_note images, $((per_epoch * batch)) training and 256 test"
        ;;
    *)
        data_sets="" data_note="its own data"
        ;;
    esac
    data_sets="$data_sets --set run.eval_every=0 $common_sets"
}

# quality MODEL DEVICES: part (a) for one model on one device set; appends to quality.txt.
quality() {
    m=$1 devs=$2 key=$(printf '%s-%s' "$1" "$2" | tr -c 'a-z0-9\n-' '_')
    echo
    echo "== $m on $devs: --strategy auto, then every plan of its table on its own"
    total=$((auto_steps + warm + steady))
    # shellcheck disable=SC2086 # $data_sets, $auto_sets: lists of options, split on purpose
    if ! "$dp" -c "$ini" --headless --devices "$devs" $data_sets $auto_sets --strategy auto \
            --steps "$total" --metrics "$tmp/$key-auto.jsonl" >"$tmp/$key-auto.out" 2>&1; then
        echo "auto run failed:"
        tail -5 "$tmp/$key-auto.out"
        printf '%s|%s|auto failed|-|-|-|-|-|-|-|-\n' "$m" "$devs" >>"$tmp/quality.txt"
        return 0
    fi
    outcome=$("$python" "$helper" outcome "$tmp/$key-auto.jsonl")
    if [ -z "$outcome" ]; then
        echo "the auto run wrote no advice table:"
        tail -5 "$tmp/$key-auto.out"
        printf '%s|%s|no table|-|-|-|-|-|-|-|-\n' "$m" "$devs" >>"$tmp/quality.txt"
        return 0
    fi
    "$python" "$helper" plans "$tmp/$key-auto.jsonl" >"$tmp/$key-plans.txt"
    chosen=$(field "$outcome" 1) n_plans=$(field "$outcome" 2) n_measured=$(field "$outcome" 3)
    last=$(field "$outcome" 5) search_s=$(field "$outcome" 6)
    grep -m1 '^plan advisor:' "$tmp/$key-auto.out" || true
    in_run=$("$python" "$helper" rate "$tmp/$key-auto.jsonl" $((last + warm)) \
                "${stat#harmonic }")
    auto_rate=$(field "$in_run" 2)
    [ "$(field "$in_run" 1)" -gt 0 ] ||
        echo "warning: no steps under the chosen plan after the search; raise --auto-steps"
    echo "auto run: the search took steps 1-$last ($search_s s); after it," \
         "$(field "$in_run" 1) steps at $auto_rate samples/s"
    awk -F'|' '$8 == "yes" { print $1 }' "$tmp/$key-plans.txt" >"$tmp/$key-runnable"
    n_run=$(wc -l <"$tmp/$key-runnable")
    r=1
    while [ "$r" -le "$rounds" ]; do
        list=$(cat "$tmp/$key-runnable")
        [ $((r % 2)) -eq 0 ] && list=$(printf '%s\n' "$list" | sed -n '1!G;h;$p')
        for i in $list; do
            row=$(sed -n "$((i + 1))p" "$tmp/$key-plans.txt")
            plan=$(field "$row" 2)
            opts=$(plan_opts "$(field "$row" 3)" "$(field "$row" 4)" "$(field "$row" 5)" \
                             "$(field "$row" 6)")
            rm -f "$tmp/plan.jsonl"
            # shellcheck disable=SC2086 # $data_sets, $opts: lists of options
            if ! "$dp" -c "$ini" --headless --devices "$devs" $data_sets $opts \
                    --steps $((warm + steps)) --metrics "$tmp/plan.jsonl" >"$tmp/plan.out" 2>&1
            then
                echo "round $r: $plan ($opts) failed:"
                tail -3 "$tmp/plan.out"
                continue
            fi
            ran=$(banner_plan "$tmp/plan.out")
            want=$(printf '%s\n' "$plan" | sed 's/ ([^)]*unused)$//')
            [ "$ran" = "$want" ] || echo "warning: $plan ran as $ran ($opts)"
            rate=$(field "$("$python" "$helper" rate "$tmp/plan.jsonl" "$warm" \
                               "${stat#harmonic }")" 2)
            echo "round $r: $plan: $rate samples/s"
            best=$(cat "$tmp/$key-$i.best" 2>/dev/null || echo 0)
            greater "$rate" "$best" && printf '%s\n' "$rate" >"$tmp/$key-$i.best"
        done
        r=$((r + 1))
    done
    # the per-plan table, and the best plan
    best_rate=0 best_plan=- chosen_rate=-
    {
        echo "plan|in the auto run|samples/s on its own (best of $rounds)|/ best"
        while IFS="|" read -r i plan _ _ _ _ is_chosen runnable \
                auto_sps status; do
            own=$(cat "$tmp/$key-$i.best" 2>/dev/null || echo -)
            mark=""
            [ "$is_chosen" = yes ] && mark="* " chosen_rate=$own
            if [ "$runnable" = yes ] && [ "$own" != - ] && greater "$own" "$best_rate"; then
                best_rate=$own best_plan=$plan
            fi
            if [ "$auto_sps" = - ]; then auto_cell=$status
            else auto_cell="$auto_sps/s, $status"; fi
            printf '%s%s|%s|%s\n' "$mark" "$plan" "$auto_cell" "$own"
        done <"$tmp/$key-plans.txt"
    } >"$tmp/$key-detail.txt"
    echo
    echo "$m on $devs (* the advisor's choice):"
    echo
    awk -F'|' -v b="$best_rate" 'NR == 1 { print; next }
        { r = ($3 + 0 > 0 && b > 0) ? sprintf("%.3f", $3 / b) : "-"
          printf "%s|%s|%s|%s\n", $1, $2, $3, r }' "$tmp/$key-detail.txt" | mdtable
    printf '%s|%s|%s of %s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$m" "$devs" "$n_run" "$n_plans" \
        "$n_measured" "$chosen" "$chosen_rate" "$best_plan" "$best_rate" \
        "$(ratio "$chosen_rate" "$best_rate")" "$auto_rate" \
        "$(ratio "$auto_rate" "$best_rate")" >>"$tmp/quality.txt"
}

# cost_run KIND OPTS: one cost run (auto or fixed); appends "seconds|rate|steps|accuracy" and
# the plan to cost-KIND.txt.
cost_run() {
    rm -f "$tmp/cost.jsonl"
    # shellcheck disable=SC2086 # $cost_sets, $2: lists of options
    if ! "$dp" -c "$src/examples/fashion-cnn.ini" --headless --devices "$cost_devices" \
            $cost_sets $2 --epochs "$cost_epochs" --metrics "$tmp/cost.jsonl" \
            >"$tmp/cost-$1.out" 2>&1; then
        echo "round $r: $1 run failed:"
        tail -5 "$tmp/cost-$1.out"
        return 1
    fi
    s=$("$python" "$helper" summary "$tmp/cost.jsonl")
    if [ "$1" = auto ]; then
        o=$("$python" "$helper" outcome "$tmp/cost.jsonl")
        printf '%s|%s\n' "$s" "$o" >>"$tmp/cost-auto.txt"
        "$python" "$helper" plans "$tmp/cost.jsonl" |
            awk -F'|' '$7 == "yes" { print $3 "|" $4 "|" $5 "|" $6; exit }' >"$tmp/cost-chosen"
        echo "round $r: auto: $(field "$s" 1) s, $(field "$s" 3) steps, accuracy" \
             "$(field "$s" 4); chose $(field "$o" 1) after steps 1-$(field "$o" 5)" \
             "($(field "$o" 6) s), measured $(field "$o" 3) of $(field "$o" 2) plans"
    else
        printf '%s\n' "$s" >>"$tmp/cost-fixed.txt"
        echo "round $r: fixed $(banner_plan "$tmp/cost-$1.out"): $(field "$s" 1) s," \
             "$(field "$s" 3) steps, accuracy $(field "$s" 4)"
    fi
}

# cost: part (b); writes cost.txt.
cost() {
    echo
    echo "== cost: fashion-cnn, $cost_epochs epochs on $cost_devices, --strategy auto against" \
         "its choice fixed from the start"
    ini=$src/examples/fashion-cnn.ini
    path=$(conf "$ini" data path)
    path=${path:-/usr/share/datasets/fashion-mnist}
    cost_sets="--set run.eval_every=0 $common_sets"
    if [ ! -d "$path" ]; then
        "$python" "$helper" idx "$tmp/cost-idx" 60000 10000 >/dev/null
        cost_sets="$cost_sets --set data.path=$tmp/cost-idx"
        echo "(no $path: random images of its size)"
    fi
    [ "$cost_limit" -gt 0 ] && cost_sets="$cost_sets --set data.limit=$cost_limit"
    fixed=""
    r=1
    while [ "$r" -le "$rounds" ]; do
        # the first round finds the plan; the order alternates from there
        if [ -z "$fixed" ] || [ $((r % 2)) -eq 1 ]; then order="auto fixed"
        else order="fixed auto"; fi
        for kind in $order; do
            if [ "$kind" = auto ]; then
                # shellcheck disable=SC2086 # $auto_sets: a list of options
                cost_run auto "--strategy auto $auto_sets" || return 0
                if [ -z "$fixed" ]; then
                    [ -s "$tmp/cost-chosen" ] || { echo "the auto run chose no plan"; return 0; }
                    IFS='|' read -r cs cst cm csch <"$tmp/cost-chosen"
                    fixed=$(plan_opts "$cs" "$cst" "$cm" "$csch")
                fi
            else
                cost_run fixed "$fixed" || return 0
            fi
        done
        r=$((r + 1))
    done
    [ -s "$tmp/cost-auto.txt" ] && [ -s "$tmp/cost-fixed.txt" ] || return 0
    a=$(sort -t'|' -k1,1g "$tmp/cost-auto.txt" | head -n 1)
    f=$(sort -t'|' -k1,1g "$tmp/cost-fixed.txt" | head -n 1)
    added=$(awk -v a="$(field "$a" 1)" -v f="$(field "$f" 1)" \
                'BEGIN { printf "%+.1f %%", 100 * (a - f) / f }')
    choices=$(cut -d'|' -f5 "$tmp/cost-auto.txt" | sort | uniq -c | sed 's/^ *//' |
              awk '{ n = $1; $1 = ""
                     printf "%s%s (%dx)", (NR > 1 ? ", " : ""), substr($0, 2), n }')
    printf '%s|%s|%s|%s of %s|%s-%s (%s s)|%s|%s|%s|%s / %s\n' "$cost_epochs" "$(field "$a" 3)" \
        "$choices" "$(field "$a" 7)" "$(field "$a" 6)" "$(field "$a" 8)" "$(field "$a" 9)" \
        "$(field "$a" 10)" "$(field "$a" 1)" "$(field "$f" 1)" "$added" "$(field "$a" 4)" \
        "$(field "$f" 4)" >"$tmp/cost.txt"
}

if [ "$do_quality" = yes ]; then
    for m in $models; do
        ini=$src/examples/$m.ini
        [ -f "$ini" ] || { echo "run-advisor.sh: no $ini" >&2; exit 2; }
        speed_data "$m" "$ini"
        echo
        echo "== $m: data: $data_note"
        for devs in $devsets; do
            quality "$m" "$devs"
        done
    done
fi
[ "$do_cost" = yes ] && cost

echo
echo "== summary ($(($(date +%s) - started)) s; load $(cut -d' ' -f1-3 /proc/loadavg))"
if [ -s "$tmp/quality.txt" ]; then
    echo
    {
        printf '%s%s%s\n' "model|devices|plans run (of the table)|measured by auto|" \
            "auto's choice|its samples/s|best plan on its own|best samples/s|" \
            "choice / best (goal >= 0.95)|auto run after the search/s|/ best"
        cat "$tmp/quality.txt"
    } | mdtable
    echo
    echo "samples/s: steady training samples/s (the $stat over the steps) of a plan run on" \
         "its own ($steps steps after $warm, best of $rounds rounds); the auto run's: its" \
         "steps under the chosen plan after the search (after $warm more; one run)."
fi
if [ -s "$tmp/cost.txt" ]; then
    echo
    {
        printf '%s%s\n' "epochs|steps|auto's choice|plans measured|search: steps (time)|" \
            "auto run s|chosen plan fixed s|time added (goal <= 5 %)|accuracy auto / fixed"
        cat "$tmp/cost.txt"
    } | mdtable
    echo
    echo "fashion-cnn on $cost_devices; time: the run loop's wall time (steps, switches, the" \
         "search's own work, the end-of-epoch evaluations), best of $rounds rounds each."
fi
