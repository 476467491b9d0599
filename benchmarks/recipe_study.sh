#!/usr/bin/env bash
# The embedded preset's recipe study (README "The embedded backbones and retrofits"): which backbone recipe and
# retrofit budget schedule config.yaml uses, measured on 2 CPU cores. Runs one after another (never two torch jobs
# at once on 2 cores) and prints validation accuracy per epoch and training time of each run.
#
#   benchmarks/recipe_study.sh [OUT]        # OUT: a scratch folder (default /tmp/spot-recipe-study); ≈ 45 min
#
# Every run is `spot train` on a config.yaml recipe with `--set` overrides, so each line states its whole difference
# from config.yaml. Backbone variants train 3 epochs; retrofit variants 1 epoch from one 6-epoch parent.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/spot-recipe-study}
SPOT=${SPOT:-.venv/bin/spot}
mkdir -p "$OUT"
T=(--config config.yaml --threads 2 --no-progress)

data() {  # data NAME FRAGMENTS
  [ -f "$OUT/$1/manifest.json" ] || "$SPOT" data fmnist --out "$OUT/$1" --fragments "$2" >/dev/null
}
report() {
  python3 - "$OUT/$1.json" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def order(k):
    return int(k.split("@")[1]) if "@" in k else 0
val = ["/".join(f"{h[k]:.1f}" for k in sorted((k for k in h if k.startswith("val_acc1")), key=order))
       for h in d["history"]]
print(f"{sys.argv[2]:<28} val acc (full[/@4/@9/@18]) per epoch: {' | '.join(val)}   train {d['train_time_s']:.0f} s")
EOF
}
train() {  # train NAME DATA RECIPE [spot train args…]
  local name=$1 dset=$2 recipe=$3; shift 3
  [ -f "$OUT/$name.json" ] || "$SPOT" train "${T[@]}" --recipe "$recipe" --data "$OUT/$dset" \
      --out "$OUT/$name.safetensors" --state-dir "$OUT/state_$name" "$@" >"$OUT/$name.log" 2>&1
  report "$name"
}

data clutter 2   # the earlier canvas: two 10×10 fragments of other articles at 40 % intensity
data clean 0     # config.yaml's canvas

# -- backbone recipe (CLS-IN1k stand-in), 3 epochs; "old" = the earlier recipe (CLS token, batch 128, lr 2e-3)
OLD=(--set epochs=3 --set model.global_pool=token --set model.fc_norm=false --set batch_size=128 --set optimizer.lr=2e-3)
train old_clutter            clutter backbone_cls_in1k "${OLD[@]}"
train old_clutter_avgpool    clutter backbone_cls_in1k "${OLD[@]}" --set model.global_pool=avg --set model.fc_norm=true
train old_clutter_lr3e3_tr4  clutter backbone_cls_in1k "${OLD[@]}" --set optimizer.lr=3e-3 --set data.translate=4
train old_clutter_b256_lr3e3 clutter backbone_cls_in1k "${OLD[@]}" --set batch_size=256 --set optimizer.lr=3e-3
train old_clutter_wide128    clutter backbone_cls_in1k "${OLD[@]}" --set 'model.timm_kwargs={embed_dim: 128, num_heads: 4}'
train old_clutter_avg_b64    clutter backbone_cls_in1k "${OLD[@]}" --set model.global_pool=avg --set model.fc_norm=true \
                                                       --set batch_size=64 --set optimizer.lr=1.4e-3
train old_clean              clean   backbone_cls_in1k "${OLD[@]}"

# -- retrofit budget schedule: 1 epoch from a 6-epoch parent (clean canvas, avg pool, batch 128, lr 2e-3)
train parent clean backbone_cls_in1k --set epochs=6 --set batch_size=128 --set optimizer.lr=2e-3
R=(--parent "$OUT/parent.safetensors" --set epochs=1)
train retro_schedule_only  clean retrofit_cls "${R[@]}" --set tokens.full_share=0 --set model.drop_path=0.1
train retro_full25_dp01    clean retrofit_cls "${R[@]}" --set model.drop_path=0.1
train retro_full25_dp01_lr clean retrofit_cls "${R[@]}" --set model.drop_path=0.1 --set optimizer.lr=1e-3
train retro_full25         clean retrofit_cls "${R[@]}"
train retro_full50_dp01    clean retrofit_cls "${R[@]}" --set tokens.full_share=0.5 --set model.drop_path=0.1
train gridctl_full25_dp01  clean retrofit_cls "${R[@]}" --set tokens.mode=grid_subset --set model.drop_path=0.1
train finetune_full_grid   clean retrofit_cls "${R[@]}" --set tokens.mode=grid_subset --set tokens.min_tokens=36 \
                                                        --set tokens.full_share=0 --set model.drop_path=0.1
