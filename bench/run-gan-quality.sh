#!/bin/sh
# run-gan-quality.sh -- the quality figures (README.md, "### GANs") that dpmptop's GAN examples
# reach after their 5 epochs, against those of their PyTorch twins trained the same way
# (bench/gan_quality.py train: dcgan/main.py's step, torch's own shuffling and noise, one
# thread), measured the same way: the Frechet distance and score of 10,000 samples of dpmptop's
# evaluation noise against Fashion-MNIST's test split, in the features of one classifier.
#
# dpmptop's runs are read from RUNS (default gan-runs): RUNS/mlp-sN.log and
# RUNS/dcgan-sN.log, the logs of
#   dpmptop -c examples/fashion-gan.ini (mlp) or examples/fashion-dcgan.ini (dcgan)
#       --set run.seed=N --set gan.classifier=CLASSIFIER --save RUNS/MODEL-sN/weights
# The twins train one at a time (nice'd) into OUT/MODEL-sN, skipped where OUT/MODEL-sN holds
# their figures already; --recompute also computes the figures of dpmptop's saved generators
# here (a check of the whole pipeline: they must be the ones its log printed).
#
# Usage: bench/run-gan-quality.sh [--models "mlp dcgan"] [--seeds "1 2 3"] [--runs RUNS]
#            [--out OUT] [--classifier FILE] [--recompute] [--threads 1]
# PyTorch: $TORCH_PYTHON, default /usr/bin/python3. Needs Debian's dataset-fashion-mnist.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
models="mlp dcgan" seeds="1 2 3" runs=gan-runs out=gan-quality recompute=0 threads=1
classifier=fashion-cnn.safetensors
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --runs) runs=$2; shift ;;
    --out) out=$2; shift ;;
    --classifier) classifier=$2; shift ;;
    --recompute) recompute=1 ;;
    --threads) threads=$2; shift ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "run-gan-quality.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
python=${TORCH_PYTHON:-/usr/bin/python3}
"$python" -c 'import torch' 2>/dev/null ||
    { echo "run-gan-quality.sh: $python has no torch (apt-get install python3-torch)" >&2; exit 1; }
mkdir -p "$out"

config() {
    case $1 in
    mlp) echo "$here/../examples/fashion-gan.ini" ;;
    dcgan) echo "$here/../examples/fashion-dcgan.ini" ;;
    *) echo "run-gan-quality.sh: unknown model $1 (mlp or dcgan)" >&2; exit 2 ;;
    esac
}

for m in $models; do
    cfg=$(config "$m")
    for s in $seeds; do
        if [ "$recompute" = 1 ] && [ -f "$runs/$m-s$s/weights/generator.safetensors" ] &&
            [ ! -f "$out/dpmptop-$m-s$s.json" ]; then
            echo "dpmptop's $m seed $s: its figures recomputed"
            nice "$python" "$here/gan_quality.py" figures "$runs/$m-s$s/weights" "$cfg" \
                --seed "$s" --classifier "$classifier" --threads "$threads" \
                --json "$out/dpmptop-$m-s$s.json"
        fi
        [ -f "$out/$m-s$s/figures.json" ] && continue
        echo "twin $m seed $s: training (log in $out/$m-s$s.log)"
        nice "$python" "$here/gan_quality.py" train "$cfg" "$s" "$out/$m-s$s" \
            --classifier "$classifier" --threads "$threads" > "$out/$m-s$s.log" 2>&1 ||
            { echo "run-gan-quality.sh: the twin failed:"; tail -5 "$out/$m-s$s.log"; exit 1; }
        tail -1 "$out/$m-s$s.log"
    done
done
"$python" "$here/gan_quality.py" table "$runs" "$out" --models "$(echo "$models" | tr -s ' ' ,)" \
    --seeds "$(echo "$seeds" | tr -s ' ' ,)"
