#!/usr/bin/env bash
# A real single-node SLURM cluster for tests/test_slurm.py (Debian 12, root, no systemd): munged,
# a private MariaDB + slurmdbd (so `sacct` works, as on real clusters), slurmctld and slurmd, with
# fake GPUs on a `gpu` partition (Debian's slurm-wlm and munge, started by hand: no systemd).
#
#   bash tests/slurm_cluster.sh install # apt-get the packages that are missing (slurm-wlm, munge, ...)
#   bash tests/slurm_cluster.sh up      # install (if needed) and start the daemons
#   bash tests/slurm_cluster.sh status  # daemons and sinfo
#   bash tests/slurm_cluster.sh down    # cancel jobs, stop the daemons this script started (by PID),
#                                       # and remove the config it wrote
#
# `down` removes /etc/slurm/slurm.conf (restoring one that was there before `up`): with SLURM's
# tools installed, a config and no controller, every `snakemake` command waits 10 s on the slurm
# plugin's `scontrol show config`; without a config scontrol fails at once.
#
# Environment knobs (all optional):
#   SLURM_CI_ROOT=/tmp/robustft-slurm  state, spool, logs, pid files, MariaDB datadir (wiped on `up`)
#   SLURM_CI_ACCOUNTING=dbd|none    dbd: slurmdbd + private MariaDB, so `sacct` works (the plugin's default
#                                   status command).  none: no database; use --slurm-status-command squeue.
#   SLURM_CI_INSTALL=1              0 = skip apt-get (packages already installed)
#   SLURM_CI_CLUSTER=ci
#   SLURM_CI_PARTITIONS="main gpu"  all partitions contain the one node; the first is Default=YES
#   SLURM_CI_CPUS=4                 CPUs advertised to SLURM (may exceed the real count, see config_overrides)
#   SLURM_CI_MEM_MB=<MemTotal-1GiB> RealMemory advertised to SLURM (not enforced: no cgroups)
#   SLURM_CI_GPUS=2                 fake GPUs (gres/gpu backed by /dev/null symlinks); 0 = none
#   SLURM_CI_ACCOUNT=ci             extra SLURM account (dbd mode) the invoking user is added to
#   SLURM_CI_PORT_BASE=6817         slurmctld=BASE, slurmd=BASE+1, slurmdbd=BASE+2
#   SLURM_CI_MARIADB_PORT=3307      private mariadbd, bound to 127.0.0.1 only
set -euo pipefail

ROOT=${SLURM_CI_ROOT:-/tmp/robustft-slurm}
ACCT=${SLURM_CI_ACCOUNTING:-dbd}
INSTALL=${SLURM_CI_INSTALL:-1}
CLUSTER=${SLURM_CI_CLUSTER:-ci}
PARTITIONS=${SLURM_CI_PARTITIONS:-"main gpu"}
GPUS=${SLURM_CI_GPUS:-2}
ACCOUNT=${SLURM_CI_ACCOUNT:-ci}
PORT_BASE=${SLURM_CI_PORT_BASE:-6817}
DB_PORT=${SLURM_CI_MARIADB_PORT:-3307}
DB_PASS=slurm-ci-pass
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
RUN=$ROOT/run
LOG=$ROOT/log
DBRUN=$ROOT/mysql-run            # owned by mysql: socket, pid file, error log
SOCK=$DBRUN/mysqld.sock

log() { echo "[slurm-ci $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# PID is alive and not a zombie (PID 1 here may reap late; kill -0 succeeds on zombies)
alive() {
    local p=$1
    [[ -n "$p" && -r /proc/$p/stat ]] || return 1
    local st; st=$(awk '{print $3}' /proc/$p/stat 2>/dev/null) || return 1
    [[ "$st" != Z && "$st" != X ]]
}
pid_of() { [[ -s "$1" ]] && tr -dc 0-9 < "$1" || true; }
wait_for() { # wait_for SECONDS DESCRIPTION CMD...   (set WAIT_PIDFILE to fail fast if that daemon dies)
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t)) p
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < end )) || { log "timed out after ${t}s waiting for $what"; return 1; }
        if [[ -n ${WAIT_PIDFILE:-} && -s $WAIT_PIDFILE ]]; then
            p=$(pid_of "$WAIT_PIDFILE"); alive "$p" || { log "$what: daemon (pid $p) died"; return 1; }
        fi
        sleep 0.2
    done
}
stop_pid() { # stop_pid NAME PIDFILE
    local name=$1 f=$2 p
    p=$(pid_of "$f")
    if [[ -z "$p" ]] || ! alive "$p"; then rm -f "$f"; return 0; fi
    log "stopping $name (pid $p)"
    kill -TERM "$p" 2>/dev/null || true
    local end=$((SECONDS + 20))
    while alive "$p" && (( SECONDS < end )); do sleep 0.2; done
    if alive "$p"; then log "$name did not stop, SIGKILL $p"; kill -KILL "$p" 2>/dev/null || true; sleep 0.5; fi
    rm -f "$f"
}

install_pkgs() {
    local pkgs=(slurm-wlm munge)          # slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge
    [[ $ACCT == dbd ]] && pkgs+=(slurmdbd mariadb-server)
    local missing=()
    for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        apt-get update -qq
        # policy-rc.d (if present) stops postinst from starting services; without it the
        # init.d scripts may start munge/mariadb; we cope with an already-running munged.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

write_conf() {
    local H=$1 cpus mem hw
    hw=$(slurmd -C | head -1)
    cpus=${SLURM_CI_CPUS:-4}  # more than the 2 real cores: jobs mostly wait on start-up and polling
    mem=${SLURM_CI_MEM_MB:-$(( $(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$hw") - 1024 ))}
    local topo=""
    # Use the real socket/core layout when advertising the real CPU count, else let SLURM derive it.
    if [[ $cpus == "$(nproc)" ]]; then
        topo=$(grep -oE '(Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' <<<"$hw" | tr '\n' ' ')
    fi
    local gres_line="" node_gres=""
    if (( GPUS > 0 )); then
        gres_line="GresTypes=gpu"
        node_gres="Gres=gpu:${GPUS}"
        : > /etc/slurm/gres.conf
        for ((i = 0; i < GPUS; i++)); do
            ln -sfn /dev/null "$ROOT/fakegpu$i"      # gres/gpu needs a char device per GPU
            echo "NodeName=$H Name=gpu File=$ROOT/fakegpu$i" >> /etc/slurm/gres.conf
        done
    else
        rm -f /etc/slurm/gres.conf
    fi
    local acct_lines
    if [[ $ACCT == dbd ]]; then
        acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$H
AccountingStoragePort=$((PORT_BASE + 2))
AccountingStorageTRES=gres/gpu"
    else
        acct_lines="AccountingStorageType=accounting_storage/none"
    fi
    local parts="" first=1
    for p in $PARTITIONS; do
        if ((first)); then parts+="PartitionName=$p Nodes=ALL Default=YES MaxTime=INFINITE State=UP"$'\n'; first=0
        else parts+="PartitionName=$p Nodes=ALL MaxTime=INFINITE State=UP"$'\n'; fi
    done
    cat > "$CONF" <<EOF
# generated by tests/slurm_cluster.sh -- single-node test cluster, no systemd, no cgroups
ClusterName=$CLUSTER
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# no cgroups, no systemd:
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$acct_lines
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# let advertised CPUs/memory/GPUs differ from the hardware without draining the node
SlurmdParameters=config_overrides
ReturnToService=2
# reject impossible requests at submit time instead of leaving them PENDING (PartitionConfig) forever
EnforcePartLimits=ALL
# squeue keeps finished jobs this long; the snakemake plugin's squeue mode needs >= 3*init-seconds
MinJobAge=600
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
$gres_line
NodeName=$H NodeAddr=127.0.0.1 CPUs=$cpus ${topo}RealMemory=$mem $node_gres State=UNKNOWN
$parts
EOF
}

start_munge() {
    # reuse a running munged (e.g. started by a package postinst), else start our own
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then log "munged already running"; return; fi
    [[ -s /etc/munge/munge.key ]] || { log "creating munge key"; mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force   # daemonizes; pid in /run/munge/munged.pid
    wait_for 10 munged bash -c 'munge -n | unmunge' || die "munged did not start"
    cp /run/munge/munged.pid "$RUN/munged.pid"      # marks it as ours, so `down` stops it
}

start_mariadb() {
    install -d -o mysql -g mysql "$ROOT/mysql" "$DBRUN"
    mariadb-install-db --no-defaults --user=mysql --datadir="$ROOT/mysql" \
        --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
        || { cat "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$ROOT/mysql" \
        --socket="$SOCK" --pid-file="$DBRUN/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --log-error="$DBRUN/mariadb.log" --innodb-buffer-pool-size=32M --innodb-lock-wait-timeout=900 \
        --innodb-log-file-size=16M --skip-name-resolve </dev/null >/dev/null 2>&1 &
    WAIT_PIDFILE=$DBRUN/mariadb.pid wait_for 30 mariadbd mariadb-admin --no-defaults --socket="$SOCK" ping || { tail -20 "$DBRUN/mariadb.log" >&2; die "mariadbd did not start"; }
    mariadb --no-defaults --socket="$SOCK" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    local H=$1
    cat > "$DBDCONF" <<EOF
AuthType=auth/munge
DbdHost=$H
DbdAddr=127.0.0.1
DbdPort=$((PORT_BASE + 2))
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$DBDCONF"; chmod 0600 "$DBDCONF"   # slurmdbd refuses other modes/owners
    /usr/sbin/slurmdbd                                     # daemonizes
    WAIT_PIDFILE=$RUN/slurmdbd.pid wait_for 60 slurmdbd sacctmgr -n show cluster || { tail -20 "$LOG/slurmdbd.log" >&2; die "slurmdbd not reachable"; }
    sacctmgr -n show cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

node_idle() { sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)$'; }

cmd_up() {
    [[ $EUID -eq 0 ]] || die "run as root"
    [[ $ACCT == dbd || $ACCT == none ]] || die "SLURM_CI_ACCOUNTING must be dbd or none"
    if [[ -d $RUN || -d $DBRUN ]]; then log "previous run found, stopping it first"; cmd_down; fi
    [[ $INSTALL == 1 ]] && install_pkgs
    local H; H=$(hostname -s)
    getent hosts "$H" >/dev/null || echo "127.0.0.1 $H" >> /etc/hosts
    rm -rf "$ROOT"
    install -d -m 0755 "$ROOT" "$ROOT/spool"
    install -d -o slurm -g slurm -m 0755 "$RUN" "$LOG" "$ROOT/ctld"
    for f in "$CONF" /etc/slurm/gres.conf "$DBDCONF"; do
        [[ -e $f && ! -e $f.before-robustft ]] && cp -p "$f" "$f.before-robustft"
    done
    write_conf "$H"
    start_munge
    if [[ $ACCT == dbd ]]; then start_mariadb; start_slurmdbd "$H"; fi
    /usr/sbin/slurmctld                                    # daemonizes
    WAIT_PIDFILE=$RUN/slurmctld.pid wait_for 30 slurmctld bash -c 'scontrol ping | grep -q UP' || { tail -20 "$LOG/slurmctld.log" >&2; die "slurmctld not up"; }
    /usr/sbin/slurmd                                       # daemonizes
    if ! WAIT_PIDFILE=$RUN/slurmd.pid wait_for 30 "node $H idle" node_idle; then
        sinfo -N -l >&2 || true; tail -20 "$LOG/slurmd.log" >&2; tail -5 "$LOG/slurmctld.log" >&2
        die "node did not become idle"
    fi
    if [[ $ACCT == dbd && -n $ACCOUNT ]]; then
        sacctmgr -i add account "$ACCOUNT" Description=ci Organization=ci >/dev/null 2>&1 || true
        sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" >/dev/null 2>&1 || true
    fi
    log "cluster '$CLUSTER' up (accounting=$ACCT); partitions: $PARTITIONS; logs in $LOG"
    sinfo -o '%P %a %D %t %N %c %m %G' >&2
}

cmd_down() {
    if [[ -s $RUN/slurmctld.pid ]] && alive "$(pid_of "$RUN/slurmctld.pid")"; then
        scancel --quiet --user="$(id -un)" 2>/dev/null || true
        sleep 1
    fi
    stop_pid slurmd    "$RUN/slurmd.pid"
    stop_pid slurmctld "$RUN/slurmctld.pid"
    stop_pid slurmdbd  "$RUN/slurmdbd.pid"
    stop_pid mariadbd  "$DBRUN/mariadb.pid"
    if [[ -s $RUN/munged.pid ]]; then stop_pid munged "$RUN/munged.pid"; rm -f /run/munge/munged.pid; fi
    for f in "$CONF" /etc/slurm/gres.conf "$DBDCONF"; do
        if [[ -e $f.before-robustft ]]; then mv -f "$f.before-robustft" "$f"; else rm -f "$f"; fi
    done
    log "stopped, config removed (logs kept in $LOG)"
}

cmd_status() {
    for n in munged mariadb slurmdbd slurmctld slurmd; do
        f=$RUN/$n.pid; [[ $n == mariadb ]] && f=$DBRUN/mariadb.pid
        p=$(pid_of "$f"); if [[ -n $p ]] && alive "$p"; then
            echo "$n pid=$p rss_kb=$(awk '/VmRSS/{print $2}' /proc/$p/status)"; else echo "$n not running (by this script)"; fi
    done
    sinfo 2>&1 || true
}

case ${1:-} in
    install) [[ $EUID -eq 0 ]] || die "run as root"; install_pkgs ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|up|status|down" >&2; exit 2 ;;
esac
