#!/usr/bin/env bash
# 2:4 semi-structured vs unstructured 50% (layerwise uniform and global) at initialisation, LeNet-300-100 on
# Fashion-MNIST, 2 seeds: `bash experiments/nm_table.sh` (cached), then the printed table.
set -euo pipefail
T=${TICKETLAB:-.venv/bin/ticketlab}
for s in 0 1; do
    for m in magnitude random; do
        base="--model lenet300 --dataset fashion-mnist --method $m --density 0.5 --iterations 3000 --seed $s --quiet"
        $T prune-init $base --pattern 2:4 --out runs/nm/$m-2of4-s$s > /dev/null
        $T prune-init $base --scope layerwise --out runs/nm/$m-layerwise-s$s > /dev/null
        $T prune-init $base --out runs/nm/$m-global-s$s > /dev/null
    done
done
python3 - <<'PY'
import json, statistics as st
print("| scores at init | 2:4 | unstructured, layerwise 50% | unstructured, global 50% |")
print("| --- | --- | --- | --- |")
for m in ("magnitude", "random"):
    cells = []
    for kind in ("2of4", "layerwise", "global"):
        accs = [json.load(open(f"runs/nm/{m}-{kind}-s{s}/summary.json"))["test_acc"] for s in (0, 1)]
        cells.append(f"{st.mean(accs):.4f} ± {st.stdev(accs):.4f}")
    print(f"| {m} | " + " | ".join(cells) + " |")
PY
