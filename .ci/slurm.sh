#!/usr/bin/env bash
# A one-machine Slurm cluster for tests/deploy/test_slurm_job.py: munge, slurmctld and slurmd
# on this host, from Debian's packages. Idempotent: a cluster already answering is left as it
# is. Root on a Debian-like machine only; elsewhere it says why and exits 0 (the test skips).
set -euo pipefail

say() { echo ".ci/slurm.sh: $*"; }
if [ "$(id -u)" != 0 ]; then say "not root: no Slurm cluster (its test skips)"; exit 0; fi
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    if ! command -v apt-get > /dev/null; then say "no apt-get: no Slurm cluster"; exit 0; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
fi
pidfile_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }
if pidfile_alive /run/slurmctld.pid && pidfile_alive /run/slurmd.pid \
    && sinfo -h -o %T 2> /dev/null | grep -qxE "idle|mixed|allocated"; then
    say "cluster already up"; exit 0
fi

node=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)  # half, in MB

# munge: one key (the package makes it; a copied image may lack it), its daemon.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! munge -n > /dev/null 2>&1; then
    runuser -u munge -- munged
fi

# slurm.conf: this host is the controller and the only node; nothing needs cgroups or a
# database (tests read a job's state with squeue and scontrol, not sacct). Up to 4 tasks
# per core: the test's workers mostly sleep.
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf << EOF
ClusterName=zmqpipeline-ci
SlurmctldHost=${node}
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MinJobAge=600
NodeName=${node} CPUs=$((cpus * 4)) RealMemory=${memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP OverSubscribe=YES
EOF

pidfile_alive /run/slurmctld.pid || slurmctld
pidfile_alive /run/slurmd.pid || slurmd

for _ in $(seq 100); do  # the node registers within seconds
    if sinfo -h -o %T 2> /dev/null | grep -qx idle; then say "cluster up (node ${node})"; exit 0; fi
    sleep 0.2
done
say "slurmd did not come up: see /var/log/slurm/slurmd.log and slurmctld.log"
sinfo -N -l || true
exit 1
