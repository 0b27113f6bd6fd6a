#!/usr/bin/env bash
# launch/slurm/hllm.sbatch on a real single-node Slurm cluster that this test starts (munged + slurmctld + slurmd on
# 127.0.0.1): a two-task job ends with the digest of `hllm train --world 2`; then a two-task job whose rank 1 is
# killed mid-job ends, with HLLM_MAX_RESTARTS=1, with the same digest after srun ran again with --resume auto.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/slurm_cluster.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d "$HLLM_CLUSTER_WORK/slurm.XXXXXX")
# Daemons, jobs, and any process still naming this test's directory (a job step left behind by a failure).
# The directory goes last, and only after a pass (the daemons' sockets and state live in it).
passed=0
trap 'slurm_down; pids_with "$W/" | xargs -r kill -9 2>/dev/null || true; [ $passed = 0 ] || rm -rf "$W"' EXIT
rc=0
slurm_up "$W/cluster" || rc=$?
[ $rc -eq 0 ] || { [ $rc -ne 77 ] || passed=1; exit $rc; }  # a skip keeps nothing, a failure its logs
export HLLM_BIN HLLM_RANK_SCRIPT="$ROOT/launch/slurm/hllm-rank"

# Submits the job with EXTRA sbatch options and waits until it ended (polling scontrol: `sbatch --wait` polls at
# growing intervals, seconds after the job ends); succeeds when Slurm says COMPLETED.
submit() {
  local name=$1 id state t0=$SECONDS
  shift
  id=$(cd "$W" && sbatch --parsable -N 1 -n 2 --ntasks-per-node 2 -o "$W/$name.out" "$@" \
    "$ROOT/launch/slurm/hllm.sbatch" --data "$HLLM_TINY_DATA" --out "$W/$name" "${JOB_SETS[@]}")
  while :; do
    state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$state" in
      PENDING | CONFIGURING | RUNNING | COMPLETING | "") ;;
      *) break ;;
    esac
    [ $((SECONDS - t0)) -lt 600 ] || { echo "job $id still $state after 600 s"; return 1; }
    sleep 0.2
  done
  echo "job $id ($name): $state"
  [ "$state" = COMPLETED ]
}

note "sbatch -N 1 -n 2 hllm.sbatch"
submit plain || { cat "$W/plain.out"; fail "the Slurm job failed"; }
grep -q 'hllm.sbatch: every rank finished' "$W/plain.out" || { cat "$W/plain.out"; fail "no 'every rank finished' line"; }
grep -q "placement: 2 ranks on 1 hosts" "$W/plain.out" || { cat "$W/plain.out"; fail "no placement line"; }
grep 'placement:' "$W/plain.out"
expect_digest "$W/plain"

note "rank 1 killed mid-job under Slurm, HLLM_MAX_RESTARTS=1"
# Rank 1 pauses after its step N (the test hook, common.sh): the job cannot end before the kill.
n=$((12 + RANDOM % 40))
HLLM_MAX_RESTARTS=1 HLLM_TEST_PAUSE_AT_STEP=$n HLLM_TEST_PAUSE_RANK=1 HLLM_TEST_PAUSE_FILE="$W/killed.pause" submit killed &
sb=$!
victim=$(wait_paused "$W/killed.pause" "$sb") || { cat "$W/killed.out"; fail "rank 1 did not pause at its step $n: $victim"; }
tr '\0' '\n' < "/proc/$victim/environ" | grep -qx 'SLURM_PROCID=1' || fail "the paused process $victim is not Slurm's task 1"
note "rank 1 (pid $victim) paused after its step $n (step lines: $(step_lines "$W/killed" 1)); killing it"
kill -9 "$victim"
wait "$sb" || { cat "$W/killed.out"; fail "the Slurm job failed after rank 1 was killed"; }
grep -q 'running it again from the newest checkpoint (--resume auto), restart 1 of 1' "$W/killed.out" ||
  { cat "$W/killed.out"; fail "no restart line"; }
grep -q '"event":"resume"' "$W/killed/metrics.jsonl" || fail "the second srun step did not resume"
expect_verified "$W/killed"
expect_digest "$W/killed"
passed=1
note "slurm: passed"
