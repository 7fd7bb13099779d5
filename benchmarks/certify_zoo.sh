#!/usr/bin/env bash
# Certify every bundled expert on 500 test images (every 20th for Fashion-MNIST, all 500 for
# digits), n0 = 100, n = 10,000, alpha = 0.001, and write the results into each expert's card.
# Per-input TSVs go to benchmarks/results/cards/<dataset>/ (resumable).
set -euo pipefail
cd "$(dirname "$0")/.."
for dataset in ${DATASETS:-fashion-mnist digits}; do
  for sigma in 0.25 0.50 1.00; do
    name="$dataset-sigma$sigma"
    start=$(date +%s)
    rsrouter experts certify-card "experts/$dataset/sigma-$sigma" --num 500 --n0 100 --n 10000 \
      --alpha 0.001 --batch-size 2500 --out "benchmarks/results/cards/$dataset/$name.tsv" --no-progress
    echo "$name: $(( $(date +%s) - start )) s"
  done
done
