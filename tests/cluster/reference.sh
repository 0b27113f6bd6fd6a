#!/usr/bin/env bash
# Fixture cluster_reference: the tiny job with `hllm train --world 2` (two ranks started by hllm train itself), whose
# final digest every cluster test must reproduce.
source "$(dirname "$0")/common.sh"
rm -rf "$REF"
mkdir -p "$REF"
"$HLLM" train --world 2 --data "$HLLM_TINY_DATA" --out "$REF/job" "${JOB_SETS[@]}" > "$REF/train.log" 2>&1 ||
  { tail -n 30 "$REF/train.log"; fail "the reference run failed"; }
d=$(digest "$REF/job")
[ ${#d} -eq 16 ] || fail "reference digest '$d'"
echo "$d" > "$REF/digest"
note "reference (--world 2): digest $d, $(step_lines "$REF/job" 0) + $(step_lines "$REF/job" 1) step lines"
