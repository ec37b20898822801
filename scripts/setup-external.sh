#!/usr/bin/env bash
# Installs the external systems faultline's etcd, Redis, PostgreSQL and MariaDB targets run
# (docs/targets-external.md): Debian's etcd-server and etcd-client (3.4), redis-server and
# redis-sentinel (7.0), postgresql-15 and mariadb-server (10.11, with galera-4).
# Idempotent. The harness starts its own instances in per-node network namespaces, so the
# system services these packages ship are stopped and disabled: a system redis-server on
# 127.0.0.1:6379 or etcd on 2379 must never answer in place of a test node.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
[ -e /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
    echo "setup-external: installing ${need[*]}"
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    # policy-rc.d exit 101: Debian's maintainer scripts must not start the services.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        --no-install-recommends "${need[@]}" || { [ $created_policy = 1 ] && $SUDO rm -f "$policy"; exit 1; }
    [ $created_policy = 1 ] && $SUDO rm -f "$policy"
fi

# No system instance may run beside the test nodes.
for svc in etcd redis-server redis-sentinel postgresql mariadb; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done

echo "setup-external: etcd $(etcd --version 2>/dev/null | awk '/etcd Version/{print $3}'), redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), $("$(ls /usr/lib/postgresql/*/bin/postgres | tail -1)" --version), $(PATH="$PATH:/usr/sbin" mariadbd --version | awk '{print $2, $3}')"
