#!/usr/bin/env bash
# Install the Debian packages safecompress's data loaders and tests need, only when missing.
#   dataset-fashion-mnist  Fashion-MNIST (/usr/share/datasets/fashion-mnist)
#   fortunes               English text for the text-classification data set
#   chromium, chromium-driver  headless browser test of report.html
set -euo pipefail
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -d /usr/share/games/fortunes ] || need+=(fortunes)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${need[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "system-deps: not root and no sudo: install ${need[*]} yourself (tests needing them will fail)" >&2
fi
