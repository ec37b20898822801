#!/usr/bin/env bash
# Installs what faultline's runs and tests need on a fresh Debian machine (root or sudo).
# Idempotent: packages already present are left alone; nothing is downloaded outside Debian's
# package archive.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The SSH runtime's tests run a bed of sshd hosts (scripts/ssh-testbed.sh): the client and the
# server binary; no system sshd is started (policy-rc.d below keeps the package from doing so).
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)

if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need[*]}"
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    # No service may start during the install (openssh-server would start a system sshd).
    policy_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        --no-install-recommends "${need[@]}"
    [ -z "$policy_made" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# The report tests open report.html in headless Chromium.
bash "$(dirname "$0")/install-chromium.sh"
echo "setup: ok"
