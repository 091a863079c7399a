#!/usr/bin/env bash
# `make demo`: the main job end to end on a phantom BraTS dataset, small enough for a laptop CPU.
#   phantom -> prepare -> split by patient -> info -> fine-tune with three strategies -> metrics,
#   then the same phantom as BraTS label masks -> a U-Net over ResNet-18 -> Dice, BraTS regions, overlays
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${MEDTL_DEMO_DIR:-demo}
rm -rf "$OUT"
mkdir -p "$OUT"

medtl prepare phantom brats "$OUT/raw" --subjects 16 --shape 64 64 24 --seed 0
medtl prepare brats "$OUT/raw" "$OUT/store" --modalities t1 --labels grade --size 32 --workers 2
medtl data split "$OUT/store" --folds 4 --val-fold 0 --test-fold 1 --seed 0
medtl data info "$OUT/store"

for strategy in linear l1sb progressive; do
  medtl finetune --data "$OUT/store" --backbone resnet18 --init random --strategy "$strategy" \
    --epochs-scale 0.03 --batch-size 32 --device cpu --out "$OUT/runs"
done

# One line per strategy: what trained, how well, at what cost.
python - "$OUT/runs" <<'PY'
import json
import sys
from pathlib import Path

rows = []
for path in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    m = json.loads(path.read_text())
    test = m["test"]
    low, high = test.get("ci95", {}).get("auroc", [float("nan")] * 2)
    trainable = max(p["trainable_params"] for p in m["phases"])
    kwh = sum(p["kwh"] for p in m["phases"])
    rows.append((m["strategy"], len(m["phases"]), trainable, test["auroc"], low, high, kwh))
print(f"\n{'strategy':<12} {'phases':>6} {'max trainable':>14} {'test AUROC':>10} {'95% CI':>13} {'kWh':>9}")
for name, phases, trainable, auroc, low, high, kwh in rows:
    print(f"{name:<12} {phases:>6} {trainable:>14,} {auroc:>10.3f} {low:>6.3f}-{high:<6.3f} {kwh:>9.2e}")
PY

# Segmentation: the same phantom, prepared as BraTS label masks (0/1/2/4), a U-Net over ResNet-18.
medtl prepare brats "$OUT/raw" "$OUT/seg_store" --modalities t1,t1ce --labels mask --size 32 --workers 2
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
