#!/usr/bin/env bash
# What the page, map and report tests need from Debian: headless Chromium (driven by Playwright's Python
# package, never a downloaded browser), CJK fonts for Chinese text, and poppler-utils (pdftoppm, pdftotext)
# to read the PDF reports back. Installs only what is missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "installing ${need[*]} ..."
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v chromium
