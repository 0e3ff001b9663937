#!/usr/bin/env sh
# Add ModelDeck to this user's application menu and make it open model files.
# Run from the unpacked bundle: ./install-desktop.sh   (undo: ./install-desktop.sh --uninstall)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mime="${XDG_DATA_HOME:-$HOME/.local/share}/mime"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor"
bin="$HOME/.local/bin"
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$apps/modeldeck.desktop" "$mime/packages/modeldeck-mime.xml" "$bin/modeldeck" \
        "$icons/256x256/apps/modeldeck.png" "$icons/scalable/apps/modeldeck.svg"
else
  mkdir -p "$apps" "$mime/packages" "$bin" "$icons/256x256/apps" "$icons/scalable/apps"
  ln -sf "$here/modeldeck" "$bin/modeldeck"
  cp "$here/modeldeck.png" "$icons/256x256/apps/modeldeck.png"
  cp "$here/modeldeck.svg" "$icons/scalable/apps/modeldeck.svg"
  cp "$here/modeldeck-mime.xml" "$mime/packages/modeldeck-mime.xml"
  # An absolute Exec so the entry works even when ~/.local/bin is not on PATH.
  sed -e "s|^Exec=.*|Exec=\"$here/modeldeck\" %f|" -e "s|^TryExec=.*|TryExec=$here/modeldeck|" \
      "$here/modeldeck.desktop" > "$apps/modeldeck.desktop"
  for t in application/x-onnx application/x-openvino-ir+xml application/x-pytorch \
           application/x-tflite; do
    command -v xdg-mime >/dev/null 2>&1 && xdg-mime default modeldeck.desktop "$t" || true
  done
fi
command -v update-mime-database >/dev/null 2>&1 && update-mime-database "$mime" || true
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" || true
echo "ModelDeck ${1:+un}installed for $USER (menu entry, file types, ~/.local/bin/modeldeck)"
