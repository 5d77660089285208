# tmux.sh -- the dashboard tests' terminal (sourced after tests/lib.sh): a private tmux server
# (killed on exit), the screen of one of its sessions, waits on what it shows, and the run they
# watch. Skips the test (77) without tmux.
if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: no tmux (apt-get install tmux)"
    rm -rf "$work"
    exit 77
fi
sock="dpmptop-test-$$"
tm() { tmux -L "$sock" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null' EXIT
screen() { tm capture-pane -p -t "$1"; }
# The step number in the header ("step 123/31300").
step_of() { screen "$1" | sed -n 's/.* step \([0-9][0-9]*\)\/[0-9].*/\1/p' | head -n 1; }
# wait_for NAME PATTERN SECONDS: true once the screen matches PATTERN (grep -E).
wait_for() {
    i=0
    while [ "$i" -lt $(($3 * 10)) ]; do
        screen "$1" | grep -Eq -- "$2" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# advancing NAME: the step grows within 2 seconds.
advancing() {
    a=$(step_of "$1")
    i=0
    while [ "$i" -lt 20 ]; do
        sleep 0.1
        b=$(step_of "$1")
        [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] && return 0
        i=$((i + 1))
    done
    return 1
}

# exit_of NAME SECONDS: the exit status session NAME's program wrote, waiting up to SECONDS
# for it ("" when it did not end in time).
exit_of() {
    i=0
    while [ ! -f "$work/$1.status" ] && [ "$i" -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
    cat "$work/$1.status" 2>/dev/null
}

# write_watched_ini FILE NAME EPOCHS: an MLP on synthetic data, long enough to watch and steer.
write_watched_ini() {
    cat >"$1" <<INI
[run]
name = $2
epochs = $3
[data]
kind = synthetic
features = 64
classes = 10
samples = 20000
test_samples = 500
batch = 64
[model]
layers = linear:128, relu, linear:128, relu, linear:64, relu, linear:10
INI
}
