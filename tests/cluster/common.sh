# Shared by the cluster tests (issue 12). Sourced. Needs HLLM_BIN (build/bin), HLLM_TINY_DATA (the prepared tiny
# dataset) and HLLM_CLUSTER_WORK (a scratch directory shared by the tests; the reference run lives there).
set -euo pipefail
: "${HLLM_BIN:?}" "${HLLM_TINY_DATA:?}" "${HLLM_CLUSTER_WORK:?}"
HLLM="$HLLM_BIN/hllm"
REF="$HLLM_CLUSTER_WORK/reference"

# The tiny two-rank job of every cluster test: three stage-1 epochs and one stage-2 epoch at batch size 16 (about
# 80 step lines per rank), a checkpoint every 5 steps, collectives that give up after 20 s.
JOB_SETS=(--set 'job.stages=["stage1", "cache", "stage2"]' --set stage1.epochs=3 --set stage1.batch_size=16
  --set stage1.seq_len=6 --set stage1.negatives=64 --set stage2.epochs=1 --set stage2.batch_size=16
  --set stage2.seq_len=8 --set stage2.negatives=64 --set model.hidden_size=32 --set model.intermediate_size=64
  --set model.item_layers=1 --set model.user_layers=1 --set cache.unit_items=50
  --set train.checkpoint_every_steps=5 --set train.collective_timeout_s=20)

# A skip is exit status 77 (ctest SKIP_RETURN_CODE) with the reason on one line; never a silent pass.
skip() {
  echo "SKIPPED: $*"
  exit 77
}
# A daemon this machine has but that did not start (munged, Slurm): a skip elsewhere (return 77), a failure (return
# 1) under CI=true, whose machine has everything a cluster test needs.
cannot_start() {
  if [ "${CI:-}" = true ]; then
    echo "FAILED: $* (CI=true: this must work on the CI machine)" >&2
    return 1
  fi
  echo "SKIPPED: $*"
  return 77
}
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
note() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# The last line of `hllm checkpoint digest PATH`.
digest() { "$HLLM" checkpoint digest "$1" 2>&1 | tail -n 1; }
reference_digest() {
  [ -s "$REF/digest" ] || fail "no reference digest in $REF (the cluster.reference_setup fixture did not run)"
  cat "$REF/digest"
}
# Step lines in a rank's metrics file (rank 0: metrics.jsonl).
step_lines() {
  local f="$1/metrics.jsonl"
  [ "${2:-0}" = 0 ] || f="$1/metrics.rank-$2.jsonl"
  [ -f "$f" ] || { echo 0; return; }
  grep -c '"event":"step"' "$f" || true
}
# Waits until rank RANK of JOB logged N step lines, or PID ended (returns 1), or TIMEOUT seconds passed (returns 2).
wait_steps() {
  local job=$1 rank=$2 n=$3 pid=$4 timeout=${5:-300} t0=$SECONDS
  while [ "$(step_lines "$job" "$rank")" -lt "$n" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ $((SECONDS - t0)) -lt "$timeout" ] || return 2
    sleep 0.02
  done
}
# Kill tests hold the victim at a known step with the trainer's test-only pause hook (actors/user_trainer.cpp): with
# HLLM_TEST_PAUSE_AT_STEP=N HLLM_TEST_PAUSE_RANK=R HLLM_TEST_PAUSE_FILE=F in the job's environment, rank R's N-th step
# of its process creates F ("PID RANK STEP") and blocks until F is removed or the process is killed; a rank started
# again after the kill finds F and runs through. So the job can never finish before the kill, however fast it is.
# (Set them on the one command that starts the job, never exported: a later command must not pause.)
# Waits until the pause marker FILE exists (prints the paused process's pid), or PID ended (returns 1), or TIMEOUT
# seconds passed (returns 2).
wait_paused() {
  local file=$1 pid=$2 timeout=${3:-300} t0=$SECONDS
  until [ -s "$file" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ $((SECONDS - t0)) -lt "$timeout" ] || return 2
    sleep 0.02
  done
  local p
  read -r p _ < "$file"
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = hllm-train ] || { echo "pause marker $file names pid $p, not an hllm-train"; return 3; }
  echo "$p"
}
expect_digest() {
  local got want
  got=$(digest "$1")
  want=$(reference_digest)
  [ "$got" = "$want" ] || fail "$1: digest $got, the --world 2 reference's is $want"
  note "digest $got = the --world 2 reference's"
}
expect_verified() {
  "$HLLM" checkpoint verify "$1" > "$1.verify.log" 2>&1 || { cat "$1.verify.log"; fail "checkpoints of $1 do not verify"; }
}
# A TCP port nobody listens on here (iproute2's ss; the kernel may still hand it out before it is used).
# Below the kernel's ephemeral range (ip_local_port_range, 32768-60999 here): a port chosen there can be taken by an
# outgoing connection of a test running alongside before the launcher binds it (seen once in CI-like runs: host 0
# found its master port in use and host 1 waited out its rendezvous timeout).
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  while :; do
    p=$((20000 + RANDOM % (lo > 21000 ? lo - 20000 : 10000)))
    [ -n "$(ss -Htln "sport = :$p")" ] || { echo "$p"; return; }
  done
}
# Pids of the processes whose command line contains TEXT, from /proc (procps may be missing on a fresh machine).
pids_with() {
  local f p
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}
    p=${p%/cmdline}
    [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] || continue
    tr '\0' ' ' < "$f" 2>/dev/null | grep -qF -- "$1" && echo "$p"
  done
  return 0
}
