#!/usr/bin/env bash
# Multi-node training of the paper preset with DeepSpeed.
#   infra/deepspeed/launch.sh HOSTFILE [zero2|zero3] [scorer|explainer] [extra -S overrides...]
# Run from the project root on the first node of HOSTFILE. The JSON (bf16, ZeRO stage and tuning,
# clipping) is merged over the config built from params.yaml (`train.deepspeed_extra`).
set -euo pipefail
hostfile=${1:?usage: launch.sh HOSTFILE [zero2|zero3] [scorer|explainer] [-S key=value ...]}
zero=${2:-zero2}
stage=${3:-scorer}
shift $(( $# < 3 ? $# : 3 ))
config="infra/deepspeed/${zero}_bf16.json"
[[ -f $config ]] || { echo "no DeepSpeed config $config" >&2; exit 2; }
[[ -f $hostfile ]] || { echo "no hostfile $hostfile" >&2; exit 2; }
# ZeRO-3 partitions the weights, so the weight average (train.ema) is off there.
[[ $zero == zero3 ]] && set -- -S train.ema=0 "$@"
exec deepspeed --hostfile "$hostfile" --master_port "${MASTER_PORT:-29500}" \
  --module mint_iqa "train-$stage" \
  -S model.preset=paper -S train.deepspeed_extra="$config" "$@"
