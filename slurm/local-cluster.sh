#!/usr/bin/env bash
# A private single-node SLURM cluster for medtl's tests (Debian/Ubuntu, as root): munged, MariaDB,
# slurmdbd (so sacct works), slurmctld and slurmd, all under one folder, on their own ports.
#
#   slurm/local-cluster.sh start     install missing packages (once), write the config, start what is
#                                    not running, wait until the node is idle (~20 s from cold)
#   slurm/local-cluster.sh stop      cancel this cluster's jobs, stop its daemons (by their pid files)
#   slurm/local-cluster.sh purge     stop, then delete the cluster's folder
#   slurm/local-cluster.sh status    show the daemons and sinfo
#   source "$(slurm/local-cluster.sh env)"   point sbatch/squeue/sacct at it (exports SLURM_CONF)
#
# Knobs: MEDTL_SLURM_DIR (/tmp/medtl-slurm), MEDTL_SLURM_PORT (base port, 16817: slurmctld, +1
# slurmd, +2 slurmdbd, +3 MariaDB). The cluster is "medtl-local" with partition "debug" and account
# "medtl"; associations are enforced, so an unknown account is refused as on a real cluster.
# Facts this relies on: cred_expire=10 (a requeued job may start again after 10 s, not 120 s);
# slurmctld checks time limits about every 30 s; sacct lags squeue by a few seconds.
set -euo pipefail

D=${MEDTL_SLURM_DIR:-/tmp/medtl-slurm}
PORT=${MEDTL_SLURM_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
export SLURM_CONF=$D/etc/slurm.conf
MSOCK=$D/munge/munge.socket.2
T0=$(date +%s)
say() { echo "[local-cluster +$(( $(date +%s) - T0 ))s] $*"; }
fail() { say "error: $*" >&2; exit 1; }

# running NAME PIDFILE: the pid file names a live process called NAME
running() { [ -s "$2" ] && [ "$(cat "/proc/$(cat "$2")/comm" 2>/dev/null)" = "$1" ]; }
# poll SECONDS WHAT CMD...: retry CMD every 0.25 s
poll() {
  local tries=$(( $1 * 4 )) what=$2; shift 2
  for _ in $(seq "$tries"); do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  fail "timed out waiting for $what"
}
# halt NAME PIDFILE: TERM the pid in the pid file (only if it is NAME), then KILL after 15 s
halt() {
  running "$1" "$2" || { rm -f "$2"; return 0; }
  local pid; pid=$(cat "$2"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do [ -d "/proc/$pid" ] || { rm -f "$2"; say "$1 stopped"; return 0; }; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true; rm -f "$2"; say "$1 killed"
}

install_packages() {
  local want="slurmctld slurmd slurm-client slurmdbd munge mariadb-server" missing=""
  for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  # No init system: keep the packages' scripts from starting their own daemons.
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; fi
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } > "$D/log/apt.log" 2>&1; then
    [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    tail -20 "$D/log/apt.log" >&2; fail "apt-get install failed (log: $D/log/apt.log)"
  fi
  [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  say "packages installed"
}

write_config() {
  mkdir -p "$D"/{etc,state,spool,log,run,munge,db}
  chown munge:munge "$D/munge"; chmod 0755 "$D/munge"
  if [ ! -s "$D/munge/munge.key" ]; then
    head -c 1024 /dev/urandom > "$D/munge/munge.key"
    chown munge:munge "$D/munge/munge.key"; chmod 0400 "$D/munge/munge.key"
  fi
  # The node as the hardware describes it; 90% of its memory is schedulable.
  local shape; shape=$(slurmd -C | head -1)
  local cpus sockets cores threads mem
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<< "$shape")
  sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<< "$shape")
  cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<< "$shape")
  threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<< "$shape")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "$shape"); mem=$(( mem * 9 / 10 ))
  local conf
  conf=$(cat <<EOF
# medtl's private test cluster (written by slurm/local-cluster.sh)
ClusterName=medtl-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# the munge socket for accounting connections (without it clients look in /run/munge)
AccountingStoragePass=$MSOCK
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
MaxArraySize=10001
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
  if [ "$(cat "$SLURM_CONF" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > "$SLURM_CONF"
    halt slurmd "$D/run/slurmd.pid"; halt slurmctld "$D/run/slurmctld.pid"  # they read it at start
  fi
  cat > "$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MSOCK
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=medtl-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$D/etc/slurmdbd.conf"
  cat > "$D/etc/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$D/db/data
socket=$D/db/mysqld.sock
pid-file=$D/db/mysqld.pid
log-error=$D/log/mariadb.log
bind-address=127.0.0.1
port=$DB_PORT
innodb_buffer_pool_size=64M
innodb_lock_wait_timeout=900
EOF
  echo "export SLURM_CONF=$SLURM_CONF" > "$D/env.sh"
}

start_munge() {
  running munged "$D/munge/munged.pid" && return 0
  runuser -u munge -- /usr/sbin/munged --socket="$MSOCK" --key-file="$D/munge/munge.key" \
    --log-file="$D/munge/munged.log" --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed"
  poll 10 munged sh -c "munge -S '$MSOCK' -n | unmunge -S '$MSOCK'"
  say "munged up"
}

start_database() {
  local sql="mariadb --socket=$D/db/mysqld.sock -uroot"
  if ! running mariadbd "$D/db/mysqld.pid"; then
    chown mysql:mysql "$D/db"
    if [ ! -d "$D/db/data/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$D/db/data" --skip-test-db \
        --auth-root-authentication-method=normal > "$D/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed"
    fi
    setsid /usr/sbin/mariadbd --defaults-file="$D/etc/my.cnf" < /dev/null > /dev/null 2>&1 &
    poll 30 mariadbd $sql -e "select 1"
    say "mariadbd up"
  fi
  $sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'medtl-local';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
  if ! running slurmdbd "$D/run/slurmdbd.pid"; then
    SLURM_CONF=$SLURM_CONF /usr/sbin/slurmdbd
    poll 30 slurmdbd sacctmgr -n show cluster
    say "slurmdbd up"
  fi
  # The cluster, an account and the users who submit (root, and whoever runs the tests).
  sacctmgr -i -Q add cluster medtl-local > /dev/null 2>&1 || true
  sacctmgr -i -Q add account medtl cluster=medtl-local description="medtl tests" organization=medtl > /dev/null 2>&1 || true
  local user; for user in root "${SUDO_USER:-root}" "$(id -un)"; do
    sacctmgr -i -Q add user "$user" account=medtl cluster=medtl-local > /dev/null 2>&1 || true
  done
}

start_slurm() {
  if ! running slurmctld "$D/run/slurmctld.pid"; then
    /usr/sbin/slurmctld
    poll 30 slurmctld scontrol ping
    say "slurmctld up"
  fi
  if ! running slurmd "$D/run/slurmd.pid"; then
    /usr/sbin/slurmd -N localhost
    poll 10 slurmd test -s "$D/run/slurmd.pid"
    say "slurmd up"
  fi
  local state=""
  for _ in $(seq 240); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) say "node localhost is $state; export SLURM_CONF=$SLURM_CONF"; return 0 ;;
      down*|drain*) scontrol update nodename=localhost state=resume > /dev/null 2>&1 || true ;;
    esac
    sleep 0.25
  done
  tail -5 "$D/log/slurmd.log" "$D/log/slurmctld.log" >&2; fail "node state '$state'"
}

stop_all() {
  if running slurmctld "$D/run/slurmctld.pid"; then
    local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.25; done
    fi
  fi
  halt slurmd "$D/run/slurmd.pid"
  halt slurmctld "$D/run/slurmctld.pid"
  halt slurmdbd "$D/run/slurmdbd.pid"
  halt mariadbd "$D/db/mysqld.pid"
  halt munged "$D/munge/munged.pid"
}

case "${1:-}" in
  start)
    mkdir -p "$D/log"
    install_packages
    write_config
    start_munge
    start_database
    start_slurm
    ;;
  stop) stop_all ;;
  purge) stop_all; rm -rf "$D"; say "removed $D" ;;
  status)
    for d in munged:munge/munged.pid mariadbd:db/mysqld.pid slurmdbd:run/slurmdbd.pid slurmctld:run/slurmctld.pid slurmd:run/slurmd.pid; do
      if running "${d%%:*}" "$D/${d#*:}"; then echo "${d%%:*}: running (pid $(cat "$D/${d#*:}"))"; else echo "${d%%:*}: stopped"; fi
    done
    running slurmctld "$D/run/slurmctld.pid" && sinfo
    ;;
  env) echo "$D/env.sh" ;;
  *) echo "usage: $0 start|stop|purge|status|env" >&2; exit 2 ;;
esac
