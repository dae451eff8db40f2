#!/usr/bin/env bash
# The CNN rows of the SparseVLR and Deadwooding tables (one seed; cached like the other scripts).
set -euo pipefail
T=${TICKETLAB:-.venv/bin/ticketlab}
OUT=${OUT:-runs/certsparse}
for d in 1.0 0.1; do
    m=$([ "$d" = "1.0" ] && echo static || echo sparsevlr)
    t0=$(date +%s.%N)
    $T dst --method $m --density $d --model cnn-small --dataset fashion-mnist --iterations 3000 --batch-size 100 \
        --optimizer adam --lr 0.002 --certified crown-ibp --cert-eps 0.1 --seed 0 --quiet --out "$OUT/sparsevlr/cnn-$m-$d-s0"
    echo "cnn $m $d: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" >> "$OUT/sparsevlr-times.log"
done
src=runs/verify/cnn-natural
d=$(python3 -c "import json; print(json.load(open('$src/summary.json'))['rounds'][3]['density'])")
$T deadwood --source $src --model cnn-small --dataset fashion-mnist --density "$d" --rob-eps 0.1 --rob-steps 5 \
    --iterations 3000 --batch-size 100 --optimizer adam --lr 0.002 --quiet --out "$OUT/deadwood/cnn-s0"
$T compress --source $src --model cnn-small --dataset fashion-mnist --method magnitude --density "$d" \
    --iterations 3000 --batch-size 100 --optimizer adam --lr 0.002 --quiet --out "$OUT/deadwood/cnn-compress-s0"
