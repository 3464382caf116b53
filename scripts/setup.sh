#!/usr/bin/env bash
# Installs what ucr needs to build and test on a fresh Debian machine (npm too, if missing):
# Bun (pinned in .bun-version, from the npm registry), the Debian packages the tests use,
# and the project's locked dependencies. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages the tests and the quickstart use. golang-go and mesos-go build the test
# client that speaks to the agent through a real Mesos client library (test/clients/mesos-go).
APT_PACKAGES=(ca-certificates curl docker-registry skopeo umoci busybox-static apache2-utils openssl zstd libcap2-bin tar gzip
  containernetworking-plugins iptables iproute2 gcc libc6-dev podman golang-go golang-github-mesos-mesos-go-dev)
# protoc: the protobuf tests (interop, generated code up to date) and the README's protobuf call;
# mesos-go's copy of Mesos' .proto files: the test that checks ucr's schema against it.
APT_PACKAGES+=(protobuf-compiler)

# Bun comes from the npm registry: without npm, Debian's npm (and nodejs) come too.
if ! command -v npm >/dev/null 2>&1; then APT_PACKAGES+=(npm); fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUN_VERSION="$(cat .bun-version)"
if ! command -v bun >/dev/null 2>&1 || [ "$(bun --version 2>/dev/null)" != "$BUN_VERSION" ]; then
  echo "setup: installing bun@$BUN_VERSION from the npm registry"
  $SUDO npm install --global --no-fund --no-audit "bun@$BUN_VERSION"
fi
echo "setup: $(bun --version | sed 's/^/bun /')"

bun install --frozen-lockfile
