#!/usr/bin/env bash
# The report test renders report.html in a real headless Chromium (Debian's package).
# Install it when missing; needs root (CI and the dev machines run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure_chromium: chromium is missing and this is not root; install Debian's 'chromium' package" >&2
  exit 1
fi
echo "ensure_chromium: installing Debian's chromium (headless report test)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
