#!/usr/bin/env bash
# Build the one-folder bundle dist/modeldeck/ and, on Linux, dist/modeldeck-linux-x86_64.tar.gz.
# Usage: installer/build.sh [PYTHON]   (default .venv/bin/python, with the "installer" extra)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller installer/modeldeck.spec
case "$(uname -s)" in
  Linux)
    arch="$(uname -m)"
    cp installer/linux/modeldeck.desktop installer/linux/modeldeck-mime.xml \
       installer/linux/install-desktop.sh dist/modeldeck/
    cp resources/icons/modeldeck.png resources/icons/modeldeck.svg dist/modeldeck/
    chmod +x dist/modeldeck/install-desktop.sh
    tar -C dist -czf "dist/modeldeck-linux-${arch}.tar.gz" modeldeck
    ;;
esac
echo "built in $(( $(date +%s) - start )) s:"
du -sh dist/modeldeck dist/*.tar.gz 2>/dev/null || true
