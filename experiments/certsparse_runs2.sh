#!/usr/bin/env bash
# More of the README's verified-sparse runs (cached; rerunning skips finished ones):
#  - linearity grafting against plain neuron pruning at 25/50/75% of the neurons (certified LeNet, 2 seeds);
#  - stability pruning fine-tuned with the ReLU-stability regulariser (CertifiedPruning's rs_reg, 0.01);
#  - the neuron methods on the adversarially trained LeNet (runs/verify/mlp-pgd);
#  - SparseVLR at 10% and 1% density against dense certified training (the same command at density 1);
#  - Deadwooding against IMP, magnitude pruning and adversarially trained IMP tickets at IMP's 6.3%.
set -euo pipefail
T=${TICKETLAB:-.venv/bin/ticketlab}
OUT=${OUT:-runs/certsparse}
CERT="--certified crown-ibp --cert-eps 0.1 --cert-start 0 --cert-ramp 0"
FT="--iterations 1000 --optimizer adam --lr 0.0005 --batch-size 100 --quiet"
timed() {  # timed LOG CMD...: the command's wall time appended to LOG
    local log=$1; shift
    local t0=$(date +%s.%N)
    "$@"
    echo "$* : $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" >> "$log"
}

for s in 0 1; do
    src=runs/verify/mlp-crownibp/seed_$s
    base="--source $src --model lenet300 --dataset fashion-mnist --score-eps 0.1 $CERT $FT"
    for f in 0.25 0.75; do
        $T neurons $base --fraction $f --method graft --score magnitude --out "$OUT/mlp-crown-s$s/graft-magnitude-$f"
        $T neurons $base --fraction $f --method graft --score magnitude --slope 0 --intercept 0 --freeze-graft \
            --out "$OUT/mlp-crown-s$s/graft-as-prune-$f"
    done
    $T neurons $base --fraction 0.5 --method prune --score stability --rs-weight 0.01 --rs-eps 0.1 \
        --out "$OUT/mlp-crown-s$s/prune-stability-rs"
done

for s in 0 1; do  # adversarially trained parents (PGD-5 at eps 0.1)
    src=runs/verify/mlp-pgd/seed_$s
    base="--source $src --model lenet300 --dataset fashion-mnist --fraction 0.5 --score-eps 0.1 --adv pgd --adv-eps 0.1 --adv-steps 5 $FT"
    $T neurons $base --method prune --score stability --out "$OUT/mlp-pgd-s$s/prune-stability"
    $T neurons $base --method prune --score magnitude --out "$OUT/mlp-pgd-s$s/prune-magnitude"
    $T neurons $base --method graft --score magnitude --out "$OUT/mlp-pgd-s$s/graft-magnitude"
    d=$(python3 -c "import json; print(json.load(open('$OUT/mlp-pgd-s$s/prune-stability/summary.json'))['weight_density'])")
    $T compress --source "$src" --model lenet300 --dataset fashion-mnist --method magnitude --density "$d" \
        --adv pgd --adv-eps 0.1 --adv-steps 5 $FT --out "$OUT/mlp-pgd-s$s/compress-magnitude"
done

for s in 0 1; do  # SparseVLR vs dense certified training: the parents' settings (3000 steps, CROWN-IBP 0.1)
    for d in 1.0 0.1 0.01; do
        m=$([ "$d" = "1.0" ] && echo static || echo sparsevlr)
        timed "$OUT/sparsevlr-times.log" $T dst --method $m --density $d --model lenet300 --dataset fashion-mnist \
            --iterations 3000 --batch-size 100 --optimizer adam --lr 0.002 --certified crown-ibp --cert-eps 0.1 \
            --seed $s --quiet --out "$OUT/sparsevlr/mlp-$m-$d-s$s"
    done
done

for s in 0 1; do  # Deadwooding from the natural parent, at IMP round 4's density (6.3%)
    src=runs/verify/mlp-natural/seed_$s
    d=$(python3 -c "import json; print(json.load(open('$src/summary.json'))['rounds'][4]['density'])")
    $T deadwood --source $src --model lenet300 --dataset fashion-mnist --density "$d" --rob-eps 0.1 --rob-steps 5 \
        --iterations 3000 --batch-size 100 --optimizer adam --lr 0.002 --quiet --out "$OUT/deadwood/mlp-s$s"
    $T compress --source $src --model lenet300 --dataset fashion-mnist --method magnitude --density "$d" \
        --iterations 3000 --batch-size 100 --optimizer adam --lr 0.002 --quiet --out "$OUT/deadwood/compress-s$s"
done
