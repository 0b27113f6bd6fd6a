#!/usr/bin/env bash
# hllm launch --nproc-per-node 2 on one host: (1) a plain run ends with the --world 2 digest and prints the
# placement; (2) rank 1 killed with SIGKILL mid-job: the launcher stops rank 0, restarts both with --resume auto and
# the job ends with the same digest; (3) rank 0 killed the same way. Also two launchers with --nnodes 2.
source "$(dirname "$0")/common.sh"
W=$(mktemp -d "$HLLM_CLUSTER_WORK/one-host.XXXXXX")
trap 'jobs -p | xargs -r kill -9 2>/dev/null || true' EXIT

note "plain run"
"$HLLM" launch --nproc-per-node 2 -- --data "$HLLM_TINY_DATA" --out "$W/plain" "${JOB_SETS[@]}" > "$W/plain.log" 2>&1 ||
  { tail -n 30 "$W/plain.log"; fail "hllm launch --nproc-per-node 2 failed"; }
grep -q 'hllm launch: all 2 ranks finished' "$W/plain.log" || fail "no 'all 2 ranks finished' line"
grep -q 'placement: rank 1 on localhost (127.0.0.1): trainer-1' "$W/plain.log" || { grep placement "$W/plain.log"; fail "no placement line for rank 1"; }
expect_digest "$W/plain"

# Kills rank RANK (a child of the launcher: its RANK variable says which) while it is paused after its step N (the
# test hook, common.sh), so the job cannot end before the kill.
kill_rank_test() {
  local rank=$1 n=$2 job="$W/kill-rank-$1"
  note "rank $rank killed at its step $n"
  HLLM_TEST_PAUSE_AT_STEP=$n HLLM_TEST_PAUSE_RANK=$rank HLLM_TEST_PAUSE_FILE="$job.pause" \
    "$HLLM" launch --nproc-per-node 2 --max-restarts 2 -- --data "$HLLM_TINY_DATA" --out "$job" "${JOB_SETS[@]}" \
    > "$job.log" 2>&1 &
  local launcher=$!
  local victim
  victim=$(wait_paused "$job.pause" "$launcher") ||
    { tail -n 30 "$job.log"; fail "rank $rank did not pause at its step $n: $victim"; }
  grep -qw -- "$victim" /proc/$launcher/task/*/children || fail "the paused process $victim is not a child of the launcher"
  tr '\0' '\n' < "/proc/$victim/environ" | grep -qx "RANK=$rank" || fail "the paused process $victim is not rank $rank"
  note "rank $rank (pid $victim) paused after its step $n (step lines: $(step_lines "$job" "$rank")); killing it"
  kill -9 "$victim"
  wait "$launcher" || { tail -n 30 "$job.log"; fail "hllm launch failed after rank $rank was killed"; }
  grep -q "hllm launch: rank $rank on localhost was killed by signal Killed: stopping the other ranks" "$job.log" ||
    { grep 'hllm launch' "$job.log"; fail "no line naming the killed rank"; }
  grep -q 'restarting every rank from the newest checkpoint (--resume auto), restart 1 of 2' "$job.log" ||
    fail "no restart line"
  grep -q '"event":"resume"' "$job/metrics.jsonl" || fail "the restarted job did not resume"
  grep '"event":"resume"' "$job/metrics.jsonl" | tail -n 1
  expect_verified "$job"
  expect_digest "$job"
}
# Two launchers, one per "host" (--nnodes 2, both on 127.0.0.1 here). job.threads=1: each launcher would give its
# only rank both cores, and torch results depend on the thread count (the reference ran one thread per rank).
note "two launchers: --nnodes 2 --node-rank 0|1"
port=$(free_port)
for k in 0 1; do
  "$HLLM" launch --nnodes 2 --node-rank $k --nproc-per-node 1 --master-addr 127.0.0.1 --master-port "$port" \
    -- --data "$HLLM_TINY_DATA" --out "$W/nnodes" "${JOB_SETS[@]}" --set job.threads=1 > "$W/nnodes-$k.log" 2>&1 &
done
for k in 0 1; do
  wait -n || { tail -n 20 "$W"/nnodes-*.log; fail "a launcher of the --nnodes 2 job failed"; }
done
expect_digest "$W/nnodes"

kill_rank_test 1 $((12 + RANDOM % 40))
kill_rank_test 0 $((12 + RANDOM % 40))
rm -rf "$W"
note "one host: passed"
