#!/usr/bin/env bash
# Bad input to hllm launch: each case must fail within its timeout with one line naming what and where, and leave
# the job directory it ran against (a copy of the finished reference job) as it was: checkpoints verify and the
# digest is unchanged.
source "$(dirname "$0")/common.sh"
W=$(mktemp -d "$HLLM_CLUSTER_WORK/bad-input.XXXXXX")
listener=""
trap '[ -z "$listener" ] || kill "$listener" 2>/dev/null || true; jobs -p | xargs -r kill -9 2>/dev/null || true' EXIT
cp -a "$REF/job" "$W/job"
TRAIN=(--data "$HLLM_TINY_DATA" --out "$W/job" "${JOB_SETS[@]}" --resume auto)

# expect_error NAME LINE TIMEOUT CMD...: CMD fails (not by the timeout) and prints LINE (a fixed string).
expect_error() {
  local name=$1 line=$2 limit=$3 rc=0
  shift 3
  timeout "$limit" "$@" > "$W/$name.log" 2>&1 || rc=$?
  [ $rc -ne 0 ] || { cat "$W/$name.log"; fail "$name: exit status 0"; }
  [ $rc -ne 124 ] || { cat "$W/$name.log"; fail "$name: still running after $limit s"; }
  grep -qF -- "$line" "$W/$name.log" || { cat "$W/$name.log"; fail "$name: no line '$line'"; }
  note "$name (exit status $rc): $(grep -F -- "$line" "$W/$name.log" | head -n 1)"
}

# A port in use: another job's rank 0 (host 0 of two, waiting for host 1) holds its store on the port.
port=$(free_port)
"$HLLM" launch --nnodes 2 --node-rank 0 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port "$port" \
  -- --data "$HLLM_TINY_DATA" --out "$W/other-job" "${JOB_SETS[@]}" > "$W/other-job.log" 2>&1 &
listener=$!
for _ in $(seq 300); do [ -n "$(ss -Htln "sport = :$port")" ] && break; sleep 0.1; done
[ -n "$(ss -Htln "sport = :$port")" ] || { cat "$W/other-job.log"; fail "the other job's store does not listen on $port"; }
expect_error port_in_use "hllm launch: master port $port on 127.0.0.1 is in use (Address already in use); choose another --master-port" 30 \
  "$HLLM" launch --nproc-per-node 2 --master-port "$port" -- "${TRAIN[@]}"
kill "$listener"
wait "$listener" || true
listener=""

# An unreachable master: host 1 of two waits for a store nobody runs.
port=$(free_port)
expect_error unreachable_master "hllm launch: cannot reach the master 127.0.0.1:$port within 3 s (Connection refused)" 30 \
  "$HLLM" launch --nnodes 2 --node-rank 1 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port "$port" \
  --rdzv-timeout 3 -- "${TRAIN[@]}"

# Mismatched configs: host 0 and host 1 (two launchers here) run different learning rates.
port=$(free_port)
"$HLLM" launch --nnodes 2 --node-rank 0 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port "$port" \
  -- "${TRAIN[@]}" --set stage1.lr=0.001 > "$W/mismatch-host0.log" 2>&1 &
host0=$!
expect_error config_mismatch "config mismatch between hosts: rank 0 on 127.0.0.1 (127.0.0.1) runs config" 120 \
  "$HLLM" launch --nnodes 2 --node-rank 1 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port "$port" \
  -- "${TRAIN[@]}" --set stage1.lr=0.002
grep -qF "every host must run the same --config and --set values" "$W/config_mismatch.log" || fail "config_mismatch: no advice"
rc=0
wait "$host0" || rc=$?
[ $rc -ne 0 ] || { cat "$W/mismatch-host0.log"; fail "host 0 of the mismatched pair ended with status 0"; }
grep -qF "config mismatch between hosts: rank 1 on 127.0.0.1 (127.0.0.1) runs config" "$W/mismatch-host0.log" ||
  { cat "$W/mismatch-host0.log"; fail "host 0 does not name rank 1's config"; }
note "config_mismatch, host 0 (exit status $rc): $(grep -F 'config mismatch' "$W/mismatch-host0.log" | head -n 1 | cut -c1-160)..."

# A hostfile naming an unknown host, and one with a line that is not `host [slots=N]`.
printf '127.0.0.1 slots=1\nno-such-host.invalid slots=1\n' > "$W/unknown.hosts"
expect_error unknown_host "hllm launch: hostfile $W/unknown.hosts line 2: unknown host 'no-such-host.invalid'" 30 \
  "$HLLM" launch --hostfile "$W/unknown.hosts" -- "${TRAIN[@]}"
printf '127.0.0.1 cpus=2\n' > "$W/bad.hosts"
expect_error bad_hostfile_line "hllm launch: hostfile $W/bad.hosts line 1: cannot parse '127.0.0.1 cpus=2' (expected: host [slots=N])" 30 \
  "$HLLM" launch --hostfile "$W/bad.hosts" -- "${TRAIN[@]}"

# A host that resolves but has no sshd (ssh to a closed port): ssh exits 255.
port=$(free_port)
printf '127.0.0.1 slots=2\n' > "$W/nossh.hosts"
expect_error no_sshd "hllm launch: rank 0 on 127.0.0.1 exited with status 255 (ssh could not reach the host): stopping the other ranks" 60 \
  "$HLLM" launch --hostfile "$W/nossh.hosts" --ssh "ssh -T -p $port -o BatchMode=yes -o ConnectTimeout=5" -- "${TRAIN[@]}"

# Nothing saved was lost.
expect_verified "$W/job"
expect_digest "$W/job"
rm -rf "$W"
note "bad input: passed"
