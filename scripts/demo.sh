#!/usr/bin/env bash
# `make demo`: the main job end to end on a phantom BraTS dataset, small enough for a laptop CPU.
#   phantom -> prepare -> split by patient -> 4 strategies x 2 seeds (2 at a time) -> report,
#   then the same phantom as BraTS label masks -> a U-Net over ResNet-18 -> Dice, BraTS regions, overlays
# Running it again reuses the data, the store and every finished run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${MEDTL_DEMO_DIR:-demo}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -d "$OUT/raw" ] || medtl prepare phantom brats "$OUT/raw" --subjects 40 --shape 64 64 24 --seed 0
[ -d "$OUT/store" ] || medtl prepare brats "$OUT/raw" "$OUT/store" --modalities t1 --labels grade --size 32 --workers 2
[ -f "$OUT/store.split.json" ] || medtl data split "$OUT/store" --folds 4 --val-fold 0 --test-fold 1 --seed 0
medtl data info "$OUT/store"

# Each run resumes or returns its finished result when run again (its id is a hash of its config).
for strategy in linear l1sb progressive full; do
  for seed in 0 1; do echo "$strategy $seed"; done
done | xargs -P 2 -L 1 sh -c 'medtl finetune --data "$0/store" --backbone resnet18 --init random \
  --strategy "$1" --seed "$2" --lr 1e-3 --class-weights balanced --epochs-scale 0.1 --batch-size 32 \
  --workers 0 --device cpu --out "$0/runs" > "$0/runs.$1.$2.log" 2>&1 || { cat "$0/runs.$1.$2.log"; exit 1; }' "$OUT"

medtl report "$OUT/runs" --by strategy --baseline strategy=full --force

# Segmentation: the same phantom, prepared as BraTS label masks (0/1/2/4), a U-Net over ResNet-18.
[ -d "$OUT/seg_store" ] || medtl prepare brats "$OUT/raw" "$OUT/seg_store" --modalities t1,t1ce --labels mask --size 32 --workers 2
medtl finetune --data "$OUT/seg_store" --backbone resnet18 --init random --strategy full \
  --epochs-scale 0.05 --lr 3e-3 --batch-size 16 --device cpu --out "$OUT/seg_runs"
python - "$OUT/seg_runs" <<'PY'
import json
import sys
from pathlib import Path


def fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


for path in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    test = json.loads(path.read_text())["test"]
    low, high = test.get("ci95", {}).get("dice", [None, None])
    regions = ", ".join(f"{r} {fmt(test.get(f'dice_{r}'))}" for r in ("ET", "TC", "WT"))
    print(f"\nU-Net test mean Dice {fmt(test['dice'])} (95% CI {fmt(low)}-{fmt(high)}); "
          f"BraTS Dice {regions}; overlays in {path.parent / 'overlays'}")
PY
