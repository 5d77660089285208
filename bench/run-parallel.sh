#!/bin/sh
# run-parallel.sh -- the multi-device goals, measured in one go on this machine's CPUs (about
# two to three minutes on 2 cores), with numbers read from dpmptop's --metrics files:
#   (1) data-parallel scaling: the MLP 784-1024-1024-10, batch 512, SGD momentum 0.9, as
#       (a) one device pinned to one core (taskset -c 0), (b) DP on cpu:2 (one BLAS thread per
#       worker), (c) one device using every core; efficiency (b)/(a)/2 (goal >= 0.9), (b)/(c);
#       five interleaved rounds, the median of each;
#   (2) the pipeline bubble of a 2-stage pipeline (S = 2, one stage per core), GPipe and 1F1B,
#       M = 4, 8, 16 micro-batches: per stage, idle / (compute + comm + idle) over the steps
#       after warm-up (median of 3 rounds), against (S-1)/(M+S-1) (goal: within 0.05); the
#       network is the first of the candidates whose stages' compute_s are within 20%;
#   (3) the cost of switching strategy while training (single, DP, PP, hybrid on cpu:2, and DP
#       x4 / hybrid 2x2 on cpu:4) from the switch records (goal: under 50 ms each);
#   (4) peak activation memory per stage, GPipe against 1F1B at M = 16, S = 2 (cpu:2) and S = 4
#       (cpu:4): act_peak_bytes, and that over one micro-batch's worth (GPipe's / M); 1F1B's
#       stage s should hold min(S - s, M) micro-batches (at most S).
# Ends with a table of the goals: measured, goal, met.
#
# The bubble formula (S-1)/(M+S-1) assumes every stage has a core of its own. With more stages
# (threads) than cores, stages take turns on the cores and a stage's "idle" time is partly time
# another stage computes, so the formula does not apply; that is why the S = 4 pipeline (cpu:4)
# is run for its memory figures only. Likewise DP x4 on 2 cores is used for the switch timing
# only. The formula also assumes identical stages: two stages whose compute totals agree but
# whose forward/backward splits differ (the first stage computes no input gradient for its
# first layer) give GPipe a bubble that grows with M (the faster stage waits in each phase),
# while 1F1B, alternating F and B, stays near the formula. The machine's other load shows up
# in every figure (a VM's neighbours too): the script prints the load average, and repeats
# runs in interleaved rounds.
#
# Binary: $DPMPTOP_BUILD/dpmptop, else ./dpmptop in the current directory, else the one in the
# source tree this script sits in.
set -eu
. "$(dirname "$0")/lib.sh"

find_build
bin=$build/dpmptop
cores=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Bring the program up to date when there is a build tree; a stale one beats none.
if [ -f "$build/Makefile" ]; then
    make -s -C "$build" dpmptop >"$tmp/make.log" 2>&1 ||
        { echo "run-parallel.sh: make failed (using what is built):"; tail -5 "$tmp/make.log"; }
fi
[ -x "$bin" ] || { echo "run-parallel.sh: no $bin; run ./bootstrap && ./configure && make, or" \
                        "set DPMPTOP_BUILD to the build directory" >&2; exit 1; }
command -v taskset >/dev/null 2>&1 ||
    { echo "run-parallel.sh: needs taskset (util-linux) to pin the one-core baseline" >&2; exit 1; }
[ "$cores" -ge 2 ] || echo "run-parallel.sh: only $cores core: the scaling figures mean nothing here"

MLP="linear:1024, relu, linear:1024, relu, linear:10"
WARM=5        # steps skipped as warm-up in every average
DP_ROUNDS=5   # interleaved rounds of the three data-parallel runs

# dpm PIN OUT ARGS...: runs dpmptop on the synthetic task (784 features, 10 classes, a small
# test split), pinned to core 0 when PIN is "pin"; its output goes to OUT. Stops the script
# with the output when the run fails.
dpm() {
    pin=$1 out=$2
    shift 2
    set -- --set data.kind=synthetic --set data.features=784 --set data.classes=10 \
        --set data.test_samples=512 --set optim.momentum=0.9 "$@"
    if [ "$pin" = pin ]; then
        set -- taskset -c 0 "$bin" "$@"
    else
        set -- "$bin" "$@"
    fi
    "$@" >"$out" 2>&1 || { echo "run-parallel.sh: failed: $*" >&2; tail -5 "$out" >&2; exit 1; }
}

# JSON field readers for awk (the metrics are one flat object a line).
# shellcheck disable=SC2016 # awk code, not shell expansions
AWKLIB='
function str(k,   s) {
    if (!match($0, "\"" k "\":\"[^\"]*\"")) return ""
    s = substr($0, RSTART, RLENGTH); sub(/^"[^"]*":"/, "", s); sub(/"$/, "", s); return s
}
function num(k,   s) {
    if (!match($0, "\"" k "\":[^,}]*")) return ""
    s = substr($0, RSTART, RLENGTH); sub(/^"[^"]*":/, "", s); return s + 0
}'

# devrecs FILE...: device records as step|device|role|compute_s|comm_s|idle_s|act_peak|mem_peak.
devrecs() {
    awk "$AWKLIB"'
        /"type":"device"/ {
            print num("step") "|" str("device") "|" str("role") "|" num("compute_s") "|" \
                  num("comm_s") "|" num("idle_s") "|" num("act_peak_bytes") "|" \
                  num("mem_peak_bytes")
        }' "$@"
}

# steps_rate FILE: the mean of the step records' samples_per_s after the warm-up.
steps_rate() {
    awk -v warm="$WARM" "$AWKLIB"'
        /"type":"step"/ && num("step") > warm { s += num("samples_per_s"); n++ }
        END { if (n) printf "%.0f\n", s / n; else print 0 }' "$1"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
                                              else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "== $cpu, $cores cores; load $(cut -d' ' -f1-3 /proc/loadavg); $("$bin" --version | head -n 1)"
started=$(date +%s)
: >"$tmp/goals.txt"

# ---- 1. data-parallel scaling ----------------------------------------------------------------

echo
echo "== 1. data parallel: MLP 784-1024-1024-10, batch 512, SGD momentum 0.9, 30 steps a run;"
echo "   samples/s = mean of the step records' samples_per_s after $WARM warm-up steps;"
echo "   $DP_ROUNDS rounds of a, b, c interleaved, the median of each"
round=1
while [ "$round" -le "$DP_ROUNDS" ]; do
    dpm pin "$tmp/log" --set "model.layers=$MLP" --set data.batch=512 --set data.samples=20480 \
        --devices cpu:1 --strategy single --steps 30 --metrics "$tmp/dp-a-$round.jsonl"
    dpm no "$tmp/log" --set "model.layers=$MLP" --set data.batch=512 --set data.samples=20480 \
        --devices cpu:2 --strategy dp --steps 30 --metrics "$tmp/dp-b-$round.jsonl"
    dpm no "$tmp/log" --set "model.layers=$MLP" --set data.batch=512 --set data.samples=20480 \
        --devices cpu:1 --strategy single --steps 30 --metrics "$tmp/dp-c-$round.jsonl"
    for k in a b c; do steps_rate "$tmp/dp-$k-$round.jsonl" >>"$tmp/dp-$k.txt"; done
    round=$((round + 1))
done
a=$(median <"$tmp/dp-a.txt")
b=$(median <"$tmp/dp-b.txt")
c=$(median <"$tmp/dp-c.txt")
eff=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a / 2 }')
{
    echo "run|devices|samples/s by round|median"
    echo "(a) single, taskset -c 0|cpu:1 on 1 core|$(tr '\n' ' ' <"$tmp/dp-a.txt")|$a"
    echo "(b) dp, 1 BLAS thread/worker|cpu:2|$(tr '\n' ' ' <"$tmp/dp-b.txt")|$b"
    echo "(c) single, all cores|cpu:1 on $cores cores|$(tr '\n' ' ' <"$tmp/dp-c.txt")|$c"
} | table
echo "scaling efficiency (b)/(a)/2 = $eff (goal >= 0.90);  (b)/(c) = $(ratio "$b" "$c")"
echo
echo "where a step's time goes (ms a step, mean over steps > $WARM of all rounds):"
for k in a b c; do
    devrecs "$tmp"/dp-$k-*.jsonl | awk -F'|' -v warm="$WARM" -v k="$k" '
        $1 > warm { n[$2]++; role[$2] = $3; c[$2] += $4; m[$2] += $5; i[$2] += $6 }
        END {
            for (d in n)
                printf "(%s)|%s|%s|%.2f|%.2f|%.2f|%.2f\n", k, d, role[d], 1e3 * c[d] / n[d],
                    1e3 * m[d] / n[d], 1e3 * i[d] / n[d], 1e3 * (c[d] + m[d] + i[d]) / n[d]
        }' | sort
done >"$tmp/split.txt"
{ echo "run|device|role|compute|comm|idle|wall"; cat "$tmp/split.txt"; } | table
cat "$tmp"/dp-b-*.jsonl >"$tmp/dp-b-all.jsonl"
step_ms=$(awk -v warm="$WARM" "$AWKLIB"'
    /"type":"step"/ && num("step") > warm { t += 512 / num("samples_per_s"); n++ }
    END { printf "%.2f", 1e3 * t / n }' "$tmp/dp-b-all.jsonl")
awk -F'|' -v step_ms="$step_ms" '
    $1 == "(a)" { ca = $4 }
    $1 == "(b)" { cb += $4; mb += $5; ib += $6; nb++ }
    END {
        cb /= nb; mb /= nb; ib /= nb
        printf "ideal DP: each replica computes half of (a), %.2f ms, with no comm or idle; it\n", ca / 2
        printf "computes %.2f ms (%+.0f%%), waits %.2f ms for the all-reduce and idles %.2f ms;\n",
            cb, 100 * (cb / (ca / 2) - 1), mb, ib
        printf "a DP step takes %.2f ms (512 / samples_per_s; the rest: coordinator, loader)\n",
            step_ms
    }' "$tmp/split.txt"
met=$(awk -v e="$eff" 'BEGIN { print (e >= 0.9 ? "yes" : "no") }')
echo "DP scaling efficiency (b)/(a)/2|$eff|>= 0.90|$met" >>"$tmp/goals.txt"
echo "DP (b) over one device on all cores (c)|$(ratio "$b" "$c")|(info)|-" >>"$tmp/goals.txt"

# ---- 2. pipeline bubble ----------------------------------------------------------------------

PP_BATCH=1024
echo
echo "== 2. pipeline bubble: cpu:2, S = 2 stages (one a core), batch $PP_BATCH"
# The first of these whose stages are balanced (compute_s within 20%) is used. The planner cuts
# by forward FLOPs; the first stage's first layer computes no input gradient, so the first
# network (the issue's example) is lopsided.
set -- "linear:1024, relu, linear:1024, relu, linear:1024, relu, linear:10" \
    "linear:1024, relu, linear:1024, relu, linear:768, relu, linear:1024, relu, linear:10"
PP=
for net in "$@"; do
    dpm no "$tmp/log" --set "model.layers=$net" --set data.batch=$PP_BATCH \
        --set data.samples=16384 --devices cpu:2 --strategy pp --schedule gpipe \
        --microbatches 8 --steps 10 --metrics "$tmp/probe.jsonl"
    bal=$(devrecs "$tmp/probe.jsonl" | awk -F'|' '
        $1 > 3 { c[$2] += $4; n[$2]++; role[$2] = $3 }
        END {
            for (k = 0; k < 2; k++) {
                d = "cpu:" k
                if (hi == "" || c[d] > hi) hi = c[d]
                if (lo == "" || c[d] < lo) lo = c[d]
                roles = roles (roles == "" ? "" : "; ") d " " role[d] \
                    sprintf(" %.0f ms", 1e3 * c[d] / n[d])
            }
            printf "%.2f|%s\n", hi / lo, roles
        }')
    r=${bal%%|*}
    echo "   \"$net\": $(printf '%s' "${bal#*|}" | sed 's/; /, /g') a step; max/min compute $r"
    if awk -v r="$r" 'BEGIN { exit !(r <= 1.2) }'; then
        PP=$net
        break
    fi
done
if [ -z "$PP" ]; then
    PP=$net
    echo "   no candidate is balanced within 20%; using the last (the bubble will be off)"
fi
echo "   using \"$PP\" (784 inputs)"
PP_ROUNDS=3
echo "   20 steps a run, $PP_ROUNDS rounds of the six runs interleaved; bubble = idle / (compute +"
echo "   comm + idle) of a stage, averaged over the steps > $WARM of a run; per stage the median"
echo "   of the rounds' averages, each round's beside it"
round=1
while [ "$round" -le "$PP_ROUNDS" ]; do
    for sched in gpipe 1f1b; do
        for M in 4 8 16; do
            dpm no "$tmp/log" --set "model.layers=$PP" --set data.batch=$PP_BATCH \
                --set data.samples=24576 --devices cpu:2 --strategy pp --schedule $sched \
                --microbatches $M --steps 20 --metrics "$tmp/pp-$sched-$M-$round.jsonl"
            # sched|M|round|stage|bubble|compute ms|samples/s
            devrecs "$tmp/pp-$sched-$M-$round.jsonl" | awk -F'|' -v warm="$WARM" -v s="$sched" \
                -v M="$M" -v r="$round" -v rate="$(steps_rate "$tmp/pp-$sched-$M-$round.jsonl")" '
                $1 > warm { f[$2] += $6 / ($4 + $5 + $6); c[$2] += $4; n[$2]++ }
                END {
                    for (k = 0; k < 2; k++)
                        printf "%s|%d|%d|%d|%.4f|%.1f|%s\n", s, M, r, k, f["cpu:" k] / n["cpu:" k],
                            1e3 * c["cpu:" k] / n["cpu:" k], rate
                }' >>"$tmp/pp-rounds.txt"
        done
    done
    round=$((round + 1))
done
# median of the rounds' values in column COL for schedule, M and stage: med SCHED M STAGE COL
med() {
    awk -F'|' -v s="$1" -v M="$2" -v k="$3" -v col="$4" '$1 == s && $2 == M && $4 == k { print $col }' \
        "$tmp/pp-rounds.txt" | sort -n | awk '{ v[NR] = $1 }
        END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rounds() {
    awk -F'|' -v s="$1" -v M="$2" -v k="$3" '$1 == s && $2 == M && $4 == k {
        printf "%s%.3f", (n++ ? " " : ""), $5 }' "$tmp/pp-rounds.txt"
}
: >"$tmp/bubble.txt"
for sched in gpipe 1f1b; do
    for M in 4 8 16; do
        th=$(awk -v M="$M" 'BEGIN { printf "%.3f", 1 / (M + 1) }')
        b0=$(med $sched $M 0 5) b1=$(med $sched $M 1 5)
        worst=$(awk -v a="$b0" -v b="$b1" -v t="$th" \
            'BEGIN { a -= t; b -= t; a = a < 0 ? -a : a; b = b < 0 ? -b : b; printf "%.3f", (a > b ? a : b) }')
        printf '%s|%s|%s|%s|%s|%s|%s|%s|%.0f/%.0f|%.0f\n' $sched "$M" "$th" "$(rounds $sched $M 0)" \
            "$b0" "$(rounds $sched $M 1)" "$b1" "$worst" "$(med $sched $M 0 6)" \
            "$(med $sched $M 1 6)" "$(med $sched $M 0 7)" >>"$tmp/bubble.txt"
    done
done
{
    echo "schedule|M|theory|stage 0 by round|stage 0|stage 1 by round|stage 1|worst diff|compute ms s0/s1|samples/s"
    cat "$tmp/bubble.txt"
} | table
awk -F'|' '{
    printf "bubble %s M=%s (theory %s): stages %s / %s|max diff %s|within 0.05|%s\n", $1, $2, $3,
        $5, $7, $8, ($8 <= 0.05 ? "yes" : "no") }' "$tmp/bubble.txt" >>"$tmp/goals.txt"

# ---- 3. switch cost --------------------------------------------------------------------------

echo
echo "== 3. switching strategy: MLP 784-1024-1024-10 (1.86M parameters), batch 512, momentum"
echo "   SGD (parameters and momentum move); the seconds of each switch record"
dpm no "$tmp/log" --set "model.layers=$MLP" --set data.batch=512 --set data.samples=20480 \
    --devices cpu:2 --strategy dp --stages 2 --microbatches 4 --steps 30 \
    --switch-at 5:pp,10:hybrid,15:dp,20:single,25:pp --metrics "$tmp/sw2.jsonl"
dpm no "$tmp/log" --set "model.layers=$MLP" --set data.batch=512 --set data.samples=20480 \
    --devices cpu:4 --strategy dp --microbatches 4 --steps 25 \
    --switch-at 5:hybrid,10:single,15:hybrid,20:dp --metrics "$tmp/sw4.jsonl"
for k in 2 4; do
    awk -v k="$k" "$AWKLIB"'/"type":"switch"/ {
        printf "cpu:%s|%d|%s|%s|%.1f\n", k, num("step"), str("from"), str("to"), 1e3 * num("seconds") }' \
        "$tmp/sw$k.jsonl"
done >"$tmp/switch.txt"
{ echo "devices|step|from|to|ms"; cat "$tmp/switch.txt"; } | table
nsw=$(wc -l <"$tmp/switch.txt")
[ "$nsw" -eq 9 ] || echo "   (expected 9 switch records, found $nsw)"
sw_max=$(awk -F'|' '$5 > m { m = $5 } END { printf "%.1f", m }' "$tmp/switch.txt")
sw_med=$(cut -d'|' -f5 "$tmp/switch.txt" | median)
echo "slowest $sw_max ms, median $sw_med ms (goal: each under 50 ms)"
echo "switch, slowest of $nsw (median $sw_med ms)|$sw_max ms|< 50 ms|$(awk -v m="$sw_max" -v n="$nsw" \
    'BEGIN { print (n > 0 && m < 50 ? "yes" : "no") }')" >>"$tmp/goals.txt"

# ---- 4. peak activation memory ---------------------------------------------------------------

echo
echo "== 4. peak activation memory per stage at M = 16, batch $PP_BATCH (64 rows a micro-batch):"
echo "   act_peak_bytes; one micro-batch's worth = GPipe's / M; mem_peak_bytes from the allocator"
for sched in gpipe 1f1b; do
    dpm no "$tmp/log" --set "model.layers=$PP" --set data.batch=$PP_BATCH --set data.samples=8192 \
        --devices cpu:4 --strategy pp --schedule $sched --microbatches 16 --steps 3 \
        --metrics "$tmp/mem4-$sched.jsonl"
done
cp "$tmp/pp-gpipe-16-1.jsonl" "$tmp/mem2-gpipe.jsonl"
cp "$tmp/pp-1f1b-16-1.jsonl" "$tmp/mem2-1f1b.jsonl"
: >"$tmp/mem.txt"
for S in 2 4; do
    devrecs "$tmp/mem$S-gpipe.jsonl" | awk -F'|' '{ a[$2] = $7; p[$2] = $8; r[$2] = $3 }
        END { for (d in a) print d "|" r[d] "|" a[d] "|" p[d] }' | sort >"$tmp/g.txt"
    devrecs "$tmp/mem$S-1f1b.jsonl" | awk -F'|' '{ a[$2] = $7; p[$2] = $8 }
        END { for (d in a) print d "|" a[d] "|" p[d] }' | sort >"$tmp/o.txt"
    join -t'|' "$tmp/g.txt" "$tmp/o.txt" | awk -F'|' -v S="$S" -v M=16 '{
        s = substr($1, 5) + 0; unit = $3 / M; want = (S - s < M ? S - s : M)
        printf "%d|%d|%s|%.2f|%.2f|%.2f|%.2f|%d|%.1f|%.1f|%s\n", S, s, $2, unit / 1048576,
            $3 / 1048576, $5 / 1048576, $5 / unit, want, $4 / 1048576, $6 / 1048576,
            ($5 / unit <= want + 1e-9 && $5 / unit <= S ? "yes" : "no") }' >>"$tmp/mem.txt"
done
{
    echo "S|stage|layers (GPipe plan)|1 micro MiB|GPipe act MiB|1F1B act MiB|1F1B micro-batches|expected min(S-s,M)|GPipe mem_peak MiB|1F1B mem_peak MiB|ok"
    cat "$tmp/mem.txt"
} | table
echo "(act_peak_bytes is the most micro-batches in flight times one micro-batch's activation"
echo " bytes, as the worker counts it; mem_peak is what the device's allocator held at most)"
for S in 2 4; do
    awk -F'|' -v S="$S" '$1 == S {
            worst = ($7 > worst ? $7 : worst); ok = ok && $11 == "yes"; l = l (l == "" ? "" : ", ") $7
        }
        BEGIN { ok = 1 }
        END { printf "1F1B activations, S=%s, M=16 (micro-batches per stage)|%s|<= min(S-s,M), <= %s|%s\n",
                  S, l, S, (ok ? "yes" : "no") }' "$tmp/mem.txt" >>"$tmp/goals.txt"
done

# ---- summary ---------------------------------------------------------------------------------

echo
echo "== summary ($(($(date +%s) - started)) s; load $(cut -d' ' -f1-3 /proc/loadavg))"
{ echo "goal|measured|target|met"; cat "$tmp/goals.txt"; } | table
