#!/bin/sh
# mpi.sh -- runs across processes under Open MPI's mpirun (two processes on this machine): data
# parallel across them, with dp, pp and hybrid inside each (cpu:2 per process), ends with the
# parameters of the one-device run (1e-5) and its test accuracy (each process evaluating its
# half of the test split); only rank 0 writes metrics and --save; a run resumed
# from rank 0's checkpoint ends where the straight run does, bit for bit, and a checkpoint of 2
# processes is refused by 1; SIGINT to one rank stops both at the same step (a checkpoint, exit
# 130), and during an evaluation stops it in both at the same part; a process killed mid-run makes mpirun end the other and exit non-zero within 30 s,
# naming the rank; a process stopped (SIGSTOP) makes the other's watchdog end the run;
# processes given different devices, configurations or data are refused (exit 2).
# Skipped (77) without mpirun or in a build without MPI.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

if ! command -v mpirun >/dev/null || ! "$DPMPTOP" --version | grep -q "with MPI"; then
    echo "SKIP: no mpirun, or a build without MPI (apt-get install libopenmpi-dev openmpi-bin)"
    rm -rf "$work"
    exit 77
fi
root=
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
mpi() { # NP COMMAND...
    np=$1
    shift
    timeout 120 mpirun $root --oversubscribe -np "$np" "$@"
}
write_mlp_ini "$work/run.ini" adamw
cat >>"$work/run.ini" <<'INI'
[parallel]
microbatches = 3
INI
"$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 --strategy single \
    --save "$work/single.safetensors" >"$work/single.out" 2>&1 || fail "single: exit $?"
for s in dp pp hybrid; do
    [ "$s" = hybrid ] && devices=cpu:4 || devices=cpu:2
    mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices "$devices" --strategy "$s" \
        --save "$work/$s.safetensors" --metrics "$work/$s.jsonl" >"$work/$s.out" 2>&1 ||
        fail "mpirun -np 2, $s in each: exit $?: $(tail -n 3 "$work/$s.out")"
    if d=$("$compare" "$work/single.safetensors" "$work/$s.safetensors" 1e-5); then
        echo "np 2 x $devices $s vs one device: $d"
    else
        fail "np 2 x $devices $s: parameters differ from one device's by $d"
    fi
    [ "$(grep -c '"type":"step"' "$work/$s.jsonl")" -eq 20 ] ||
        fail "$s: $(grep -c '"type":"step"' "$work/$s.jsonl") step records, not 20 (rank 0's only)"
    [ "$(grep -c '^done: ' "$work/$s.out")" -eq 1 ] || fail "$s: not one summary (rank 0's)"
    # each process evaluates half the test split; their sums make the one-device figure
    want=$(grep -o 'test accuracy [0-9.]*' "$work/single.out")
    [ "$(grep -o 'test accuracy [0-9.]*' "$work/$s.out")" = "$want" ] ||
        fail "$s: $(grep -o 'test accuracy [0-9.]*' "$work/$s.out"), one device: $want"
done

# processes with different devices (here 2 and 3 CPU devices) are refused, each saying so
mpi 1 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 : -np 1 "$DPMPTOP" --headless \
    -c "$work/run.ini" --devices cpu:3 >"$work/mixed.out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "processes with different devices: mpirun exit $rc, not 2"
grep -q "rank 1 of 2: the processes have different devices (this one 3 CPU devices" \
    "$work/mixed.out" || fail "processes with different devices: $(head -n 3 "$work/mixed.out")"

# ... and processes with different configurations (here one learning rate differs)
mpi 1 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 : -np 1 "$DPMPTOP" --headless \
    -c "$work/run.ini" --devices cpu:2 --set optim.lr=0.5 >"$work/mixed.out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "processes with different configurations: mpirun exit $rc, not 2"
grep -q "rank [01] of 2: the processes have different configurations" "$work/mixed.out" ||
    fail "processes with different configurations: $(head -n 3 "$work/mixed.out")"

# ... or different --switch-at (the processes would wait for each other at the switch)
mpi 1 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 --steps 6 : -np 1 "$DPMPTOP" \
    --headless -c "$work/run.ini" --devices cpu:2 --steps 6 --switch-at 3:pp >"$work/mixed.out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "processes with different --switch-at: mpirun exit $rc, not 2"
grep -q "rank [01] of 2: the processes have different configurations" "$work/mixed.out" ||
    fail "processes with different --switch-at: $(head -n 3 "$work/mixed.out")"

# ... or different data: two texts of one size, the second the first reversed line by line
write_text "$work/a.txt" 3000
rev "$work/a.txt" >"$work/b.txt"
printf '[run]\nsteps = 3\n[data]\nkind = text\ncontext = 8\nbatch = 8\n[model]\nlayers = embed:256:8, linear:256\n' >"$work/text.ini"
mpi 1 "$DPMPTOP" --headless -c "$work/text.ini" --set "data.path=$work/a.txt" --devices cpu:1 : \
    -np 1 "$DPMPTOP" --headless -c "$work/text.ini" --set "data.path=$work/b.txt" \
    --devices cpu:1 >"$work/mixed.out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "processes with different data: mpirun exit $rc, not 2"
grep -q "rank [01] of 2: the processes have different configurations or data" "$work/mixed.out" ||
    fail "processes with different data: $(head -n 3 "$work/mixed.out")"

# checkpoints: rank 0 writes them; resuming under mpirun continues exactly; one process refuses
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 --steps 6 \
    --save "$work/straight.safetensors" >/dev/null 2>&1 || fail "straight run: exit $?"
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 --steps 6 \
    --checkpoint-dir "$work/ck" --set checkpoint.every=3 >/dev/null 2>&1 || fail "checkpointed run: exit $?"
grep -q '^processes = 2$' "$work/ck/step-00000003/state.ini" || fail "state.ini lacks processes = 2"
rm -rf "$work/ck/step-00000006"
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 --steps 6 \
    --checkpoint-dir "$work/ck" --resume --save "$work/resumed.safetensors" >"$work/resume.out" 2>&1 ||
    fail "resumed run: exit $?: $(tail -n 2 "$work/resume.out")"
grep -q 'resuming from .*step-00000003' "$work/resume.out" || fail "the resumed run did not say so"
d=$("$compare" "$work/straight.safetensors" "$work/resumed.safetensors" 0) ||
    fail "resumed under mpirun: parameters differ from the straight run by $d"
rm -rf "$work/ck/step-00000006"
expect_exit 2 "written by a run of 2 processes; this one has 1 \(start it with mpirun -np 2\)" -- \
    "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:2 --steps 6 --checkpoint-dir "$work/ck" --resume

# Ctrl-C (SIGINT) to one rank: every process stops at the same step; rank 0 writes a
# checkpoint and the summary; exit 130
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 --strategy single \
    --steps 1000000 --checkpoint-dir "$work/ck-int" >"$work/int.out" 2>&1 &
launcher=$!
wait_for_line "$work/int.out" '^step ' 6000 0.01 # training has begun (60 s at most)
kill -INT "$(pgrep -f "^$DPMPTOP --headless -c $work/run.ini" | tail -n 1)"
wait "$launcher"
rc=$?
[ "$rc" -eq 130 ] || fail "SIGINT to a rank: mpirun exit $rc, not 130"
grep -q '^interrupted: ' "$work/int.out" || fail "SIGINT to a rank: no 'interrupted' summary from rank 0"
ls "$work/ck-int" 2>/dev/null | grep -q '^step-' || fail "SIGINT to a rank: no checkpoint"

# SIGINT to rank 1 during a long evaluation: both processes stop it at the same part, soon
# (the whole evaluation takes several times as long), and rank 0 says so, reporting nothing
write_long_eval_ini "$work/long-eval.ini"
mpi 2 "$DPMPTOP" --headless -c "$work/long-eval.ini" --devices cpu:1 --strategy single \
    >"$work/eval-int.out" 2>&1 &
launcher=$!
wait_for_line "$work/eval-int.out" '^step 1/2' 6000 0.01 # the evaluation begins
sleep 0.3
kill -INT "$(pgrep -f "^$DPMPTOP --headless -c $work/long-eval.ini" | tail -n 1)"
wait "$launcher"
rc=$?
[ "$rc" -eq 130 ] || fail "SIGINT during an evaluation: mpirun exit $rc, not 130"
grep -q '^the evaluation after step 1 was stopped' "$work/eval-int.out" ||
    fail "SIGINT during an evaluation: rank 0 does not say it was stopped: $(tail -n 5 "$work/eval-int.out")"
grep -q 'test loss' "$work/eval-int.out" && fail "SIGINT during an evaluation: it reported a result"

# a process killed mid-run: the other ends too, soon, and mpirun says which rank
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 --strategy single \
    --steps 1000000 >"$work/kill.out" 2>&1 &
launcher=$!
wait_for_line "$work/kill.out" '^step ' 6000 0.01 # training has begun (60 s at most)
victim=$(pgrep -f "^$DPMPTOP --headless -c $work/run.ini" | tail -n 1) # a rank, not mpirun
if [ -z "$victim" ]; then
    fail "no rank to kill (the run ended early?): $(tail -n 3 "$work/kill.out")"
else
    t0=$(date +%s)
    kill -9 "$victim"
    wait "$launcher"
    rc=$?
    took=$(($(date +%s) - t0))
    [ "$rc" -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
    [ "$took" -le 30 ] || fail "the run took $took s to end after a rank was killed"
    grep -q "rank [01]" "$work/kill.out" || fail "mpirun did not name the rank: $(tail -n 5 "$work/kill.out")"
    echo "a killed rank ended the run in $took s (exit $rc)"
fi

# a process stopped mid-run (alive, but taking no part): the watchdog ends the run
mpi 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 --strategy single \
    --steps 1000000 --set parallel.watchdog=3 >"$work/stop.out" 2>&1 &
launcher=$!
wait_for_line "$work/stop.out" '^step ' 6000 0.01 # training has begun (60 s at most)
victim=$(pgrep -f "^$DPMPTOP --headless -c $work/run.ini" | tail -n 1)
if [ -z "$victim" ]; then
    fail "no rank to stop (the run ended early?): $(tail -n 3 "$work/stop.out")"
else
    t0=$(date +%s)
    kill -STOP "$victim"
    wait "$launcher"
    rc=$?
    took=$(($(date +%s) - t0))
    [ "$rc" -ne 0 ] || fail "mpirun exited 0 after a rank was stopped"
    [ "$took" -le 30 ] || fail "the run took $took s to end after a rank was stopped"
    grep -q "rank [01] of 2: no progress in [0-9]* s (parallel.watchdog)" "$work/stop.out" ||
        fail "no watchdog message: $(grep -v '^step' "$work/stop.out" | tail -n 5)"
    echo "a stopped rank ended the run in $took s (watchdog 3 s, exit $rc)"
fi
# a GAN across processes: its three passes and two updates, the batch statistics of its
# batch normalisation and its quality figures (each process its part of the samples) sum
# across them; two processes of one device end where dp on two devices in one does
if [ -d /usr/share/datasets/fashion-mnist ]; then
    sed -e 's/^epochs = .*/steps = 4/' -e 's/^batch = .*/batch = 16/' -e 's/^samples = .*/samples =/' \
        -e 's/^lr = .*/lr = 0.00001/' "$srcdir/examples/fashion-dcgan.ini" >"$work/gan.ini"
    printf '[data]\nlimit = 500\n' >>"$work/gan.ini"
    "$DPMPTOP" --headless -c "$work/gan.ini" --devices cpu:2 --strategy dp \
        --save "$work/gan-dp" >"$work/gan-dp.out" 2>&1 || fail "GAN dp: exit $?"
    mpi 2 "$DPMPTOP" --headless -c "$work/gan.ini" --devices cpu:1 --strategy dp \
        --save "$work/gan-mpi" >"$work/gan-mpi.out" 2>&1 ||
        fail "GAN under mpirun: exit $?: $(tail -n 3 "$work/gan-mpi.out")"
    for model in generator discriminator; do
        d=$("$compare" "$work/gan-dp/$model.safetensors" "$work/gan-mpi/$model.safetensors" \
            1.3e-6 1e-5) || fail "GAN under mpirun: the $model differs from dp's ($d)"
    done
    grep -q 'D on the test split' "$work/gan-mpi.out" || fail "GAN under mpirun: no evaluation"
fi
# a masked language model across processes: each sample's masks follow its place in the
# global batch and the loss is the mean over the positions chosen in the whole global batch
# (counted across processes), so two processes of one device end where dp on two devices in
# one does, and their halves of the test split's masked bytes sum to the same masked loss
# and accuracy (SGD: under AdamW the encoder's key biases, whose gradient is rounding noise,
# would follow the summation order; tests/bert-parity.sh)
cat >"$work/mlm.ini" <<INI
[run]
steps = 12
eval_every = 6
[data]
kind = text
path = $work/a.txt
context = 16
batch = 30
[model]
objective = mlm
layers = embed:257:16, pos, dropout:10, enc:2, linear:256
[optim]
kind = sgd
lr = 0.1
momentum = 0.9
INI
"$DPMPTOP" --headless -c "$work/mlm.ini" --devices cpu:2 --strategy dp \
    --save "$work/mlm-dp.safetensors" --metrics "$work/mlm-dp.jsonl" >"$work/mlm-dp.out" 2>&1 ||
    fail "mlm dp: exit $?: $(tail -n 3 "$work/mlm-dp.out")"
mpi 2 "$DPMPTOP" --headless -c "$work/mlm.ini" --devices cpu:1 --strategy dp \
    --save "$work/mlm-mpi.safetensors" --metrics "$work/mlm-mpi.jsonl" >"$work/mlm-mpi.out" 2>&1 ||
    fail "mlm under mpirun: exit $?: $(tail -n 3 "$work/mlm-mpi.out")"
if d=$("$compare" "$work/mlm-dp.safetensors" "$work/mlm-mpi.safetensors" 1.3e-6 1e-5); then
    echo "mlm: np 2 x cpu:1 dp vs dp on cpu:2: $d x the tolerance"
else
    fail "mlm under mpirun: parameters differ from dp's on two devices ($d x the tolerance)"
fi
# rank 0's evaluations (step, masked loss, masked bytes, accuracy) as the one process's
for run in mlm-dp mlm-mpi; do
    sed -n 's/.*"type":"eval","step":\([0-9]*\),.*"loss":\([^,]*\),"masked":true,"masked_bytes":\([0-9]*\),.*"accuracy":\([^,}]*\).*/\1 \2 \3 \4/p' \
        "$work/$run.jsonl" >"$work/$run.eval"
done
[ "$(wc -l <"$work/mlm-dp.eval")" -eq 2 ] ||
    fail "mlm dp: $(wc -l <"$work/mlm-dp.eval") masked evaluations, not 2: $(tail -n 5 "$work/mlm-dp.out")"
paste -d ' ' "$work/mlm-dp.eval" "$work/mlm-mpi.eval" | awk '
    function off(a, b, tol) { d = a - b; if (d < 0) d = -d; return d > tol * (a < 0 ? -a : a) }
    NF != 8 || $1 != $5 || $3 != $7 || off($2, $6, 1e-5) || off($4, $8, 1e-6) { bad = 1 }
    END { exit bad || NR != 2 }' ||
    fail "mlm under mpirun: evaluations $(cat "$work/mlm-mpi.eval"), one process: $(cat "$work/mlm-dp.eval")"
finish
