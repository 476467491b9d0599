#!/usr/bin/env bash
# The learned placement's variant study (docs/placements.md "A learned placement"; issue 31): which glance-policy
# recipe config.yaml uses, chosen on the VALIDATION split (the training's own val_acc1@m), never on test. Runs one
# after another (never two torch jobs at once on 2 cores); prints validation Acc@1 at 4 / 9 / 18 tokens and the
# training time of each variant.
#
#   benchmarks/policy_study.sh SPOT_MODEL DATA [OUT]
#     SPOT_MODEL  a SPoT retrofit (e.g. results/embedded/models/cls_in1k_spot1.safetensors)
#     DATA        its prepared data folder (results/embedded/data)
#     OUT         a scratch folder (default /tmp/spot-policy-study); ≈ 6 min per variant on 2 cores
#
# Every run is `spot train --recipe place_policy` with `--set` overrides, so each line states its whole difference
# from config.yaml's recipe (the first line: the recipe itself).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
PARENT=$1 DATA=$2 OUT=${3:-/tmp/spot-policy-study}
SPOT=${SPOT:-.venv/bin/spot}
mkdir -p "$OUT"
[ -f "$PARENT" ] || { echo "no SPoT model at $PARENT: run the workflow's retrofit first" >&2; exit 2; }

report() {
  python3 - "$OUT/$1.json" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
last = d["history"][-1]
val = " / ".join(f"{last[k]:.2f}" for k in ("val_acc1@4", "val_acc1@9", "val_acc1@18") if k in last)
print(f"| {sys.argv[2]} | {val} | {d['train_time_s']:.0f} |")
EOF
}
train() {  # train NAME [spot train args…]
  local name=$1; shift
  [ -f "$OUT/$name.json" ] || "$SPOT" train --config config.yaml --threads 2 --no-progress --recipe place_policy \
      --data "$DATA" --parent "$PARENT" --out "$OUT/$name.safetensors" --state-dir "$OUT/state_$name" "$@" \
      >"$OUT/$name.log" 2>&1
  report "$name"
}

echo "| variant | val Acc@1 at 4 / 9 / 18 tokens | train s |"
echo "|---|---|---|"
# the variants as measured against the recipe before the study chose its policy (channels [8, 16], floor 0.05); the
# recipe is now their best by the validation mean over two seeds (floor0_channels16_32)
B=(--set 'place.policy.channels=[8, 16]' --set place.policy.floor=0.05)
train recipe              "${B[@]}"                # lr 2e-2, glance 12, channels [8, 16], floor 0.05, 25 600 images
train lr1e2_floor01_12k8  "${B[@]}" --set optimizer.lr=1e-2 --set place.policy.floor=0.1 --set data.limit=12800
train glance24_floor002   "${B[@]}" --set place.policy.glance=24 --set place.policy.floor=0.02
train channels16_32       "${B[@]}" --set 'place.policy.channels=[16, 32]'
train floor0              "${B[@]}" --set place.policy.floor=0.0
train two_epochs          "${B[@]}" --set epochs=2
train joint               "${B[@]}" --set place.tune=joint --set place.model_lr_scale=0.1 --set optimizer.layer_decay=0.65
# the joint variant's control: the same tuning of the model with a policy that cannot move the tokens (floor 0.999:
# the Isotropic layout) — what the model gains from tuning at these budgets alone
train joint_isotropic     "${B[@]}" --set place.tune=joint --set place.model_lr_scale=0.1 --set optimizer.layer_decay=0.65 \
                          --set place.policy.floor=0.999
# the training seed's spread (the recipe and the best variants again, another seed), and the two best combined
train recipe_seed21       "${B[@]}" --set seed=21
train floor0_seed21       "${B[@]}" --set place.policy.floor=0.0 --set seed=21
train channels16_32_seed21 "${B[@]}" --set 'place.policy.channels=[16, 32]' --set seed=21
train floor0_channels16_32 "${B[@]}" --set place.policy.floor=0.0 --set 'place.policy.channels=[16, 32]'
train floor0_channels16_32_seed21 "${B[@]}" --set place.policy.floor=0.0 --set 'place.policy.channels=[16, 32]' --set seed=21
