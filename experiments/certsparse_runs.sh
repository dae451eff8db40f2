#!/usr/bin/env bash
# The README's verified-sparse tables: neuron pruning (stability, magnitude, random), linearity grafting and
# their baselines at matched density, fine-tuned from the dense parents of the verified-robustness section
# (runs/verify/*, made by the commands listed there). Every run is cached: rerunning skips finished ones.
set -euo pipefail
T=${TICKETLAB:-.venv/bin/ticketlab}
OUT=${OUT:-runs/certsparse}
CERT="--certified crown-ibp --cert-eps 0.1 --cert-start 0 --cert-ramp 0"
FT="--iterations 1000 --optimizer adam --lr 0.0005 --batch-size 100 --quiet"

one() {  # one() PARENT_GROUP SEED_DIR MODEL TAG SCORE_EPS TRAIN_FLAGS... : the methods on one dense parent
    local src=$1 model=$2 tag=$3 eps=$4; shift 4
    local base="--source $src --model $model --dataset fashion-mnist --fraction 0.5 --score-eps $eps $* $FT"
    $T neurons $base --method prune --score stability --out "$OUT/$tag/prune-stability"
    $T neurons $base --method prune --score magnitude --out "$OUT/$tag/prune-magnitude"
    $T neurons $base --method prune --score random --out "$OUT/$tag/prune-random"
    $T neurons $base --method graft --score magnitude --out "$OUT/$tag/graft-magnitude"
    $T neurons $base --method graft --score magnitude --slope 0 --intercept 0 --freeze-graft \
        --out "$OUT/$tag/graft-as-prune"
    d=$(python3 -c "import json; print(json.load(open('$OUT/$tag/prune-stability/summary.json'))['weight_density'])")
    $T compress --source "$src" --model "$model" --dataset fashion-mnist --method magnitude --density "$d" $* $FT \
        --out "$OUT/$tag/compress-magnitude"
}

for s in 0 1; do
    one runs/verify/mlp-crownibp/seed_$s lenet300 mlp-crown-s$s 0.1 $CERT
done
one runs/verify/cnn-crownibp cnn-small cnn-crown-s0 0.1 $CERT
for s in 0 1; do
    one runs/verify/mlp-natural/seed_$s lenet300 mlp-natural-s$s 0.01
done
