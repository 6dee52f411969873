#!/usr/bin/env bash
# One call on the device machine: install the carried wheels, generate phantoms,
# train, and leave in $OUT what comes back (at most 8 files): the float16 weights
# in parts, train.log, and run.tgz (thresholds, validation predictions, history,
# convert command). docs/TRAINING.md has the run call and what to do with them.
#
#   bash Tools/train_on_device.sh ARCH SIZE STUDIES EPOCHS [train.py options...]
#
# DEADLINE (default 540) is the seconds the whole script may take: train.py gets
# what is left of it, less TAIL (default 120) for precise BatchNorm, the float32
# validation predictions and the export, as --time-budget. PHANTOMS adds
# phantoms.py options. WORK (/tmp/ich-train) holds the data, cache and run.
# PYTHON and DEVICE (gpu) are for a dry run elsewhere.
set -uo pipefail
arch=${1:?ARCH}; size=${2:?SIZE}; studies=${3:?STUDIES}; epochs=${4:?EPOCHS}; shift 4
out=${OUT:?OUT names the folder that comes back}
python=${PYTHON:-python3}
deadline=${DEADLINE:-540}; tail_seconds=${TAIL:-120}
work=${WORK:-/tmp/ich-train}
log=$out/train.log
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax

if [ -d .whl ]; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
{ nvidia-smi -L || true; nproc; } > "$log" 2>&1
echo "phantoms: $studies studies (${PHANTOMS:-})" >> "$log"
# shellcheck disable=SC2086  # PHANTOMS is a list of options
$python Tools/phantoms.py --out "$work/data" --studies "$studies" --seed 1 --workers "$(nproc)" ${PHANTOMS:-} \
    >> "$log" 2>&1 || { tail -20 "$log"; exit 1; }
echo "phantoms done at ${SECONDS} s" >> "$log"

$python Tools/train.py --data "$work/data" --out "$work/run" --arch "$arch" --size "$size" --epochs "$epochs" \
    --batch 64 --val-fraction 0.1 --mixed-bfloat16 --cache "$work/cache" --workers "$(nproc)" \
    --device "${DEVICE:-gpu}" --export-f16 "$out" --time-budget $((deadline - tail_seconds - SECONDS)) "$@" \
    2>&1 | tee -a "$log"
rc=$?
echo "train.py exited $rc at ${SECONDS} s" >> "$log"
tar czf "$out/run.tgz" -C "$work/run" --ignore-failed-read thresholds.json val_predictions.csv val_report.md \
    val_report.json history.csv convert_command.txt state.json 2>/dev/null
exit $rc
