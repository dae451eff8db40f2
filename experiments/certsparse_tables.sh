#!/usr/bin/env bash
# The README's verified-sparse tables from the runs of certsparse_runs.sh and certsparse_runs2.sh (each
# `ticketlab verify` result is cached in its run folder). Prints markdown tables; TABLES=a,b picks some.
set -euo pipefail
PY=${PY:-.venv/bin/python}
R=runs/certsparse
V=runs/verify
tab() { $PY experiments/certsparse_table.py "$@"; echo; }
want() { [ -z "${TABLES:-}" ] || [[ ",$TABLES," == *",$1,"* ]]; }
two() { echo "$1=$R/mlp-$2-s0/$3,$R/mlp-$2-s1/$3"; }

if want mlp-crown; then
    echo "### LeNet-300-100, CROWN-IBP-trained, eps 0.1"
    tab "dense parent=$V/mlp-crownibp/seed_0@0,$V/mlp-crownibp/seed_1@0" \
        "IMP ticket (50%)=$V/mlp-crownibp/seed_0@1,$V/mlp-crownibp/seed_1@1" \
        "$(two 'magnitude, unstructured' crown compress-magnitude)" \
        "$(two 'neurons: random' crown prune-random)" \
        "$(two 'neurons: magnitude' crown prune-magnitude)" \
        "$(two 'neurons: stability' crown prune-stability)" \
        "$(two 'neurons: stability + RS' crown prune-stability-rs)" \
        --eps 0.1 --samples 100 --timeout 30
fi
if want graft; then
    echo "### Linearity grafting vs neuron pruning, LeNet-300-100, CROWN-IBP-trained, eps 0.1"
    tab "dense parent=$V/mlp-crownibp/seed_0@0,$V/mlp-crownibp/seed_1@0" \
        "$(two 'graft 25%' crown graft-magnitude-0.25)" "$(two 'prune 25%' crown graft-as-prune-0.25)" \
        "$(two 'graft 50%' crown graft-magnitude)" "$(two 'prune 50%' crown graft-as-prune)" \
        "$(two 'graft 75%' crown graft-magnitude-0.75)" "$(two 'prune 75%' crown graft-as-prune-0.75)" \
        --eps 0.1 --samples 100 --timeout 30
fi
if want mlp-pgd; then
    echo "### LeNet-300-100, PGD-trained (eps 0.1, 5 steps), eps 0.1 (50 images, 5 s MILP limit)"
    tab "dense parent=$V/mlp-pgd/seed_0@0,$V/mlp-pgd/seed_1@0" \
        "IMP ticket (50%)=$V/mlp-pgd/seed_0@1,$V/mlp-pgd/seed_1@1" \
        "$(two 'magnitude, unstructured' pgd compress-magnitude)" \
        "$(two 'neurons: magnitude' pgd prune-magnitude)" \
        "$(two 'neurons: stability' pgd prune-stability)" \
        "$(two 'graft 50%' pgd graft-magnitude)" \
        --eps 0.1 --samples 50 --timeout 5
fi
if want mlp-natural; then
    echo "### LeNet-300-100, naturally trained, eps 0.01"
    tab "dense parent=$V/mlp-natural/seed_0@0,$V/mlp-natural/seed_1@0" \
        "IMP ticket (50%)=$V/mlp-natural/seed_0@1,$V/mlp-natural/seed_1@1" \
        "$(two 'magnitude, unstructured' natural compress-magnitude)" \
        "$(two 'neurons: random' natural prune-random)" \
        "$(two 'neurons: magnitude' natural prune-magnitude)" \
        "$(two 'neurons: stability' natural prune-stability)" \
        "$(two 'graft 50%' natural graft-magnitude)" \
        --eps 0.01 --samples 100 --timeout 10
fi
if want cnn-crown; then
    echo "### cnn-small, CROWN-IBP-trained, eps 0.1 (one seed, 50 images)"
    C=$R/cnn-crown-s0
    tab "dense parent=$V/cnn-crownibp@0" "IMP ticket (25%)=$V/cnn-crownibp@2" \
        "magnitude, unstructured=$C/compress-magnitude" "neurons: random=$C/prune-random" \
        "neurons: magnitude=$C/prune-magnitude" "neurons: stability=$C/prune-stability" \
        "graft 50%=$C/graft-magnitude" "prune 50% (graft's neurons)=$C/graft-as-prune" \
        --eps 0.1 --samples 50 --timeout 20
fi
if want sparsevlr; then
    echo "### SparseVLR vs dense CROWN-IBP training, LeNet-300-100, eps 0.1"
    S=$R/sparsevlr
    tab "dense (CROWN-IBP)=$S/mlp-static-1.0-s0,$S/mlp-static-1.0-s1" \
        "SparseVLR 10%=$S/mlp-sparsevlr-0.1-s0,$S/mlp-sparsevlr-0.1-s1" \
        "SparseVLR 1%=$S/mlp-sparsevlr-0.01-s0,$S/mlp-sparsevlr-0.01-s1" \
        --eps 0.1 --samples 100 --timeout 30
fi
if want sparsevlr-cnn; then
    echo "### SparseVLR vs dense CROWN-IBP training, cnn-small, eps 0.1 (one seed, 50 images)"
    S=$R/sparsevlr
    tab "dense (CROWN-IBP)=$S/cnn-static-1.0-s0" "SparseVLR 10%=$S/cnn-sparsevlr-0.1-s0" \
        --eps 0.1 --samples 50 --timeout 20
fi
if want deadwood; then
    echo "### Deadwooding vs IMP, magnitude and adversarially trained tickets, LeNet-300-100 at 6.3%, eps 0.1 (50 images, 5 s MILP limit)"
    D=$R/deadwood
    tab "dense parent (natural)=$V/mlp-natural/seed_0@0,$V/mlp-natural/seed_1@0" \
        "IMP ticket (natural)=$V/mlp-natural/seed_0@4,$V/mlp-natural/seed_1@4" \
        "magnitude, one-shot + fine-tune=$D/compress-s0,$D/compress-s1" \
        "IMP ticket (PGD-trained)=$V/mlp-pgd/seed_0@4,$V/mlp-pgd/seed_1@4" \
        "Deadwooding=$D/mlp-s0,$D/mlp-s1" \
        --eps 0.1 --samples 50 --timeout 5
fi
if want deadwood-cnn; then
    echo "### Deadwooding vs IMP and magnitude pruning, cnn-small at 12.7%, eps 0.1 (one seed, 50 images, 5 s limit)"
    D=$R/deadwood
    tab "dense parent (natural)=$V/cnn-natural@0" "IMP ticket (natural)=$V/cnn-natural@3" \
        "magnitude, one-shot + fine-tune=$D/cnn-compress-s0" "Deadwooding=$D/cnn-s0" \
        --eps 0.1 --samples 50 --timeout 5
fi
