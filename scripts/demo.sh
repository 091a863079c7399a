#!/usr/bin/env bash
# `make demo`: the main job end to end on a phantom BraTS dataset, small enough for a laptop CPU.
#   `medtl quickstart` (phantom -> prepare -> split by patient -> a sweep of 4 strategies x 2 seeds,
#   2 at a time -> report),
#   then the same phantom as BraTS label masks -> a U-Net over ResNet-18 -> Dice, BraTS regions, overlays
# Running it again reuses the data, the store and every finished run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${MEDTL_DEMO_DIR:-demo}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# The classification study is `medtl quickstart`: phantom -> prepare -> split -> a sweep of
# 4 strategies x 2 seeds (2 at a time) -> report. Its spec is written to $OUT/quickstart.toml.
medtl quickstart --out "$OUT" --workers 2
medtl data info "$OUT/stores/brats"

# Segmentation: the same phantom, prepared as BraTS label masks (0/1/2/4), a U-Net over ResNet-18.
[ -d "$OUT/seg_store" ] || medtl prepare brats "$OUT/raw/brats" "$OUT/seg_store" --modalities t1,t1ce --labels mask --size 32 --workers 2
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
