#!/bin/sh
# Trains the two small jobs the stage-3 tests read (ctest fixture `stage3_jobs`), from the prepared_tiny dataset:
#   $root/job    stage 1, cache fill, stage 2
#   $root/other  stage 1 and cache fill with another seed: an Item LLM of another version
# A finished job is not trained again (--resume auto evaluates nothing here: no test stage); one of another config or
# dataset (an older build's) is set aside by --fresh (moved to JOB/previous-TIME) and trained anew.
set -eu
root="$1"
data="$2"
sets="--set stage1.epochs=1 --set stage1.batch_size=32 --set stage1.seq_len=6 --set stage1.negatives=64
  --set stage2.epochs=1 --set stage2.batch_size=32 --set stage2.seq_len=8 --set stage2.negatives=64
  --set model.hidden_size=32 --set model.intermediate_size=64 --set model.item_layers=1 --set model.user_layers=1
  --set cache.unit_items=50"
# shellcheck disable=SC2086
"$HLLM_BIN/hllm" train --data "$data" --out "$root/job" --resume auto --fresh \
  --set 'job.stages=["stage1", "cache", "stage2"]' $sets
# shellcheck disable=SC2086
"$HLLM_BIN/hllm" train --data "$data" --out "$root/other" --resume auto --fresh \
  --set 'job.stages=["stage1", "cache"]' --set job.seed=7 $sets
