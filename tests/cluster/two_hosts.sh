#!/usr/bin/env bash
# Two "hosts" as Linux network namespaces with their own addresses (veth pairs on a bridge) and their own sshd; the
# job directory is shared (the namespaces share the filesystem, as hosts share NFS). `hllm launch --hostfile` starts
# rank 0 on host a and rank 1 on host b over ssh.
#   1. A whole job with cache shards spread over the hosts and the encoder on host b: the --world 2 digest, and the
#      placement printed at the start names both hosts.
#   2. Host b's link is cut (`ip link set ... down`) mid-job: the job notices (a collective times out), stops with
#      exit status 1 and its checkpoints intact, rank 1 ends by itself; with the link back, launching again
#      (--resume auto) resumes and ends with the same digest.
#   3. Rank 1 killed on host b with --max-restarts 1: the launcher stops rank 0 on host a over ssh, starts both
#      again with --resume auto, and the job ends with the same digest.
source "$(dirname "$0")/common.sh"
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root; this is uid $(id -u)"
for exe in ip sshd ssh ssh-keygen; do
  command -v "$exe" > /dev/null || [ -x "/usr/sbin/$exe" ] ||
    skip "no $exe (Debian packages iproute2, openssh-server, openssh-client; ./launch/test installs them)"
done
W=$(mktemp -d "$HLLM_CLUSTER_WORK/two-hosts.XXXXXX")
id=$(( $$ % 100000 ))
NET="10.213.$(( $$ % 250 ))"
BR="hlbr$id" NS_A="hllm-$id-a" NS_B="hllm-$id-b" V_A="hla$id" V_B="hlb$id"
cleanup() {
  set +e
  jobs -p | xargs -r kill -9 2>/dev/null
  for ns in "$NS_A" "$NS_B"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  [ "$passed" = 0 ] || rm -rf "$W"
}
passed=0
trap cleanup EXIT
ip netns add "$NS_A" 2> "$W/netns.err" || skip "this machine forbids network namespaces: $(head -n 1 "$W/netns.err")"
ip netns add "$NS_B"
ip link add "$BR" type bridge 2> "$W/bridge.err" || skip "cannot create a bridge here: $(head -n 1 "$W/bridge.err")"
ip addr add "$NET.254/24" dev "$BR"
ip link set "$BR" up
i=1
for pair in "$NS_A:$V_A" "$NS_B:$V_B"; do
  ns=${pair%%:*} v=${pair##*:}
  ip link add "$v" type veth peer name eth0 netns "$ns"
  ip link set "$v" master "$BR" up
  ip netns exec "$ns" ip addr add "$NET.$i/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
  i=$((i + 1))
done
A="$NET.1" B="$NET.2"

# sshd in each namespace, a generated key pair for root.
mkdir -p "$W/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/id"
cp "$W/ssh/id.pub" "$W/ssh/authorized_keys"
for pair in "$NS_A:$A" "$NS_B:$B"; do
  ns=${pair%%:*} addr=${pair##*:}
  cat > "$W/ssh/sshd-$addr.conf" <<CONF
ListenAddress $addr
Port 22
HostKey $W/ssh/host_key
AuthorizedKeysFile $W/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $W/ssh/sshd-$addr.pid
CONF
  # Not a job of this shell (no "Killed" notes at the end): the cleanup kills every process of the namespaces.
  (ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$W/ssh/sshd-$addr.conf" > "$W/ssh/sshd-$addr.log" 2>&1 &)
done
SSH="ssh -T -i $W/ssh/id -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5"
for addr in "$A" "$B"; do
  for _ in $(seq 100); do $SSH "$addr" true 2>/dev/null && break; sleep 0.1; done
  $SSH "$addr" true || { cat "$W/ssh/sshd-$addr.log"; fail "sshd on $addr does not answer"; }
done
note "hosts a ($A, namespace $NS_A) and b ($B, namespace $NS_B) up, sshd on both"
printf '%s slots=1\n%s slots=1\n' "$A" "$B" > "$W/hosts"

launch() {  # launch JOB [hllm launch options] -- [extra train args]
  local job=$1
  shift
  "$HLLM" launch --hostfile "$W/hosts" --ssh "$SSH" --grace 2 "$@"
}
# job.threads=1: each "host" here would take both cores (LOCAL_WORLD_SIZE=1) and torch results depend on the
# thread count; the reference ran one thread per rank (two ranks on two cores).
TRAIN=(--data "$HLLM_TINY_DATA" "${JOB_SETS[@]}" --set job.threads=1)

note "1. a whole job over ssh, shards spread over the hosts, the encoder on host b"
launch plain -- "${TRAIN[@]}" --out "$W/plain" --set placement.spread=true --set placement.spread_over=hosts \
  --set placement.cache_shards=2 --set 'placement.encoder_ranks=[1]' > "$W/plain.log" 2>&1 ||
  { tail -n 30 "$W/plain.log"; fail "the two-host job failed"; }
grep 'placement:' "$W/plain.log"
grep -qF "placement: 2 ranks on 2 hosts" "$W/plain.log" || fail "the placement does not name two hosts"
grep -qF "placement: rank 1 on $B ($B): trainer-1, loader-1, cache-shard-1, encoder-0 (cache fill)" "$W/plain.log" ||
  fail "rank 1's placement line is not as configured"
expect_digest "$W/plain"

note "2. host b's link cut mid-job"
# Rank 1 pauses after its step N (the test hook, common.sh), the link is cut while it waits, then it is released.
n=$((15 + RANDOM % 30))
HLLM_TEST_PAUSE_AT_STEP=$n HLLM_TEST_PAUSE_RANK=1 HLLM_TEST_PAUSE_FILE="$W/cut.pause" \
  launch cut -- "${TRAIN[@]}" --out "$W/cut" > "$W/cut.log" 2>&1 &
launcher=$!
paused=$(wait_paused "$W/cut.pause" "$launcher") ||
  { tail -n 20 "$W/cut.log"; fail "rank 1 did not pause at its step $n: $paused"; }
ip link set "$V_B" down
t_cut=$SECONDS
rm -f "$W/cut.pause"
note "cut host b's link while rank 1 (pid $paused) was paused after its step $n (step lines: $(step_lines "$W/cut" 1)); released it"
rc=0
wait "$launcher" || rc=$?
note "the launcher ended $((SECONDS - t_cut)) s after the cut with exit status $rc"
[ $rc -eq 1 ] || { tail -n 30 "$W/cut.log"; fail "exit status $rc, expected 1"; }
grep 'hllm launch' "$W/cut.log"
grep -q "hllm launch: the job stopped after 1 attempt(s)" "$W/cut.log" || fail "no 'the job stopped' line"
grep 'error' "$W/cut.log" | head -n 3
expect_verified "$W/cut"
latest=$(cat "$W/cut/checkpoints/latest")
note "checkpoints intact, latest $latest"
# Rank 1 (host b, no link) must end by itself: its collectives time out too.
t0=$SECONDS
rank_on_b() {
  local p
  for p in $(ip netns pids "$NS_B"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = hllm-train ] && return 0; done
  return 1
}
while rank_on_b; do
  [ $((SECONDS - t0)) -lt 120 ] || fail "rank 1 on host b is still running 120 s after the job stopped"
  sleep 0.5
done
note "rank 1 on host b ended by itself $((SECONDS - t_cut)) s after the cut"
ip link set "$V_B" up
note "link back; launching again"
launch resumed -- "${TRAIN[@]}" --out "$W/cut" --resume auto > "$W/resumed.log" 2>&1 ||
  { tail -n 30 "$W/resumed.log"; fail "the relaunched job failed"; }
resume=$(grep '"event":"resume"' "$W/cut/metrics.jsonl" | tail -n 1)
echo "$resume"
echo "$resume" | grep -qF "\"checkpoint\":\"$latest\"" || fail "the relaunch did not resume from $latest"
expect_digest "$W/cut"

note "3. rank 1 on host b killed mid-job, --max-restarts 1"
HLLM_TEST_PAUSE_AT_STEP=$((15 + RANDOM % 30)) HLLM_TEST_PAUSE_RANK=1 HLLM_TEST_PAUSE_FILE="$W/restart.pause" \
  launch restart --max-restarts 1 -- "${TRAIN[@]}" --out "$W/restart" > "$W/restart.log" 2>&1 &
launcher=$!
victim=$(wait_paused "$W/restart.pause" "$launcher") ||
  { tail -n 20 "$W/restart.log"; fail "rank 1 did not pause: $victim"; }
ip netns pids "$NS_B" | grep -qx "$victim" || fail "the paused rank 1 (pid $victim) is not in host b's namespace"
note "rank 1 (pid $victim) paused after its step $(cut -d' ' -f3 "$W/restart.pause"); killing it"
kill -9 "$victim"
# The launcher stops rank 0 on host a through its ssh (the remote watcher sees its stdin close); were it left
# running, it would hold the store's port and the restarted rank 0 could not listen there.
wait "$launcher" || { tail -n 30 "$W/restart.log"; fail "the job did not finish after the restart"; }
grep 'hllm launch' "$W/restart.log"
grep -q "hllm launch: rank 1 on $B exited with status 137: stopping the other ranks" "$W/restart.log" ||
  fail "no line naming the killed rank 1"
grep -q 'restart 1 of 1' "$W/restart.log" || fail "no restart"
expect_verified "$W/restart"
expect_digest "$W/restart"

passed=1
note "two hosts: passed"
