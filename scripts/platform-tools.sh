#!/usr/bin/env bash
# Installs what `npm run build:targets` and `npm run test:platforms` need on a Debian
# x64 machine (this workplace, CI, a developer's box), and skips what is already there:
#
#   bash scripts/platform-tools.sh [rust target...]   zig, cargo-zigbuild, actionlint,
#                                                     qemu-user + arm64 runtime libraries,
#                                                     the named rustup targets
#   PLATFORM_TOOLS_WINDOWS=1 ...                      also mingw-w64 and wine (the Windows
#                                                     gnu build and its run under wine)
#
# The arm64 and Windows Nodes come from the npm registry, fetched by test-platforms.mjs.
# Versions are pinned so that a run is repeatable.
set -euo pipefail

apt_pkgs=(qemu-user libc6-arm64-cross libstdc++6-arm64-cross)
if [ "${PLATFORM_TOOLS_WINDOWS:-}" = 1 ]; then apt_pkgs+=(gcc-mingw-w64-x86-64 wine64); fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# zig and cargo-zigbuild (napi build -x) and actionlint, pinned in requirements-platforms.txt.
req="$(dirname "$0")/requirements-platforms.txt"
need_pip=0
while read -r p; do
  case "$p" in ''|'#'*) continue ;; esac
  name="${p%%==*}"; want="${p##*==}"
  # `pip show` exits 1 for a package that is not installed; under pipefail that would end
  # the script on a machine that has none of them yet, instead of installing them.
  have="$(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  [ "$have" = "$want" ] || need_pip=1
done <"$req"
if [ "$need_pip" = 1 ]; then
  echo "pip install -r $req"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$req"
fi
# pyenv installs console scripts behind shims that appear only after a rehash.
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

if [ "$#" -gt 0 ]; then
  installed="$(rustup target list --installed)"
  for t in "$@"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
