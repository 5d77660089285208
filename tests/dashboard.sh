#!/bin/sh
# dashboard.sh -- the dashboard in a real terminal: tmux runs dpmptop in a 120x40 pane with
# four CPU devices, and the test reads the screen (capture-pane) and presses keys (send-keys):
# four device panels with their figures, the step advancing, 3 -> a pipeline within 2 s and
# still advancing, 20 fast + presses all counted, 3 again says it is already running, 2 -> back
# to DP, the help closed by q (without quitting) and Esc, c writes a checkpoint, space pauses
# (the rate 0 or "paused") and resumes, the panels' utilisation within the cores, MFU, the
# state during an evaluation, a resize redraws cleanly (80x24 keeps the ETA and the test
# result; below 80x24 a summary with the step), q exits with status 0; a finished run keeps
# its finish message whatever keys come; unused devices say why; with NO_COLOR
# the screen carries no colour; Ctrl-C (once, or twice) exits 130 with a checkpoint and the
# terminal back on its main screen; --metrics on that terminal, or a terminal ncurses does not
# know, fails the run before it trains; a GAN's run shows D's and G's losses, D(x) and D(G(z))
# as the headless line does, and its samples as a picture (half blocks in 256 greys, or ASCII
# shading in the C locale); a masked language model's shows its masked loss (mloss) and masked
# accuracy (macc) where a classifier's shows loss and acc or bpb. Skipped (77) without tmux.
. "${srcdir:-.}/tests/lib.sh"

. "${srcdir:-.}/tests/tmux.sh"
write_watched_ini "$work/run.ini" tmux 2000 # long enough to outlast the test

# start NAME ENV...: runs dpmptop in a new 120x40 session; its exit status goes to NAME.status.
start() {
    name=$1
    shift
    tm new-session -d -s "$name" -x 120 -y 40 \
        "env $* '$DPMPTOP' -c '$work/run.ini' --devices cpu:4 --checkpoint-dir '$work/ck-$name'; echo \$? >'$work/$name.status'; sleep 600"
}

start main TERM=tmux-256color
wait_for main " DP x4  " 10 || fail "no DP x4 header within 10 s: $(screen main | head -n 3)"
wait_for main "^ step [0-9]+/" 2 || fail "no step first in the header: $(screen main | head -n 1)"
wait_for main "replica 3" 5 || fail "no panel for replica 3"
for d in 0 1 2 3; do
    screen main | grep -q "cpu:$d  replica $d" || fail "no panel for cpu:$d"
done
count() { screen main | grep -Eo -- "$1" | wc -l; }
[ "$(count ' loss  +[0-9]+\.[0-9]+')" -eq 4 ] || fail "not 4 loss figures: $(count ' loss  +[0-9]+\.[0-9]+')"
[ "$(count ' util \[[| ]+\] +[0-9]+%')" -eq 4 ] || fail "not 4 utilisation bars"
# a CPU device: the engine's bytes and peak (no host total: that is once, in the header)
[ "$(count ' mem  (\[[| ]+\] )?[0-9.]+[BKMG](/[0-9.]+[BKMG])? peak [0-9.]+[BKMG]')" -eq 4 ] ||
    fail "not 4 memory figures"
screen main | grep -Eq "RSS [0-9.]+[KMG] of [0-9.]+[MGT]" || fail "no resident size of the host's memory"
screen main | grep -Eq "^ (starting|training|evaluating)" || fail "no state on the health line"
screen main | grep -Eq "[0-9]+ samples/s \(10 s\)" || fail "the rate does not name its window"
screen main | tail -n 1 | grep -q "F1Help 1Single 2DP 3PP 4Hybrid" || fail "no key bar on the last line"
advancing main || fail "the step does not advance"
wait_for main "MFU [0-9.]+%" 5 || fail "no MFU in the header: $(screen main | sed -n 3p | cut -c1-40)"
# The panels' utilisation, summed, stays within the cores the 4 devices can use (a device's
# figure is its threads' CPU time over wall time), with 25 points for rounding and for the
# panels showing different steps; 5 screens a quarter of a second apart.
cores=$(nproc)
[ "$cores" -gt 4 ] && cores=4
i=0
while [ $i -lt 5 ]; do
    sum=$(screen main | grep -Eo ' util \[[| ]+\] +[0-9]+%' | grep -Eo '[0-9]+%' | tr -d % |
        awk '{ s += $1 } END { print s + 0 }')
    [ "$sum" -le $((cores * 100 + 25)) ] ||
        fail "the panels' utilisation sums to $sum % on $cores cores: $(screen main | grep -Eo ' util \[[| ]+\] +[0-9]+%' | tr '\n' ' ')"
    sleep 0.25
    i=$((i + 1))
done

tm send-keys -t main 3
wait_for main " PP 4 stages, 8 micro, 1F1B  " 2 || fail "3 did not show a 4-stage pipeline within 2 s"
wait_for main "step [0-9.]+ ms  idle% \(ideal 27%\)" 2 || fail "no pipeline timeline with its ideal bubble"
wait_for main "F/f fwd +B/b bwd +\* ?both +: ?brief +\. ?idle +[0-9.]+ ms" 2 ||
    fail "no timeline legend and time axis"
screen main | grep -q "stage 3 (layers" || fail "no stage 3 panel"
advancing main || fail "the step does not advance in PP"
# every + counts, however fast: 20 presses 20 ms apart take 8 micro-batches to 28
for i in $(seq 20); do tm send-keys -t main +; sleep 0.02; done
wait_for main " PP 4 stages, 28 micro, 1F1B  " 5 ||
    fail "20 fast + presses: $(screen main | sed -n 2p | cut -c1-40), wanted 28 micro-batches"
tm send-keys -t main 3
wait_for main "already PP 4 stages, 28 micro" 2 || fail "3 in PP did not say it is already running"
tm send-keys -t main 2
wait_for main " DP x4  " 2 || fail "2 did not return to DP within 2 s"
# 3 then 2 at once: the second undoes the first, and nothing switches
tm send-keys -t main 3 2
wait_for main "staying with DP x4: the switch asked for is cancelled" 2 ||
    fail "3 2 did not say the switch is cancelled: $(screen main | tail -n 2 | head -n 1)"
sleep 1
screen main | grep -q "switched to" && fail "3 2 switched: $(screen main | tail -n 2 | head -n 1)"
screen main | grep -q " DP x4  " || fail "3 2 left DP x4"

tm send-keys -t main F1
wait_for main "dpmptop keys" 2 || fail "F1 did not show the help"
tm send-keys -t main x
sleep 0.3
screen main | grep -q "dpmptop keys" && fail "a key did not close the help"
tm send-keys -t main h
wait_for main "dpmptop keys" 2 || fail "h did not show the help"
tm send-keys -t main q
sleep 0.5
screen main | grep -q "dpmptop keys" && fail "q did not close the help"
[ -f "$work/main.status" ] && fail "q quit with the help open"
tm send-keys -t main '?'
wait_for main "dpmptop keys" 2 || fail "? did not show the help"
tm send-keys -t main Escape
sleep 0.5
screen main | grep -q "dpmptop keys" && fail "Esc did not close the help"
tm send-keys -t main c
wait_for main "checkpoint .*/ck-main/step-" 3 || fail "c wrote no checkpoint"
ls "$work/ck-main" | grep -q '^step-' || fail "c: no checkpoint in $work/ck-main"

tm send-keys -t main " "
wait_for main "PAUSED" 2 || fail "space did not pause"
wait_for main "0 samples/s \(paused\)" 2 || fail "the rate is not 0 while paused: $(screen main | sed -n 2p)"
sleep 0.3
a=$(step_of main)
sleep 1
b=$(step_of main)
[ "$a" = "$b" ] || fail "the step advanced while paused ($a -> $b)"
tm send-keys -t main " "
advancing main || fail "space did not resume"

tm resize-window -t main -x 100 -y 30
sleep 0.5
[ "$(screen main | wc -l)" -eq 30 ] || fail "the pane is not 30 rows after the resize"
[ "$(screen main | grep -c 'dpmptop 0\.1')" -eq 1 ] || fail "the header appears other than once after the resize"
screen main | tail -n 1 | grep -q "^F1Help" || fail "no key bar on the last line after the resize"
# (UTF-8 continuation bytes dropped, so that each character counts once)
[ "$(screen main | LC_ALL=C sed 's/[\x80-\xbf]//g' | awk '{ if (length($0) > 100) n++ } END { print n + 0 }')" -eq 0 ] ||
    fail "lines wider than the 100-column pane after the resize"
tm resize-window -t main -x 80 -y 24
wait_for main "^ step [0-9]+/[0-9]+ \([0-9]+%\)  ETA [0-9:]+  loss [0-9.]+  test (acc [0-9.]+%|bpb [0-9.]+) @[0-9]+" 5 ||
    fail "80x24: no step, ETA, loss and test result first: $(screen main | head -n 1)"
tm resize-window -t main -x 60 -y 20
wait_for main "^step [0-9]+/[0-9]+  loss [0-9.]+  [0-9]+ samples/s  ETA" 2 ||
    fail "60x20: no summary with the step: $(screen main | head -n 1)"
screen main | grep -q "80x24 or more shows the dashboard (this is 60x20)" || fail "60x20: no word of the size needed"
[ "$(screen main | grep -c 'replica')" -eq 0 ] || fail "panels left over on the too-small screen"
tm resize-window -t main -x 120 -y 40
wait_for main "replica 3" 2 || fail "no redraw after growing back"

tm send-keys -t main q
status=$(exit_of main 5)
[ "$status" = 0 ] || fail "q: exit status '$status', wanted 0"
screen main | grep -q "^stopped: [0-9]* steps" ||
    fail "no summary printed after leaving the dashboard"

# A finished run keeps its finish message (the step reached, the final test result) whatever
# keys come: those that would switch, pause or checkpoint say on the health line that the run
# has finished; q leaves.
write_watched_ini "$work/short.ini" short 1
tm new-session -d -s fin -x 120 -y 40 \
    "TERM=tmux-256color '$DPMPTOP' -c '$work/short.ini' --devices cpu:2; echo \$? >'$work/fin.status'; sleep 600"
wait_for fin "^ finished" 60 || fail "the short run did not finish: $(screen fin | sed -n 4p)"
wait_for fin "^ finished after [0-9]+ steps" 2 || fail "no finish message: $(screen fin | tail -n 2 | head -n 1)"
for key in 3 " " + c 1; do
    tm send-keys -t fin "$key"
    sleep 0.2
done
wait_for fin "the run has finished" 2 || fail "keys after the end do not say the run has finished"
screen fin | grep -Eq "^ finished after [0-9]+ steps" ||
    fail "keys after the end replaced the finish message: $(screen fin | tail -n 2 | head -n 1)"
screen fin | grep -Eq "^ finished after .*(test accuracy|bits per byte) [0-9.]+" ||
    fail "the finish message lacks the final test result: $(screen fin | tail -n 2 | head -n 1)"
tm send-keys -t fin q
[ "$(exit_of fin 5)" = 0 ] || fail "q after the end did not leave with status 0"

# An evaluation shows its progress on the health line: a test set large enough to watch.
# (an evaluation of 200000 samples every 20 steps: the run evaluates most of the time)
write_watched_ini "$work/eval.ini" eval 1000
sed -i 's/^test_samples = .*/test_samples = 200000/; s/^samples = .*/samples = 3200/; s/^epochs = .*/&\neval_every = 20/' "$work/eval.ini"
tm new-session -d -s eval -x 120 -y 40 \
    "TERM=tmux-256color '$DPMPTOP' -c '$work/eval.ini' --devices cpu:2; sleep 600"
wait_for eval "^ evaluating [0-9]+/[0-9]+" 60 || fail "no evaluation state seen: $(screen eval | sed -n 4p)"
wait_for eval "evaluations \([1-9]" 30 || fail "no evaluation in the history"
tm send-keys -t eval q

# Devices a plan leaves unused say why, and show no loss or history: a model with 2 layers
# with parameters makes 2 stages of 4 devices.
write_watched_ini "$work/two.ini" two 1000
sed -i 's/^layers = .*/layers = linear:128, relu, linear:10/' "$work/two.ini"
tm new-session -d -s two -x 120 -y 40 "TERM=tmux-256color '$DPMPTOP' -c '$work/two.ini' --devices cpu:4; sleep 600"
wait_for two " DP x4  " 20 || fail "the 2-layer run did not start"
tm send-keys -t two 3
wait_for two " PP 2 stages" 5 || fail "3 did not make 2 stages of the 2-layer model"
wait_for two "cpu:3  unused" 5 || fail "cpu:3 is not marked unused"
[ "$(screen two | grep -o 'the model has 2 layers with parameters: at most 2 stages' | wc -l)" -eq 2 ] ||
    fail "the unused devices do not say why: $(screen two | grep -A1 'cpu:3  unused' | tail -n 1)"
[ "$(screen two | grep -Eo ' loss  +[0-9]+\.[0-9]+' | wc -l)" -eq 2 ] ||
    fail "not 2 loss figures with 2 devices in use"
tm send-keys -t two q

# A GAN (an MLP G and D on 16x16 images): after its evaluations the header carries D's and G's
# losses, a line D(x) and D(G(z)) with the figures of the headless line for the same step (the
# run is seeded: the same in both modes), the two loss plots, the evaluation table of D's test
# loss and D(x), and the samples as a picture of half blocks in 256 greys at 100x40; without
# UTF-8, ASCII shading and not one byte above 127.
write_gan_data() {
    python3 - "$1" <<'PY' || fail "could not write the GAN's images in $1"
import os, random, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rnd = random.Random(5)
def disk():  # a bright disk somewhere on a dark ground
    cy, cx, r = rnd.uniform(4, 12), rnd.uniform(4, 12), rnd.uniform(2, 5)
    return bytes(230 if (y - cy) ** 2 + (x - cx) ** 2 < r * r else 20
                 for y in range(16) for x in range(16))
for name, n in (('train', 640), ('t10k', 128)):
    with open(f'{d}/{name}-images-idx3-ubyte', 'wb') as f:
        f.write(struct.pack('>IIII', 0x803, n, 16, 16) + b''.join(disk() for _ in range(n)))
    with open(f'{d}/{name}-labels-idx1-ubyte', 'wb') as f:
        f.write(struct.pack('>II', 0x801, n) + bytes(n))
PY
}
write_gan_data "$work/gan-data"
cat >"$work/gan.ini" <<INI
[run]
name = gan
seed = 1
[data]
kind = idx
path = $work/gan-data
batch = 32
range = -1:1
[model]
objective = gan
latent = 16
generator = linear:64, leakyrelu:0.2, linear:256, tanh, unflatten:1:16:16
discriminator = flatten, linear:64, leakyrelu:0.2, linear:1
[optim]
kind = adamw
lr = 0.0002
beta1 = 0.5
weight_decay = 0
INI
gan_args="-c '$work/gan.ini' --steps 40 --set run.eval_every=20 --devices cpu:2"
eval "\"\$DPMPTOP\" $gan_args --headless" >"$work/gan-headless.out" 2>&1 ||
    fail "the GAN run headless failed: $(tail -n 3 "$work/gan-headless.out")"
# "loss D 1.3062 G 0.7885  D(x) 0.507 D(G(z)) 0.457 / 0.455" of step 40
last=$(grep '^step 40/40' "$work/gan-headless.out" | tail -n 1)
d_loss=$(echo "$last" | sed -n 's/.*loss D \([0-9.]*\) G.*/\1/p')
g_loss=$(echo "$last" | sed -n 's/.*loss D [0-9.]* G \([0-9.]*\).*/\1/p')
d_real=$(echo "$last" | sed -n 's/.*D(x) \([0-9.]*\) D(G.*/\1/p')
d_fake=$(echo "$last" | sed -n 's/.*D(G(z)) \([0-9.]* \/ [0-9.]*\).*/\1/p')
[ -n "$d_loss" ] && [ -n "$g_loss" ] && [ -n "$d_real" ] && [ -n "$d_fake" ] ||
    fail "no GAN progress line for step 40 headless: $last"
half=$(printf '\342\226\200') # U+2580, the picture's upper half block
tm new-session -d -s gan -x 100 -y 40 \
    "env TERM=xterm-256color LC_ALL=C.UTF-8 LANG=C.UTF-8 '$DPMPTOP' $gan_args; sleep 600"
wait_for gan "samples @[0-9]+" 30 || fail "the GAN's samples were not shown: $(screen gan | sed -n 4,6p)"
wait_for gan "^ finished after 40 steps" 30 || fail "the GAN run did not finish: $(screen gan | tail -n 2)"
screen gan | grep -q "loss D $d_loss G $g_loss" ||
    fail "the header's losses are not the headless line's D $d_loss G $g_loss: $(screen gan | head -n 1)"
screen gan | grep -q "^ D(x) $d_real .*  D(G(z)) $d_fake " ||
    fail "no D(x) $d_real and D(G(z)) $d_fake line: $(screen gan | grep -F 'D(G(z))')"
screen gan | grep -q "^D loss over 40 steps" || fail "no plot of D's loss"
screen gan | grep -q "^G loss over 40 steps" || fail "no plot of G's loss"
screen gan | grep -q "step D loss   D(x)" || fail "the evaluations are not a GAN's table"
screen gan | grep -Eq "  +20 [0-9.]+ +0\.[0-9]{3}$" || fail "no evaluation at step 20 in the table"
screen gan | grep -Eq "samples @40: 16 of 64 \(256 greys\)" ||
    fail "the samples' title: $(screen gan | sed -n 5p | cut -c 61-)"
[ "$(screen gan | LC_ALL=C grep -c "$half")" -ge 10 ] ||
    fail "no picture of half blocks: $(screen gan | LC_ALL=C grep -c "$half") rows of them"
# the picture's cells are greys of the 256-colour palette (232..255, 16 or 231), not one flat one
greys=$(tm capture-pane -e -p -t gan | LC_ALL=C grep -o '38;5;[0-9]*m' | sort -u | wc -l)
[ "$greys" -ge 4 ] || fail "the picture has $greys foreground colours"
screen gan | grep -q "test acc" && fail "a GAN's test result called an accuracy"
tm send-keys -t gan q
tm new-session -d -s gan-ascii -x 100 -y 40 \
    "env TERM=xterm-256color LC_ALL=C LANG=C '$DPMPTOP' $gan_args; sleep 600"
wait_for gan-ascii "^ finished after 40 steps" 30 || fail "the C-locale GAN run did not finish"
screen gan-ascii | grep -Eq "samples @40: 16 of 64 \(ascii\)" ||
    fail "the C locale's picture is not ASCII: $(screen gan-ascii | sed -n 5p | cut -c 61-)"
tm capture-pane -p -t gan-ascii | LC_ALL=C grep -q "$(printf '[\200-\377]')" &&
    fail "non-ASCII characters on the GAN's screen in the C locale"
# the panel's rows below its title: ramp characters, a row of the picture each
[ "$(screen gan-ascii | sed -n '6,15p' | cut -c 62- | grep -c '[.:=+*#%@-]')" -eq 10 ] ||
    fail "no ASCII shading in the samples panel: $(screen gan-ascii | sed -n 6p | cut -c 61-)"
tm send-keys -t gan-ascii q

# A masked language model's run: its loss is the mean over the chosen bytes, labelled mloss
# in the header, the panels and the plot; its evaluations are a table of step, mloss and macc
# (loss and accuracy over the test split's masked bytes) with the figures of the headless
# run's metrics (seeded: the same in both modes), the lowest mloss marked; the test result in
# the header and the health line is the masked accuracy, and nothing says bpb or acc alone.
write_text "$work/mlm.txt" 3000
cat >"$work/mlm.ini" <<INI
[run]
name = mlm
seed = 1
steps = 40
eval_every = 10
[data]
kind = text
path = $work/mlm.txt
context = 16
batch = 32
[model]
objective = mlm
layers = embed:257:16, pos, enc:2, enc:2, linear:256
[optim]
kind = adamw
lr = 0.003
INI
"$DPMPTOP" -c "$work/mlm.ini" --devices cpu:2 --headless --metrics "$work/mlm.jsonl" \
    >"$work/mlm-headless.out" 2>&1 || fail "the mlm run headless failed: $(tail -n 3 "$work/mlm-headless.out")"
# the table's rows as the dashboard formats them ("%c%6ld %6.4g %7s"), without the mark
sed -n 's/.*"type":"eval","step":\([0-9]*\),.*"loss":\([^,]*\),"masked":true,.*"accuracy":\([^,}]*\).*/\1 \2 \3/p' \
    "$work/mlm.jsonl" | awk '{ printf "%6d %6.4g %7s\n", $1, $2, sprintf("%.2f%%", 100 * $3) }' \
    >"$work/mlm-rows"
[ "$(wc -l <"$work/mlm-rows")" -ge 4 ] || fail "the mlm run made $(wc -l <"$work/mlm-rows") masked evaluations"
tm new-session -d -s mlm -x 120 -y 40 \
    "env TERM=tmux-256color LC_ALL=C.UTF-8 LANG=C.UTF-8 '$DPMPTOP' -c '$work/mlm.ini' --devices cpu:2; sleep 600"
wait_for mlm "^ finished after 40 steps" 60 || fail "the mlm run did not finish: $(screen mlm | tail -n 2)"
screen mlm | grep -Eq "^ step 40/40 \(100%\)  ETA [0-9:]+  mloss [0-9.]+  test macc [0-9.]+% @40 " ||
    fail "mlm: the header does not say mloss and the masked accuracy: $(screen mlm | head -n 1)"
screen mlm | grep -Eq "  last macc [0-9.]+% mloss [0-9.]+ @40  best mloss [0-9.]+ @[0-9]+" ||
    fail "mlm: the health line: $(screen mlm | sed -n 4p)"
[ "$(screen mlm | grep -Eo ' mloss  +[0-9]+\.[0-9]{4}' | wc -l)" -eq 2 ] ||
    fail "mlm: not 2 panels' mloss figures: $(screen mlm | grep -Eo ' m?loss  +[0-9.]+' | tr '\n' ' ')"
screen mlm | grep -q "^masked loss over 40 steps" || fail "mlm: the loss plot is not called masked"
screen mlm | grep -Eq "  step  mloss    macc\$" || fail "mlm: the evaluation table's columns are not step mloss macc"
while read -r row; do
    screen mlm | grep -Fq -- "$row" || fail "mlm: no table row '$row' (the headless run's) on the screen"
done <"$work/mlm-rows"
# the best row: the lowest mloss, marked
best=$(sort -k2,2g "$work/mlm-rows" | head -n 1)
screen mlm | grep -Fq -- "*$best" || fail "mlm: the lowest mloss's row '$best' is not marked best"
screen mlm | grep -Eq "masked accuracy [0-9.]+, bits per masked byte [0-9.]+" ||
    fail "mlm: the finish message lacks the masked result: $(screen mlm | tail -n 2 | head -n 1)"
screen mlm | grep -Eq "bpb|test acc | acc [0-9]| loss  +[0-9]" &&
    fail "mlm: the screen calls a figure bpb, acc or loss: $(screen mlm | grep -Eo "bpb.{0,12}|test acc .{0,8}| acc [0-9].{0,8}| loss  +[0-9.]+" | head -n 3 | tr '\n' ' ')"
tm send-keys -t mlm q

# Colour: present by default, absent with NO_COLOR: an SGR code 30-38, 40-48, 90-97 or
# 100-107 (39 and 49 are the terminal's own default colours, which tmux writes to reset).
colour='\[([0-9;]*;)?(3[0-8]|4[0-8]|9[0-7]|10[0-7])(;[0-9;]*)?m'
start colour TERM=tmux-256color
wait_for colour "replica 3" 10 || fail "the colour run did not start"
tm capture-pane -e -p -t colour | grep -Eq "$colour" || fail "no colour attributes by default"
tm send-keys -t colour q
start mono TERM=tmux-256color NO_COLOR=1
wait_for mono "replica 3" 10 || fail "the NO_COLOR run did not start"
if tm capture-pane -e -p -t mono | grep -Eq "$colour"; then
    fail "colour attributes with NO_COLOR: $(tm capture-pane -e -p -t mono | grep -Eo "$colour" | sort -u | head -n 3 | tr '\n' ' ')"
fi
tm send-keys -t mono q

# Without a UTF-8 locale the plots are ASCII: no byte above 127 on the screen, '*' in the plot.
start ascii TERM=tmux-256color LC_ALL=C LANG=C
wait_for ascii "replica 3" 10 || fail "the C-locale run did not start"
sleep 1
tm capture-pane -p -t ascii | LC_ALL=C grep -q "$(printf '[\200-\377]')" &&
    fail "non-ASCII characters on the screen in the C locale"
tm capture-pane -p -t ascii | grep -q '^ *[0-9.]* *[ *]*\*' || fail "no ASCII plot in the C locale"
tm send-keys -t ascii q

# Ctrl-C: the step ends, a checkpoint is written, exit 130, the terminal back on its main screen;
# twice: out at once, the terminal given back all the same.
for name in sigint sigint2; do
    # exiting at once leaves threads unjoined, by design: ThreadSanitizer is told so
    start $name TERM=tmux-256color "TSAN_OPTIONS='${TSAN_OPTIONS:-}:report_thread_leaks=0'"
    wait_for $name "replica 3" 10 || fail "$name: the run did not start"
    sleep 0.5
    tm send-keys -t $name C-c
    [ $name = sigint2 ] && tm send-keys -t $name C-c
    status=$(exit_of $name 10)
    [ "$status" = 130 ] || fail "$name: exit status '$status', wanted 130"
    [ "$(tm display-message -p -t $name '#{alternate_on}')" = 0 ] ||
        fail "$name: the terminal was left on the dashboard's screen"
done
ls "$work/ck-sigint" 2>/dev/null | grep -q '^step-' || fail "Ctrl-C wrote no checkpoint"

# --metrics on the terminal the dashboard would draw on is refused (exit 2), not scribbled over it
tm new-session -d -s metrics -x 120 -y 40 \
    "'$DPMPTOP' -c '$work/run.ini' --devices cpu:2 --metrics /dev/stdout; echo \$? >'$work/metrics.status'; sleep 600"
status=$(exit_of metrics 30)
[ "$status" = 2 ] || fail "--metrics /dev/stdout under the dashboard: exit '$status', wanted 2"
screen metrics | grep -q "the terminal the dashboard draws on" ||
    fail "--metrics /dev/stdout under the dashboard: $(screen metrics | grep dpmptop: | tail -n 1)"

# a terminal ncurses does not know fails the run before it trains: exit 2, --save untouched
echo precious >"$work/keep.st"
tm new-session -d -s badterm -x 120 -y 40 \
    "env TERM=no-such-terminal '$DPMPTOP' -c '$work/run.ini' --devices cpu:2 --save '$work/keep.st'; echo \$? >'$work/badterm.status'; sleep 600"
status=$(exit_of badterm 30)
[ "$status" = 2 ] || fail "TERM=no-such-terminal: exit '$status', wanted 2"
[ "$(cat "$work/keep.st")" = precious ] || fail "TERM=no-such-terminal: --save's file was replaced"
finish
