#!/bin/sh
# run-dashboard.sh -- what the dashboard costs, in one go (about a minute): the demo run (DP on
# two CPU devices, Fashion-MNIST or its synthetic stand-in) headless and under the dashboard in
# a tmux pane, interleaved rounds, comparing the summaries' samples/s (goal: dashboard over
# headless >= 0.98); the main thread's CPU while the dashboard draws every 100 ms (goal: under
# 2% of a core), from /proc; and the time from pressing 3 to the header showing the pipeline
# (goal: under 0.5 s), polled every 10 ms.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${DPMPTOP_BUILD:-}" ]; then build=$DPMPTOP_BUILD
elif [ -x ./dpmptop ]; then build=$(pwd)
else build=$src; fi
bin=$build/dpmptop
[ -x "$bin" ] || { echo "run-dashboard.sh: no $bin" >&2; exit 1; }
command -v tmux >/dev/null || { echo "run-dashboard.sh: needs tmux" >&2; exit 1; }
tmp=$(mktemp -d)
sock="dpmptop-bench-$$"
tm() { tmux -L "$sock" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null; rm -rf "$tmp"' EXIT
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-5}
DASH_ARGS=${DASH_ARGS:-}   # extra options for the dashboard runs
hz=$(getconf CLK_TCK)

rate_of() { sed -n 's/^rate: \([0-9]*\) samples\/s.*/\1/p' "$1" | tail -n 1; }

echo "== dpmptop dashboard cost: demo run, $EPOCHS epochs, $ROUNDS rounds ($(nproc) cores)"
headless=""
dash=""
cpu=""
for round in $(seq "$ROUNDS"); do
    "$bin" --headless --epochs "$EPOCHS" >"$tmp/head.out" 2>&1
    headless="$headless $(rate_of "$tmp/head.out")"

    rm -f "$tmp/status" "$tmp/dash.txt" "$tmp/m.jsonl"
    tm new-session -d -s dash -x 120 -y 40 \
        "$bin --epochs $EPOCHS --metrics $tmp/m.jsonl $DASH_ARGS; echo \$? >$tmp/status; sleep 600"
    sleep 0.5
    pid=$(pgrep -n -f "^$bin --epochs $EPOCHS" || true)
    [ -n "$pid" ] || { echo "run-dashboard.sh: the dashboard run did not start" >&2; exit 1; }
    # from the first step on: the set-up (loading the data) is the main thread's too
    while ! cat "$tmp"/m.jsonl* 2>/dev/null | grep -q '"type":"step"'; do sleep 0.05; done
    t0=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat")
    w0=$(date +%s.%N)
    # the run's end: its summary record in the metrics file (still under its temporary name
    # until the program exits), looked for once a second rather than by polling the pane,
    # which would cost CPU
    while ! cat "$tmp"/m.jsonl* 2>/dev/null | grep -q '"type":"summary"'; do sleep 1; done
    t1=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat")
    w1=$(date +%s.%N)
    cpu="$cpu $(awk -v a="$t0" -v b="$t1" -v s="$w0" -v e="$w1" -v hz="$hz" \
        'BEGIN { printf "%.2f", 100 * (b - a) / hz / (e - s) }')"
    tm send-keys -t dash q
    while [ ! -f "$tmp/status" ]; do sleep 0.1; done
    tm capture-pane -p -t dash -S - >"$tmp/dash.txt"
    dash="$dash $(rate_of "$tmp/dash.txt")"
    tm kill-session -t dash
done

# Key to visible effect: press 3, poll the screen every 10 ms until the header says PP.
tm new-session -d -s key -x 120 -y 40 "$bin --devices cpu:2 --epochs 50; sleep 600"
while ! tm capture-pane -p -t key | grep -q "^ step [1-9]"; do sleep 0.1; done
sleep 1
k0=$(date +%s.%N)
tm send-keys -t key 3
while ! tm capture-pane -p -t key | grep -q "^ PP 2 stages"; do sleep 0.01; done
k1=$(date +%s.%N)
tm send-keys -t key q
latency=$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.3f", b - a }')

median() { printf '%s\n' $1 | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
h=$(median "$headless")
d=$(median "$dash")
c=$(median "$cpu")
printf '%-28s %s  (median %s)\n' "headless samples/s" "$headless" "$h"
printf '%-28s %s  (median %s)\n' "dashboard samples/s" "$dash" "$d"
printf '%-28s %s  (median %s)\n' "main thread CPU, % of a core" "$cpu" "$c"
echo
printf '%-40s %-10s %-10s %s\n' goal measured target met
awk -v h="$h" -v d="$d" 'BEGIN { r = d / h; printf "%-40s %-10.3f %-10s %s\n", "dashboard / headless samples/s", r, ">= 0.98", (r >= 0.98) ? "yes" : "no" }'
awk -v c="$c" 'BEGIN { printf "%-40s %-10s %-10s %s\n", "main thread CPU (% of a core)", c, "< 2", (c < 2) ? "yes" : "no" }'
awk -v l="$latency" 'BEGIN { printf "%-40s %-10s %-10s %s\n", "key 3 to PP in the header (s)", l, "< 0.5", (l < 0.5) ? "yes" : "no" }'
