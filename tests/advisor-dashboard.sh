#!/bin/sh
# advisor-dashboard.sh -- the plan advisor in the dashboard (issue 20), in a real terminal (tmux,
# tests/tmux.sh): the key bar and the help name a and A; a on a cpu:2 run (paused, so that the
# search waits to be seen) opens the advisor's view, which says it is measuring plans, as the
# health line does, and a second a says a search is already under way; once the run goes on
# the view shows the table: the plan the run's advice_outcome record chose (--metrics) marked
# `*`, each measured plan's samples/s and step ms as its advice record has them, and each plan
# left out with its record's reason; A hides and shows it without a new search, Esc hides it;
# a again (re-advice) keeps the last table in sight while it measures, then shows the new one,
# again as the second advice_outcome record says. A run on cpu:4 with `[parallel] strategy =
# auto` and a device memory limit shows its table by itself once its search ends, with the
# plans that do not fit and their need; at 80x24 the table scrolls (Up, Down, PgUp, PgDn,
# Home, End, "rows a-b of n"), and after the run's end A still hides and shows it. Skipped
# (77) without tmux.
. "${srcdir:-.}/tests/lib.sh"

. "${srcdir:-.}/tests/tmux.sh"

# A model whose steps take a few ms on a CPU device, on 1000 epochs: long enough to steer.
write_ini() {
    cat >"$1" <<INI
[run]
name = advisor
epochs = 1000
[data]
kind = synthetic
features = 256
classes = 10
samples = 20000
test_samples = 500
batch = 128
[model]
layers = linear:512, relu, linear:512, relu, linear:256, relu, linear:10
INI
}

# steps_shown NAME: "first-last" of the table the advisor's view shows ("" when none).
steps_shown() {
    screen "$1" | sed -n 's/^ plan advisor: [0-9]* plans, [0-9]* measured over steps \([0-9]*-[0-9]*\) .*/\1/p'
}

# check_table SCREEN JSONL K: the screen shows the table of the K-th advice_outcome record
# (from 0) of the run's metrics: its outcome, the chosen plan marked and no other, every plan's
# row (its name cut at the screen's plan column), a measured plan's samples/s and step ms, a
# plan left out's reason. Prints what differs; fails when something does.
check_table() {
    python3 - "$@" <<'PY'
import json, sys
screen, jsonl, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(screen).read().split('\n')
tables, plans = [], []
for line in open(jsonl):
    r = json.loads(line)
    if r['type'] == 'advice':
        plans.append(r)
    elif r['type'] == 'advice_outcome':
        tables.append((r, plans))
        plans = []
if len(tables) <= k:
    sys.exit(f'the metrics have {len(tables)} advice_outcome records, wanted {k + 1}')
outcome, plans = tables[k]
bad = []
if not any(l.strip() == outcome['outcome'] for l in lines):
    bad.append(f"no outcome line '{outcome['outcome']}'")
rows = [l for l in lines if l[:2] in ('* ', '  ') and len(l) > 2 and l[2] != ' '
        and not l.startswith('  plan ')]
header = [l for l in lines if l.startswith('  plan ') and 'samples/s' in l]
if len(header) != 1:
    bad.append(f'{len(header)} table headers')
else:  # the plan column: up to the space before the steps column
    plan_w = header[0].index(' steps ') + 1 - 2 - 1
marked = [l for l in rows if l.startswith('* ')]
if outcome['chosen'] is None:
    if marked:
        bad.append(f'a plan marked though none was chosen: {marked}')
elif len(marked) != 1 or not (marked[0][2:] + ' ').startswith(outcome['chosen'][:plan_w] + ' '):
    bad.append(f"the chosen plan is {outcome['chosen']}, marked: {marked}")
if len(rows) != len(plans):
    bad.append(f'{len(rows)} rows on the screen, {len(plans)} advice records')
for p, row in zip(plans, rows):
    name = p['plan'][:plan_w]
    if not (row[2:] + ' ').startswith(name + ' '):
        bad.append(f"row '{row.strip()}' is not plan '{p['plan']}'")
        continue
    cells = row[2 + plan_w:].split()
    if p['left_out'] is not None:
        moved = row[2 + plan_w:].strip() == p['left_out']  # a narrow screen: in the figures' place
        if not row.rstrip().endswith(p['left_out']) or (cells[:6] != ['-'] * 6 and not moved):
            bad.append(f"{p['plan']}: not '- - - - - -' and the reason '{p['left_out']}': {row}")
    elif p['measured']:
        if int(cells[0]) != p['steps'] or \
           abs(float(cells[1]) - p['samples_per_s']) > 0.051 or \
           abs(float(cells[2]) - p['step_ms']) > 0.0051:
            bad.append(f"{p['plan']}: {cells[:3]}, the record has {p['steps']} steps, "
                       f"{p['samples_per_s']} samples/s and {p['step_ms']} ms")
        if p['dropped'] != row.rstrip().endswith('dropped: slower'):
            bad.append(f"{p['plan']}: dropped {p['dropped']}, the row: {row}")
if bad:
    sys.exit('\n'.join(bad))
PY
}

# ---- a on a cpu:2 run, again, and the view's keys ----
write_ini "$work/a.ini"
tm new-session -d -s adv -x 160 -y 40 \
    "env TERM=tmux-256color '$DPMPTOP' -c '$work/a.ini' --devices cpu:2 -s parallel.auto_plans=3 --metrics '$work/a.jsonl'; echo \$? >'$work/adv.status'; sleep 600"
wait_for adv " DP x2  " 20 || fail "the cpu:2 run did not start: $(screen adv | sed -n 2p)"
advancing adv || fail "the step does not advance"
screen adv | tail -n 1 | grep -q "cCkpt aAdvise qQuit" || fail "no a in the key bar: $(screen adv | tail -n 1)"
tm send-keys -t adv F1
wait_for adv "dpmptop keys" 2 || fail "F1 did not show the help"
screen adv | grep -q "a         find the fastest plan (the advisor)" || fail "the help does not name a"
screen adv | grep -q "A         show / hide the advisor's table" || fail "the help does not name A"
tm send-keys -t adv x

# paused, the search waits: the view, the health line and the event line say so
tm send-keys -t adv " "
wait_for adv "^ PAUSED" 2 || fail "space did not pause"
tm send-keys -t adv a a
wait_for adv "^ plan advisor: measuring plans on the training's own steps: the table comes when the search ends" 2 ||
    fail "a did not open the view saying the advisor measures: $(screen adv | sed -n 5p)"
wait_for adv "^ the plan advisor is already measuring plans" 2 ||
    fail "a second a did not say a search is under way: $(screen adv | tail -n 2 | head -n 1)"
screen adv | grep -q "^ PAUSED, the plan advisor measuring plans" ||
    fail "the health line does not say the advisor measures: $(screen adv | sed -n 4p)"
screen adv | grep -q "^ a measures again  A or Esc hides this" || fail "the view does not name its keys"
tm send-keys -t adv " "
wait_for adv "^ plan advisor: [0-9]+ plans, [0-9]+ measured over steps" 30 ||
    fail "no table after the search: $(screen adv | sed -n 5,7p)"
sleep 0.3
screen adv >"$work/first.screen"
first=$(steps_shown adv)
screen adv | grep -Eq "^ training  skipped" || fail "the health line still says the advisor measures: $(screen adv | sed -n 4p)"

# A hides the view (the plots are back), A shows the same table, Esc hides it
tm send-keys -t adv A
wait_for adv "^loss over [0-9]+ steps" 2 || fail "A did not hide the view"
screen adv | grep -Eq "^ (plan advisor: [0-9]+ plans|a measures again)" && fail "A left the view on the screen"
tm send-keys -t adv A
wait_for adv "^ plan advisor: [0-9]+ plans" 2 || fail "A did not show the view again"
[ "$(steps_shown adv)" = "$first" ] || fail "A showed steps $(steps_shown adv), not the table of $first"
tm send-keys -t adv Escape
wait_for adv "^loss over [0-9]+ steps" 2 || fail "Esc did not hide the view"

# re-advice: the last table stays in sight while the advisor measures again
tm send-keys -t adv " "
wait_for adv "^ PAUSED" 2 || fail "space did not pause again"
tm send-keys -t adv a
wait_for adv "^ plan advisor: measuring plans on the training's own steps; the last table below" 2 ||
    fail "a again did not say it measures over the last table: $(screen adv | sed -n 5p)"
screen adv | grep -q "^\* " || fail "the last table is not in sight while the advisor measures"
tm send-keys -t adv " "
i=0
while [ "$i" -lt 300 ]; do
    now=$(steps_shown adv)
    [ -n "$now" ] && [ "$now" != "$first" ] && break
    sleep 0.1
    i=$((i + 1))
done
[ -n "$now" ] && [ "$now" != "$first" ] || fail "a again showed no new table (still steps $first)"
sleep 0.3
screen adv >"$work/second.screen"

# a switch key after a (here in the same pause) stops the search at once and keeps its plan:
# 1 (single), or 2 (DP x2) when single is in use already
tm send-keys -t adv " "
wait_for adv "^ PAUSED" 2 || fail "space did not pause a third time"
if screen adv | head -n 2 | grep -q " single "; then key=2 hand="DP x2"; else key=1 hand=single; fi
tm send-keys -t adv a
wait_for adv "^ plan advisor: measuring plans" 2 || fail "a did not measure a third time"
tm send-keys -t adv "$key"
tm send-keys -t adv " "
wait_for adv "a plan was chosen by hand" 30 ||
    fail "a switch key after a did not stop the search: $(screen adv | sed -n 5,7p)"
wait_for adv " $hand " 5 || fail "the plan chosen by hand is not in use: $(screen adv | sed -n 1,2p)"
screen adv | grep -q "^\* " && fail "a plan is marked chosen in a stopped search's table"

tm send-keys -t adv q
[ "$(exit_of adv 10)" = 0 ] || fail "q did not leave with status 0"
[ "$(grep -c '"type":"advice_outcome"' "$work/a.jsonl")" -eq 3 ] ||
    fail "$(grep -c '"type":"advice_outcome"' "$work/a.jsonl") searches in the metrics, wanted 3 (a, a again, a stopped; A none)"
grep -q '"type":"advice_outcome","step":[0-9]*,"chosen":null,"outcome":"stopped after 0 of [0-9]* plans: a plan was chosen by hand; '"$hand"' stays in use"' \
    "$work/a.jsonl" || fail "the stopped search's record: $(grep advice_outcome "$work/a.jsonl" | tail -n 1)"
why=$(check_table "$work/first.screen" "$work/a.jsonl" 0 2>&1) ||
    fail "the first table: $why"
why=$(check_table "$work/second.screen" "$work/a.jsonl" 1 2>&1) ||
    fail "the second table: $why"
grep -Fq "not measured: the 3 plans with lower estimates were" "$work/first.screen" ||
    fail "no plan left out by auto_plans = 3 on the screen"

# ---- [parallel] strategy = auto on cpu:4 with 4 MiB a device: the table by itself ----
write_ini "$work/auto.ini"
printf '[parallel]\nstrategy = auto\ndevice_memory = 4M\n' >>"$work/auto.ini"
tm new-session -d -s auto -x 160 -y 40 \
    "env TERM=tmux-256color '$DPMPTOP' -c '$work/auto.ini' --devices cpu:4 --steps 300 --metrics '$work/auto.jsonl'; echo \$? >'$work/auto.status'; sleep 600"
wait_for auto "^ plan advisor: [0-9]+ plans, [0-9]+ measured over steps" 60 ||
    fail "the auto run showed no table: $(screen auto | sed -n 4,6p)"
wait_for auto "^ finished after 300 steps" 60 || fail "the auto run did not finish: $(screen auto | tail -n 2)"
screen auto >"$work/auto.screen"
grep -Eq "  needs [0-9.]+ [KM]iB on cpu:[0-3], which has 4.0 MiB$" "$work/auto.screen" ||
    fail "no plan left out for its memory on the screen"
# (the metrics file gets its name as the program exits: the table's rows from the screen here,
# checked against it below)
n=$(sed -n 's/^ plan advisor: \([0-9]*\) plans, .*/\1/p' "$work/auto.screen")
rows=$(grep -E '^[* ] [^ ]' "$work/auto.screen" | grep -v '^  plan ')
[ "$(echo "$rows" | wc -l)" -eq "$n" ] || fail "the auto run's table: $(echo "$rows" | wc -l) rows of $n"
# (a name cut at 28 columns drops the devices a plan leaves unused whole)
chosen=$(echo "$rows" | sed -n 's/^\* //p' | cut -c 1-28 | sed 's/ (.*//; s/ *$//')
last=$(echo "$rows" | tail -n 1 | cut -c 3-30 | sed 's/ (.*//; s/ *$//')
# at 80x24 the table's k rows (fewer than its n) scroll; its rows follow the line that says
# which are shown
tm resize-window -t auto -x 80 -y 24
wait_for auto "^ rows 1-[0-9]+ of $n: Up/Down" 2 || fail "80x24: not rows 1-k of $n: $(screen auto | sed -n 7,8p)"
k=$(screen auto | sed -n "s/^ rows 1-\([0-9]*\) of $n: .*/\1/p")
at=$(screen auto | grep -n "^ rows 1-$k of $n: " | cut -d: -f1)
[ "$k" -ge 10 ] && [ "$k" -lt "$n" ] && [ $((at + 1 + k)) -eq 22 ] ||
    fail "80x24: rows 1-$k of $n from row $((at + 2)), wanted at least 10 to the event line"
screen auto | grep -Fq "* $chosen" || fail "80x24: the chosen plan $chosen is not marked"
# a reason that does not fit beside the figures takes their place
screen auto | grep -Eq "^  single +  needs [0-9.]+ [KM]iB on cpu:0, which has 4.0 MiB" ||
    fail "80x24: single's reason is cut: $(screen auto | grep '^  single ')"
tm send-keys -t auto End
wait_for auto "^ rows $((n - k + 1))-$n of $n: " 2 || fail "End: $(screen auto | sed -n "${at}p")"
screen auto | sed -n "$((at + 1 + k))p" | grep -Fq "  $last" ||
    fail "End: the last row is not $last: $(screen auto | sed -n "$((at + 1 + k))p")"
tm send-keys -t auto Up
wait_for auto "^ rows $((n - k))-$((n - 1)) of $n: " 2 || fail "End Up: $(screen auto | sed -n "${at}p")"
tm send-keys -t auto PageUp
wait_for auto "^ rows $((n - 2 * k + 1))-$((n - k)) of $n: |^ rows 1-$k of $n: " 2 ||
    fail "PgUp: $(screen auto | sed -n "${at}p")"
tm send-keys -t auto Home Down Down
wait_for auto "^ rows 3-$((k + 2)) of $n: " 2 || fail "Home Down Down: $(screen auto | sed -n "${at}p")"
tm send-keys -t auto Up
wait_for auto "^ rows 2-$((k + 1)) of $n: " 2 || fail "Up: $(screen auto | sed -n "${at}p")"
tm send-keys -t auto PageDown
wait_for auto "^ rows $((k + 1))-$((2 * k)) of $n: |^ rows $((n - k + 1))-$n of $n: " 2 ||
    fail "PgDn: $(screen auto | sed -n "${at}p")"
tm send-keys -t auto Home
wait_for auto "^ rows 1-$k of $n: " 2 || fail "Home: $(screen auto | sed -n "${at}p")"
# after the end A hides and shows it still; a says the run has finished
tm send-keys -t auto A
wait_for auto "^loss over 300 steps" 2 || fail "A after the end did not hide the view"
tm send-keys -t auto A
wait_for auto "^ plan advisor: [0-9]+ plans" 2 || fail "A after the end did not show the view"
tm send-keys -t auto a
wait_for auto "the run has finished; q leaves" 2 || fail "a after the end did not say the run has finished"
tm send-keys -t auto q
[ "$(exit_of auto 10)" = 0 ] || fail "q did not leave the auto run with status 0"
[ "$(grep -c '"type":"advice_outcome"' "$work/auto.jsonl")" -eq 1 ] ||
    fail "the auto run searched $(grep -c '"type":"advice_outcome"' "$work/auto.jsonl") times, wanted once"
why=$(check_table "$work/auto.screen" "$work/auto.jsonl" 0 2>&1) || fail "the auto table: $why"
finish
