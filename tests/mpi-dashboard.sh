#!/bin/sh
# mpi-dashboard.sh -- the dashboard of a run across processes, in a real terminal: tmux runs
# `mpirun -np 2 dpmptop --devices cpu:2` in a 120x40 pane. Rank 0 draws on mpirun's terminal and
# shows the devices of both processes (HOST#0/cpu:0 .. HOST#1/cpu:1) with their figures; 3
# switches both processes to a pipeline (rank 1's panels say "stage"); space pauses both
# (without spinning a core in rank 1) and resumes them; c writes a checkpoint; q ends the run,
# mpirun exits 0 and rank 0 prints one summary. Ctrl-C stops both with a checkpoint and exit
# 130, the terminal back on its main screen. mpirun with its output in a file runs headless.
# Skipped (77) without tmux, mpirun or a build with MPI.
. "${srcdir:-.}/tests/lib.sh"

if ! command -v tmux >/dev/null || ! command -v mpirun >/dev/null ||
    ! "$DPMPTOP" --version | grep -q "with MPI"; then
    echo "SKIP: needs tmux, mpirun and a build with MPI"
    rm -rf "$work"
    exit 77
fi
root=
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
. "${srcdir:-.}/tests/tmux.sh"
write_watched_ini "$work/run.ini" tmux-mpi 10000
host=$(hostname)
bin=$(cd "$(dirname "$DPMPTOP")" && pwd)/$(basename "$DPMPTOP")

# start NAME [REDIRECT]: mpirun in a new 120x40 session; its exit status goes to NAME.status.
start() {
    tm new-session -d -s "$1" -x 120 -y 40 \
        "timeout --foreground 300 mpirun $root --oversubscribe -np 2 '$bin' -c '$work/run.ini' --devices cpu:2 --checkpoint-dir '$work/ck-$1' ${2:-}; echo \$? >'$work/$1.status'; sleep 600"
}
wait_status() { # NAME SECONDS: the exit status once mpirun has ended
    i=0
    while [ ! -s "$work/$1.status" ] && [ "$i" -lt $(($2 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    cat "$work/$1.status" 2>/dev/null
}

start main
wait_for main "^ 2 processes x DP x2  " 20 ||
    fail "no '2 processes x DP x2' header within 20 s: $(screen main | head -n 3)"
for r in 0 1; do
    for d in 0 1; do
        wait_for main "$host#$r/cpu:$d  replica $d" 5 || fail "no panel for rank $r's cpu:$d"
    done
done
[ "$(screen main | grep -Eo ' loss  +[0-9]+\.[0-9]+' | wc -l)" -eq 4 ] ||
    fail "not 4 loss figures: $(screen main | grep -Eo ' loss  +[0-9]+\.[0-9]+' | wc -l)"
advancing main || fail "the step does not advance"

tm send-keys -t main 3
wait_for main "2 processes x PP 2 stages" 5 || fail "3 did not switch to a pipeline"
wait_for main "$host#1/cpu:1  stage 1" 5 || fail "rank 1's panels do not show its pipeline stage"
advancing main || fail "the step does not advance after the switch"

tm send-keys -t main ' '
wait_for main "PAUSED" 3 || fail "space did not pause"
sleep 0.5
rank1=$(pgrep -f "^$bin -c $work/run.ini" | tail -n 1)
ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; } # user + system CPU
cpu0=$(ticks "$rank1")
a=$(step_of main)
sleep 2
b=$(step_of main)
cpu1=$(ticks "$rank1")
hz=$(getconf CLK_TCK)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "paused, but the step went from $a to $b"
# paused, a process waits sleeping (its training loop and the thread that answers rank 0)
[ -n "$cpu0" ] && [ -n "$cpu1" ] && [ $((cpu1 - cpu0)) -le $((2 * hz / 5)) ] ||
    fail "paused, rank 1 used $((cpu1 - cpu0)) of $((2 * hz)) CPU ticks in 2 s (over 20% of a core)"
echo "paused: rank 1 used $((cpu1 - cpu0)) of $((2 * hz)) CPU ticks in 2 s"
tm send-keys -t main ' '
advancing main || fail "space did not resume"

tm send-keys -t main c
i=0
while ! ls "$work/ck-main" 2>/dev/null | grep -q '^step-' && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
ls "$work/ck-main" 2>/dev/null | grep -q '^step-' || fail "c wrote no checkpoint"

tm send-keys -t main q
[ "$(wait_status main 20)" = 0 ] || fail "q: mpirun exit '$(cat "$work/main.status" 2>/dev/null)', not 0"
screen main >"$work/main.screen"
[ "$(grep -c '^stopped: ' "$work/main.screen")" -eq 1 ] ||
    fail "q: not one summary on the screen ($work/main.screen)"
# what rank 0 printed before the dashboard is on the main screen too, above the summary
grep -q '^dpmptop .*: 2 processes (MPI)' "$work/main.screen" ||
    fail "q: rank 0's header is not on the main screen ($work/main.screen)"

# Ctrl-C reaches rank 0, the foreground job: both stop at one step, with a checkpoint
start int
wait_for int "^ 2 processes x DP x2  " 20 || fail "Ctrl-C run: no dashboard"
tm send-keys -t int C-c
[ "$(wait_status int 20)" = 130 ] || fail "Ctrl-C: mpirun exit '$(cat "$work/int.status" 2>/dev/null)', not 130"
screen int | grep -q '^interrupted: ' || fail "Ctrl-C: no summary on the main screen"
ls "$work/ck-int" 2>/dev/null | grep -q '^step-' || fail "Ctrl-C: no checkpoint"

# mpirun's output in a file: headless, even with a terminal at hand
start file ">'$work/file.out' 2>&1 --steps 50"
[ "$(wait_status file 60)" = 0 ] || fail "output to a file: exit '$(cat "$work/file.status")'"
grep -q '^step 50/50' "$work/file.out" || fail "output to a file: no progress lines: $(tail -n 3 "$work/file.out")"
finish
