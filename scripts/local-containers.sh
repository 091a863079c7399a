#!/usr/bin/env bash
# Container runtimes for medtl's tests (Debian, as root): a private Docker daemon, the project's own
# image built in it, and an unpacked Debian image for charliecloud's ch-run.
#
#   scripts/local-containers.sh start   install docker.io, debootstrap, charliecloud if missing (once);
#                                       start dockerd on its own socket and data folder (no bridge,
#                                       no iptables: containers use the host network)
#   scripts/local-containers.sh image   build medtl:ci from the Dockerfile (see below)
#   scripts/local-containers.sh stop    stop that dockerd (by its pid file)
#   export DOCKER_HOST=$(scripts/local-containers.sh host)
#
# No registry can be reached here, so the image is built FROM a Debian base imported from a
# debootstrap rootfs, and pip installs from a local wheelhouse (`pip download` through this
# machine's pip configuration) served on 127.0.0.1 for the build. The rootfs folder is also the
# charliecloud test image. Knobs: MEDTL_CONTAINERS_DIR (/var/tmp/medtl-containers: kept between runs,
# so a second build reuses the base, the wheels and Docker's layer cache), MEDTL_DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

D=${MEDTL_CONTAINERS_DIR:-/var/tmp/medtl-containers}
SOCK=$D/run/docker.sock
MIRROR=${MEDTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=medtl-base:bookworm
IMAGE=${MEDTL_TEST_IMAGE:-medtl:ci}
PY=${PYTHON:-.venv/bin/python}
export DOCKER_HOST=unix://$SOCK DOCKER_BUILDKIT=0
T0=$(date +%s)
say() { echo "[local-containers +$(( $(date +%s) - T0 ))s] $*"; }
fail() { say "error: $*" >&2; exit 1; }

install_packages() {
  local missing=""
  for p in docker.io debootstrap charliecloud-runtime; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; fi
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } > "$D/apt.log" 2>&1; then
    [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    tail -20 "$D/apt.log" >&2; fail "apt-get install failed"
  fi
  [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  say "packages installed"
}

dockerd_running() { [ -s "$D/run/dockerd.pid" ] && [ "$(cat "/proc/$(cat "$D/run/dockerd.pid")/comm" 2>/dev/null)" = dockerd ]; }

start() {
  mkdir -p "$D"/{run,data,exec}
  install_packages
  if dockerd_running; then say "dockerd already running"; return 0; fi
  setsid dockerd --host "unix://$SOCK" --data-root "$D/data" --exec-root "$D/exec" \
    --pidfile "$D/run/dockerd.pid" --bridge=none --iptables=false --ip-masq=false \
    --containerd-namespace medtl-tests --containerd-plugins-namespace medtl-tests-plugins \
    < /dev/null > "$D/dockerd.log" 2>&1 &
  for _ in $(seq 120); do docker info > /dev/null 2>&1 && { say "dockerd up ($DOCKER_HOST)"; return 0; }; sleep 0.25; done
  tail -20 "$D/dockerd.log" >&2; fail "dockerd did not start"
}

base_image() {
  if [ ! -x "$D/rootfs/usr/bin/python3" ]; then
    say "debootstrap bookworm (minbase + python3)"
    rm -rf "$D/rootfs.partial"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
      "$D/rootfs.partial" "$MIRROR" > "$D/debootstrap.log" 2>&1 || { tail -20 "$D/debootstrap.log" >&2; fail "debootstrap failed"; }
    mv "$D/rootfs.partial" "$D/rootfs"
  fi
  if ! docker image inspect "$BASE" > /dev/null 2>&1; then
    tar -C "$D/rootfs" -c . | docker import - "$BASE" > /dev/null
    say "imported $BASE"
  fi
}

wheelhouse() {
  mkdir -p "$D/wheels"
  local deps; deps=$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
  local torch; torch=$(sed -n 's/^TORCH_SPEC=\${MEDTL_TORCH_SPEC:-"\(.*\)"}$/\1/p' scripts/install.sh)
  say "wheelhouse: $torch and medtl's dependencies"
  # shellcheck disable=SC2086
  printf '%s\n' $torch "setuptools>=64" "wheel" > "$D/requirements.txt"
  printf '%s\n' "$deps" >> "$D/requirements.txt"
  "$PY" -m pip download -q --disable-pip-version-check -d "$D/wheels" -r "$D/requirements.txt" \
    > "$D/wheels.log" 2>&1 || { tail -20 "$D/wheels.log" >&2; fail "pip download failed"; }
}

image() {
  dockerd_running || fail "dockerd is not running: scripts/local-containers.sh start"
  base_image
  wheelhouse
  # A fixed port keeps the build arguments, and so Docker's layer cache, the same from run to run.
  local port=${MEDTL_WHEELHOUSE_PORT:-18765}
  if ! "$PY" -c "import socket, sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$D/wheels" > "$D/http.log" 2>&1 &
  local server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 40); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break; sleep 0.25; done
  say "docker build $IMAGE (FROM $BASE)"
  docker build --network host -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_FIND_LINKS="http://127.0.0.1:$port/" \
    --build-arg PIP_NO_INDEX=1 \
    . > "$D/build.log" 2>&1 || { tail -30 "$D/build.log" >&2; fail "docker build failed (log: $D/build.log)"; }
  kill "$server" 2>/dev/null || true
  trap - EXIT
  say "built $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f GB", $1/1e9}')"
}

stop() {
  dockerd_running || { say "dockerd not running"; return 0; }
  local pid; pid=$(cat "$D/run/dockerd.pid"); kill "$pid"
  for _ in $(seq 80); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
  if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; say "dockerd killed"; else say "dockerd stopped"; fi
  # dockerd leaves its default network namespace mounted; unmount it so the folder can be removed
  umount "$D/exec/netns/default" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  image) image ;;
  stop) stop ;;
  host) echo "unix://$SOCK" ;;
  rootfs) echo "$D/rootfs" ;;
  *) echo "usage: $0 start|image|stop|host|rootfs" >&2; exit 2 ;;
esac
