#!/usr/bin/env bash
# From a fresh clone to a running agent: installs what is needed (scripts/setup.sh),
# builds dist/ucr, and starts the agent on 127.0.0.1:5051 with a local directory of
# `docker save` archives as its image source. Then it shows the agent answering, and
# keeps it in the foreground (Ctrl-C stops it cleanly).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bun run build

WORK_DIR="${UCR_WORK_DIR:-/var/lib/ucr}"
IMAGES="${UCR_IMAGES:-$WORK_DIR/images}"
PORT="${UCR_PORT:-5051}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

$SUDO mkdir -p "$IMAGES"
echo "quickstart: images come from $IMAGES (put '<name>.tar' archives from 'docker save' there)"
if [ ! -e "$IMAGES/alpine.tar" ]; then
  # An air-gapped start: a small "alpine" image made here from Debian's busybox-static.
  $SUDO bun scripts/make-alpine.ts "$IMAGES"
fi
echo "quickstart: ucr pull alpine (from $IMAGES into $WORK_DIR/store/docker) ->"
$SUDO ./dist/ucr pull alpine --work_dir="$WORK_DIR" --docker_registry="$IMAGES"
$SUDO ./dist/ucr images --work_dir="$WORK_DIR"

$SUDO ./dist/ucr agent \
  --work_dir="$WORK_DIR" \
  --port="$PORT" \
  --docker_registry="$IMAGES" \
  --image_providers=docker \
  --isolation=filesystem/linux,docker/runtime &
AGENT=$!
trap 'kill -TERM $AGENT 2>/dev/null || true; wait $AGENT 2>/dev/null || true' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$AGENT" 2>/dev/null; then
    wait "$AGENT" || true
    echo "quickstart: the agent exited; see its message above" >&2
    exit 1
  fi
  sleep 0.1
done

api() {
  curl -fsS -X POST "http://127.0.0.1:$PORT/api/v1" -H 'Content-Type: application/json' -d "$1"
  echo
}
echo "quickstart: GET_HEALTH ->"
api '{"type":"GET_HEALTH"}'
echo "quickstart: GET_VERSION ->"
api '{"type":"GET_VERSION"}'

echo "quickstart: LAUNCH_CONTAINER 'hello' from the alpine image ->"
api '{"type":"REMOVE_CONTAINER","remove_container":{"container_id":{"value":"hello"}}}' >/dev/null 2>&1 || true
curl -fsS -X POST "http://127.0.0.1:$PORT/api/v1" -H 'Content-Type: application/json' -d '{
  "type": "LAUNCH_CONTAINER",
  "launch_container": {
    "container_id": {"value": "hello"},
    "command": {"value": "echo \"hello from a ucr container: I am pid $$ on host $(hostname), in $(pwd)\"; ls /"},
    "container": {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "alpine"}}}}
  }
}' -w 'HTTP %{http_code}\n'
echo "quickstart: WAIT_CONTAINER 'hello' ->"
api '{"type":"WAIT_CONTAINER","wait_container":{"container_id":{"value":"hello"}}}'
echo "quickstart: its stdout ($WORK_DIR/containers/hello/stdout):"
$SUDO cat "$WORK_DIR/containers/hello/stdout"
api '{"type":"REMOVE_CONTAINER","remove_container":{"container_id":{"value":"hello"}}}' >/dev/null

echo "quickstart: the agent is running (pid $AGENT) at http://127.0.0.1:$PORT/api/v1; Ctrl-C stops it."
wait "$AGENT"
