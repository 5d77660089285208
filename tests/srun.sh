#!/bin/sh
# srun.sh -- launched by Slurm's srun instead of mpirun: the script starts a private one-node
# Slurm (munged, slurmctld, slurmd, their state in $work, on ports of their own, stopped on
# exit), then `srun --mpi=pmix -n 2` runs dp in each process (cpu:1): one 2-process MPI world
# that ends with the parameters of the one-device run (1e-5), and one summary (rank 0's); plain
# `srun -n 2` (no PMIx: two runs that would write the same files) is refused, saying so.
# Skipped (77) without srun, slurmctld, slurmd and munged (apt-get install slurmctld slurmd
# slurm-client), without root (slurmd), in a build without MPI, or when Slurm does not come up.
. "${srcdir:-.}/tests/lib.sh"
compare=${STCOMPARE:-./tests/st-compare}

pids= # slurmd, slurmctld, munged: stopped in that order
stop() {
    [ -n "$pids" ] || return 0
    for i in $(seq 1 50); do # the last step ends while slurmctld and munged can hear of it
        [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && break
        sleep 0.2
    done
    for p in $pids; do
        kill "$p" 2>/dev/null
        for i in $(seq 1 50); do
            case $(ps -o stat= -p "$p") in "" | Z*) break ;; esac
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null
    done
    wait
    pids=
}
skip() {
    echo "SKIP: $*"
    stop
    rm -rf "$work"
    exit 77
}
for c in srun slurmctld slurmd munged; do
    command -v $c >/dev/null || skip "no $c (apt-get install slurmctld slurmd slurm-client)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd needs root"
"$DPMPTOP" --version | grep -q "with MPI" || skip "a build without MPI"

# the private cluster; a surrounding Slurm job's variables would point srun at another one
unset $(env | sed -n 's/^\(SLURM_[A-Z_]*\)=.*/\1/p')
export SLURM_CONF="$work/slurm.conf"
trap stop EXIT
trap 'exit 1' INT TERM HUP
port=$((20000 + $$ % 20000))
mkdir -p "$work/state" "$work/spool"
cat >"$SLURM_CONF" <<EOF
ClusterName=dpmptop
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
MpiDefault=none
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
NodeName=localhost CPUs=$(nproc)
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
chmod 755 "$work" # munged wants its socket's directories open to all
dd if=/dev/urandom of="$work/munge.key" bs=128 count=1 2>/dev/null
chmod 600 "$work/munge.key"
munged -F --socket="$work/munge.sock" --key-file="$work/munge.key" --pid-file="$work/munged.pid" \
    --seed-file="$work/munge.seed" --log-file="$work/munged.log" 2>"$work/munged.err" &
pids="$! $pids"
for i in $(seq 1 50); do [ -S "$work/munge.sock" ] && break; sleep 0.1; done
slurmctld -D -i -L "$work/slurmctld.log" >/dev/null 2>&1 &
pids="$! $pids"
slurmd -D -N localhost -L "$work/slurmd.log" >/dev/null 2>&1 &
pids="$! $pids"
end=$(($(date +%s) + 30))
while [ "$(date +%s)" -lt "$end" ]; do
    timeout 5 sinfo -h -o %t 2>/dev/null | grep -qx idle && break
    sleep 0.2
done
timeout 5 sinfo -h -o %t 2>/dev/null | grep -qx idle || skip "the private Slurm did not come up: \
$(tail -qn 2 "$work/munged.err" "$work/slurmctld.log" "$work/slurmd.log" 2>&1)"
srun --mpi=list 2>&1 | grep -qw pmix || skip "this Slurm has no PMIx plugin (srun --mpi=list)"

write_mlp_ini "$work/run.ini" adamw
"$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 --strategy single \
    --save "$work/single.safetensors" >"$work/single.out" 2>&1 || fail "single: exit $?"
timeout 120 srun --mpi=pmix -n 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 \
    --strategy dp --save "$work/srun.safetensors" >"$work/srun.out" 2>&1 ||
    fail "srun -n 2: exit $?: $(tail -n 3 "$work/srun.out")"
grep -q '2 processes (MPI)' "$work/srun.out" || fail "srun -n 2 did not make one 2-process world"
if d=$("$compare" "$work/single.safetensors" "$work/srun.safetensors" 1e-5); then
    echo "srun -n 2 x cpu:1 dp vs one device: $d"
else
    fail "srun -n 2: parameters differ from one device's by $d"
fi
[ "$(grep -c '^done: ' "$work/srun.out")" -eq 1 ] || fail "srun -n 2: not one summary (rank 0's)"
# without --mpi=pmix the tasks would be two separate runs writing one file: refused
timeout 60 srun -n 2 "$DPMPTOP" --headless -c "$work/run.ini" --devices cpu:1 \
    --save "$work/plain.safetensors" >"$work/plain.out" 2>&1
grep -q "srun started 2 tasks without PMIx.*srun --mpi=pmix" "$work/plain.out" ||
    fail "plain srun -n 2 was not refused: $(tail -n 3 "$work/plain.out")"
[ ! -e "$work/plain.safetensors" ] || fail "plain srun -n 2 wrote --save"
stop
finish
