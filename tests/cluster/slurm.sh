#!/usr/bin/env bash
# launch/slurm/hllm.sbatch on a real single-node Slurm cluster that this test starts (munged + slurmctld + slurmd on
# 127.0.0.1): a two-task job ends with the digest of `hllm train --world 2`; then a two-task job whose rank 1 is
# killed mid-job ends, with HLLM_MAX_RESTARTS=1, with the same digest after srun ran again with --resume auto.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/slurm_cluster.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d "$HLLM_CLUSTER_WORK/slurm.XXXXXX")
trap slurm_down EXIT
rc=0
slurm_up "$W/cluster" || rc=$?
[ $rc -eq 0 ] || exit $rc
export HLLM_BIN HLLM_RANK_SCRIPT="$ROOT/launch/slurm/hllm-rank"

# Submits the job (sbatch --wait) with EXTRA sbatch options; prints its output file.
submit() {
  local name=$1
  shift
  (cd "$W" && sbatch --wait -N 1 -n 2 --ntasks-per-node 2 -o "$W/$name.out" "$@" "$ROOT/launch/slurm/hllm.sbatch" \
    --data "$HLLM_TINY_DATA" --out "$W/$name" "${JOB_SETS[@]}")
}

note "sbatch -N 1 -n 2 hllm.sbatch"
submit plain || { cat "$W/plain.out"; fail "the Slurm job failed"; }
grep -q 'hllm.sbatch: every rank finished' "$W/plain.out" || { cat "$W/plain.out"; fail "no 'every rank finished' line"; }
grep -q "placement: 2 ranks on 1 hosts" "$W/plain.out" || { cat "$W/plain.out"; fail "no placement line"; }
grep 'placement:' "$W/plain.out"
expect_digest "$W/plain"

note "rank 1 killed mid-job under Slurm, HLLM_MAX_RESTARTS=1"
HLLM_MAX_RESTARTS=1 submit killed &
sb=$!
n=$((12 + RANDOM % 40))
wait_steps "$W/killed" 1 "$n" "$sb" || fail "the job ended before rank 1's step line $n"
victim=$(pgrep -f -- "--out $W/killed " | while read -r p; do
  tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx 'SLURM_PROCID=1' && [ "$(cat /proc/$p/comm)" = hllm-train ] && echo "$p"
done | head -n 1)
[ -n "$victim" ] || fail "no rank-1 hllm-train process"
kill -9 "$victim"
wait "$sb" || { cat "$W/killed.out"; fail "the Slurm job failed after rank 1 was killed"; }
grep -q 'running it again from the newest checkpoint (--resume auto), restart 1 of 1' "$W/killed.out" ||
  { cat "$W/killed.out"; fail "no restart line"; }
grep -q '"event":"resume"' "$W/killed/metrics.jsonl" || fail "the second srun step did not resume"
expect_verified "$W/killed"
expect_digest "$W/killed"
note "slurm: passed"
