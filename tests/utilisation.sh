#!/bin/sh
# utilisation.sh -- the devices' figures in the JSONL records are ones that can be true: on any
# machine (this one may have 2 cores), CPU devices' utilisation x threads summed per step never
# passes the cores this process may use (tolerance 5 % + 0.02 for the clocks' skew: each
# device's CPU time and wall time are read a few microseconds apart), with 4 devices as
# replicas and as pipeline stages; one device's utilisation is in (0, 1]; MFU is in [0, 1], at
# most the utilisation,
# against a known CPU peak; a CPU device's total memory is 0 (it shares the host's). Then
# --measure-peak writes the peak's cache.
. "${srcdir:-.}/tests/lib.sh"

write_cifar "$work/cifar" 120 20
cat >"$work/cnn.ini" <<INI
[run]
steps = 24
[data]
kind = cifar10
path = $work/cifar
batch = 64
[model]
layers = conv:16:3:1:1, relu, maxpool:2, conv:32:3:1:1, relu, maxpool:2, flatten, linear:64, relu, linear:10
[optim]
lr = 0.01
INI

# check FILE DEVICES: the per-step checks on a run's records (python3: lib.sh needs it too).
check() {
    python3 - "$1" "$2" <<'PY' || fail "$(basename "$1"): the figures above cannot be true"
import json, os, sys
path, devices = sys.argv[1], int(sys.argv[2])
cores = len(os.sched_getaffinity(0))
limit = cores * 1.05 + 0.02
steps, bad = {}, []
for line in open(path):
    r = json.loads(line)
    if r["type"] == "device":
        steps.setdefault(r["step"], []).append(r)
if len(steps) < 10:
    bad.append(f"{len(steps)} steps of device records")
for step, recs in sorted(steps.items()):
    used = [r for r in recs if r["role"] != "unused"]
    total = sum(r["util"] * r["threads"] for r in used)
    if total > limit:
        bad.append(f"step {step}: utilisation x threads sums to {total:.3f} > {limit:.2f} "
                   f"({cores} cores)")
    for r in recs:
        where = f"step {step} {r['device']}"
        if r["mem_total_bytes"] != 0:
            bad.append(f"{where}: mem_total_bytes {r['mem_total_bytes']} for a CPU device")
        if r["role"] == "unused":
            continue
        if not (0 <= r["util"] <= 1) or not (1 <= r["threads"] <= cores) or r["cpu_s"] < 0:
            bad.append(f"{where}: util {r['util']} threads {r['threads']} cpu_s {r['cpu_s']}")
        if r["peak_flops"] is None or r["peak_flops"] <= 0:
            bad.append(f"{where}: no peak_flops for a CPU device")
        if r["mfu"] is None or not (0 <= r["mfu"] <= 1) or r["flops"] <= 0:
            bad.append(f"{where}: mfu {r['mfu']} flops {r['flops']}")
        elif r["mfu"] > r["util"] + 1e-6:
            bad.append(f"{where}: mfu {r['mfu']} above the utilisation {r['util']}")
        if devices > cores and r["threads"] != 1:
            bad.append(f"{where}: {r['threads']} threads with {devices} devices on {cores} cores")
    if devices == 1 and not (0 < used[0]["util"] <= 1):
        bad.append(f"step {step}: one device's utilisation {used[0]['util']}")
for b in bad[:20]:
    print("   ", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

run() { # NAME DEVICES ARGS...: a headless run with --metrics into $work/NAME.jsonl
    name=$1 devices=$2
    shift 2
    "$DPMPTOP" -H -c "$work/cnn.ini" --devices "cpu:$devices" --metrics "$work/$name.jsonl" "$@" \
        >"$work/$name.out" 2>&1 || fail "$name: exit $?: $(tail -n 3 "$work/$name.out")"
    check "$work/$name.jsonl" "$devices"
}
run one 1
run dp4 4 --strategy dp
run pp4 4 --strategy pp --microbatches 4

# --measure-peak: measured again, cached where XDG_CACHE_HOME says, and said
XDG_CACHE_HOME="$work/cache" "$DPMPTOP" --measure-peak >"$work/peak.out" 2>&1 ||
    fail "--measure-peak: exit $?: $(cat "$work/peak.out")"
grep -q "GFLOP/s; cached in $work/cache/dpmptop/cpu-peak" "$work/peak.out" ||
    fail "--measure-peak said: $(cat "$work/peak.out")"
grep -Eq "^[0-9.e+]+ $(nproc) " "$work/cache/dpmptop/cpu-peak" ||
    fail "no line for this machine in the cache: $(cat "$work/cache/dpmptop/cpu-peak")"
finish
