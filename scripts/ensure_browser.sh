#!/usr/bin/env bash
# Headless Chromium for the map tests and `gridmap map --png` (Debian package `chromium`).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
command -v chromium
