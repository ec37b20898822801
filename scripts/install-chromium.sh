#!/usr/bin/env bash
# Installs Debian's chromium, which the browser tests of the reports (harness/cli/tests/report_browser.rs)
# drive headless. Idempotent; CI runs it before `cargo test`. Needs root (or sudo) and the Debian
# package registry.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: $(chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -o DPkg::Lock::Timeout=600
$SUDO apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 chromium
# Without fonts headless Chromium still renders, but text in screenshots is boxes.
$SUDO apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 fonts-dejavu-core || true

echo "install-chromium: $(chromium --version) installed"
