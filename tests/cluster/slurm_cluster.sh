# Starts a single-node Slurm cluster for one test: munged, slurmctld -D and slurmd -D on 127.0.0.1 with a config
# generated from `hostname -s`, all state under $1. Sourced; defines slurm_up (returns 77 after printing why when
# Slurm is missing or cannot start here; a daemon that does not start returns 1 under CI=true: common.sh cannot_start)
# and slurm_down (also run from the EXIT trap). Clients need SLURM_CONF, which it exports.
slurm_pids=()
slurm_down() {
  local p
  if [ ${#slurm_pids[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    # Jobs first (their steps run under slurmstepd, which outlives slurmd), then the daemons.
    scancel --full --signal=KILL --user=root 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  for p in "${slurm_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${slurm_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  slurm_pids=()
}
slurm_up() {
  local d=$1 node
  for exe in munged slurmctld slurmd srun sbatch scontrol sinfo; do
    command -v "$exe" > /dev/null || { echo "SKIPPED: no $exe (Debian packages slurm-wlm and munge; ./launch/test installs them)"; return 77; }
  done
  [ "$(id -u)" -eq 0 ] || { echo "SKIPPED: the single-node Slurm cluster runs slurmd as root; this is uid $(id -u)"; return 77; }
  node=$(hostname -s)
  mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log"
  chmod 700 "$d/munge"
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$d/munge/munge.key"
  munged --force --foreground --key-file="$d/munge/munge.key" --socket="$d/munge/munge.sock" \
    --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" > /dev/null 2>&1 &
  slurm_pids+=($!)
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  cat > "$d/slurm.conf" <<CONF
ClusterName=hllmtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.sock
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ReturnToService=2
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF="$d/slurm.conf"
  for _ in $(seq 50); do [ -S "$d/munge/munge.sock" ] && break; sleep 0.1; done
  [ -S "$d/munge/munge.sock" ] || { cannot_start "munged did not start: $(tail -n 3 "$d/log/munged.log" 2>/dev/null)"; return; }
  slurmctld -D -i -f "$d/slurm.conf" > "$d/log/slurmctld.out" 2>&1 &
  slurm_pids+=($!)
  slurmd -D -f "$d/slurm.conf" -N "$node" > "$d/log/slurmd.out" 2>&1 &
  slurm_pids+=($!)
  local t0=$SECONDS
  until sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; do
    if [ $((SECONDS - t0)) -gt 30 ]; then
      cannot_start "the single-node Slurm cluster did not come up in 30 s: $(tail -n 2 "$d/log/slurmctld.log" "$d/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
      return
    fi
    sleep 0.1
  done
  echo "slurm: node $node up in $((SECONDS - t0)) s ($(sinfo -h -N -o '%N %c CPUs %t'))"
}
