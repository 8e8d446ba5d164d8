#!/usr/bin/env bash
# Wheel smoke test: does spansieve work when installed from its wheel, away from the checkout?
#
#   1. build the wheel from a clean copy of the working tree (python -m build --wheel);
#   2. install it, not editable, in a fresh virtual environment (dependencies from PyPI,
#      through pip's cache);
#   3. from a directory outside the checkout, with that environment's `spansieve`:
#      check the installed example policy file, `store init` a private store, start a
#      gateway, a worker and the query server on private topics, ports and state, send one
#      OTLP/JSON trace and wait until all its spans are in OpenSearch and the query server
#      (and its web UI) serves it;
#   4. stop everything and delete the private indices and topics, pass or fail.
#
# Needs the local stack up (`spansieve stack up`, as `make test` leaves it); it starts no
# servers of the stack and touches nothing of the shared store or topics.
# Usage: tests/wheel_smoke.sh   (or `make wheel-smoke`). Last line: PASS or FAIL; exit 0 on PASS.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
opensearch=${SPANSIEVE_OPENSEARCH_URL:-http://127.0.0.1:9200}
kafka=${SPANSIEVE_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
tag=smoke-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')  # names of everything private
work=$(mktemp -d "${TMPDIR:-/tmp}/spansieve-wheel-smoke.XXXXXX")
logs=$work/logs
started=$SECONDS
pids=()
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH

step() { printf '\n==> [%ss] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  echo "error: $*" >&2
  exit 1
}

# Poll "$@" every second for up to $1 seconds, failing early if a started process died.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || fail "a started process (pid $pid) exited while waiting for $what"
    done
    ((SECONDS < deadline)) || fail "$what: not within ${timeout}s"
    sleep 1
  done
  echo "    $what ($((SECONDS - started))s in)"
}

any_alive() {
  local pid
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then return 0; fi
  done
  return 1
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    step "stopping ${#pids[@]} process(es)"
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 20); do # up to 20 s for a clean shutdown, then SIGKILL
      any_alive || break
      sleep 1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
  fi
  if ((status != 0)) && [ -d "$logs" ]; then
    for log in "$logs"/*.log; do
      [ -s "$log" ] && { echo "--- last lines of $log"; tail -n 25 "$log"; }
    done
  fi
  if [ -x "$work/venv/bin/python" ]; then
    step "deleting the private indices, templates, ISM policy and topics ($tag)"
    curl -s -o /dev/null -X DELETE "$opensearch/$tag-*?ignore_unavailable=true"
    curl -s -o /dev/null -X DELETE "$opensearch/_index_template/$tag-*"
    curl -s -o /dev/null -X DELETE "$opensearch/_plugins/_ism/policies/$tag-otel-v1-apm-span-lifecycle"
    "$work/venv/bin/python" - "$kafka" "$tag-" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient

bootstrap, prefix = sys.argv[1:]
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})  # no retry chatter
topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
if topics:
    for done in admin.delete_topics(topics, operation_timeout=30).values():
        done.result(30)
for done in admin.delete_consumer_groups([prefix + "worker"], request_timeout=10).values():
    try:
        done.result(10)
    except Exception:
        pass  # the worker never joined, or the group is gone already
print(f"    deleted {len(topics)} topic(s)")
EOF
    [ $? -eq 0 ] || echo "    (could not delete the topics $tag-*)"
  fi
  if ((status == 0)); then
    rm -rf "$work"
    echo "PASS: wheel smoke test ($((SECONDS - started))s)"
  else
    rm -rf "$work/src" "$work/venv" # the logs and state stay, to look at
    echo "FAIL: wheel smoke test (exit $status after $((SECONDS - started))s; logs in $logs)"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v curl >/dev/null || fail "curl is needed (apt-get install -y curl)"
curl -sf "$opensearch/_cluster/health" >/dev/null ||
  fail "OpenSearch does not answer at $opensearch: start the local stack (spansieve stack up)"
mkdir -p "$logs" "$work/run"

step "building the wheel (from a clean copy of the working tree: no stale build/)"
"$python" -m build --version >/dev/null 2>&1 || "$python" -m pip install -q build
mkdir "$work/src"
(
  cd "$repo"
  # Tracked and new files, nothing git ignores; files deleted in the tree are skipped.
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' file; do
      if [ -f "$file" ]; then printf '%s\0' "$file"; fi
    done |
    tar --null -T - -cf -
) | tar -xf - -C "$work/src"
"$python" -m build --wheel --outdir "$work/dist" "$work/src" >"$logs/build.log" 2>&1 ||
  fail "python -m build failed; see $logs/build.log"
wheel=$(ls "$work"/dist/*.whl)
"$python" -c 'import sys, zipfile; print(f"    {sys.argv[1]}: {len(zipfile.ZipFile(sys.argv[1]).namelist())} files")' "$wheel"

step "installing it in a fresh virtual environment (not editable)"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-compile "$wheel" >"$logs/pip.log" 2>&1 ||
  fail "pip install of the wheel failed; see $logs/pip.log"
py=$work/venv/bin/python
spansieve=$work/venv/bin/spansieve

# Everything below runs outside the checkout, on private names, ports and state.
cd "$work/run"
read -r http_port grpc_port metrics_port worker_port query_port < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export SPANSIEVE_STATE_DIR=$work/state SPANSIEVE_LOG_FORMAT=json \
  SPANSIEVE_OPENSEARCH_URL=$opensearch SPANSIEVE_KAFKA_BOOTSTRAP=$kafka \
  SPANSIEVE_STORE_INDEX_PREFIX=$tag- SPANSIEVE_TOPIC_PREFIX=$tag SPANSIEVE_PARTITIONS=1 \
  SPANSIEVE_GATEWAY_HTTP_PORT=$http_port SPANSIEVE_GATEWAY_GRPC_PORT=$grpc_port \
  SPANSIEVE_GATEWAY_METRICS_PORT=$metrics_port SPANSIEVE_WORKER_WEB_PORT=$worker_port \
  SPANSIEVE_QUERY_PORT=$query_port SPANSIEVE_DECISION_WAIT=2 SPANSIEVE_SAMPLING_PERCENTAGE=100
unset SPANSIEVE_POLICIES SPANSIEVE_GATEWAY_API_KEYS SPANSIEVE_GATEWAY_API_KEYS_FILE

step "the package is the installed one, not the checkout"
where=$("$py" -c 'import pipeline; print(pipeline.__file__)')
echo "    pipeline: $where"
case $where in "$work/venv/"*) ;; *) fail "pipeline was imported from $where" ;; esac

step "spansieve policies check <installed policies-default.yaml>"
policy=$("$py" -c 'import importlib.resources as r; print(r.files("pipeline.topologies") / "policies-default.yaml")')
echo "    $policy"
"$spansieve" policies check "$policy"

step "the local stack's config files are installed (spansieve stack status, templates)"
"$spansieve" stack status
"$py" -c '
from pathlib import Path

from pipeline.config.settings import Settings
from pipeline.local.stack import STACK_DIR, kafka_properties, opensearch_yml, pom_digest
for name in ("kafka", "opensearch"):
    pom_digest(STACK_DIR / name / "pom.xml")
assert (STACK_DIR / "kafka" / "log4j2.properties").is_file()
kafka_properties(Settings(), Path("data")), opensearch_yml(Settings())
print(f"    {STACK_DIR}: poms and templates read")'

step "spansieve store init (index prefix $tag-)"
"$spansieve" store init

step "starting spansieve gateway, worker and query (topic prefix $tag)"
"$spansieve" gateway >"$logs/gateway.log" 2>&1 &
pids+=($!)
"$spansieve" worker >"$logs/worker.log" 2>&1 &
pids+=($!)
"$spansieve" query >"$logs/query.log" 2>&1 &
pids+=($!)
wait_for 60 "gateway ready on :$http_port" curl -sf "http://127.0.0.1:$metrics_port/readyz"
wait_for 120 "worker answering on :$worker_port" curl -sf "http://127.0.0.1:$worker_port/metrics"
wait_for 60 "query server answering on :$query_port" curl -sf "http://127.0.0.1:$query_port/healthz"

step "sending one OTLP/JSON trace (3 spans, 2 services, one error) to /v1/traces"
trace_id=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
span() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
root=$(span) call=$(span) charge=$(span)
now=$(date +%s%N)
t() { echo "\"$((now + $1 * 1000000))\""; } # now + milliseconds, as OTLP/JSON's string
resource() { echo "{\"attributes\": [{\"key\": \"service.name\", \"value\": {\"stringValue\": \"$1\"}}]}"; }
cat >"$work/trace.json" <<EOF
{"resourceSpans": [
  {"resource": $(resource smoke-frontend), "scopeSpans": [{"spans": [
    {"traceId": "$trace_id", "spanId": "$root", "name": "GET /checkout", "kind": 2,
     "startTimeUnixNano": $(t 0), "endTimeUnixNano": $(t 40)},
    {"traceId": "$trace_id", "spanId": "$call", "parentSpanId": "$root", "name": "charge",
     "kind": 3, "startTimeUnixNano": $(t 5), "endTimeUnixNano": $(t 35)}]}]},
  {"resource": $(resource smoke-payments), "scopeSpans": [{"spans": [
    {"traceId": "$trace_id", "spanId": "$charge", "parentSpanId": "$call", "name": "Charge",
     "kind": 2, "startTimeUnixNano": $(t 10), "endTimeUnixNano": $(t 30),
     "status": {"code": 2, "message": "card declined"}}]}]}
]}
EOF
answer=$(curl -sS -w ' HTTP %{http_code}' -H 'Content-Type: application/json' \
  --data-binary @"$work/trace.json" "http://127.0.0.1:$http_port/v1/traces")
echo "    trace $trace_id: $answer"
[[ $answer == *"HTTP 200" ]] || fail "the gateway refused the trace"

step "waiting for its 3 spans in OpenSearch ($tag-otel-v1-apm-span)"
spans_stored() {
  local body
  body=$(curl -sf "$opensearch/$tag-otel-v1-apm-span/_count?q=traceId:$trace_id") || return 1
  grep -q '"count":3[,}]' <<<"$body"
}
wait_for 90 "all 3 spans searchable" spans_stored

step "the query server finds the trace, and serves its web UI from the wheel"
# Bodies are read whole before grep looks at them: with pipefail, `curl | grep -q` fails
# when grep exits on its match while curl is still writing (SIGPIPE, curl error 23).
found=$(curl -sf "http://127.0.0.1:$query_port/api/traces/$trace_id") || found=""
[[ $found == *"\"traceID\":\"$trace_id\""* ]] ||
  fail "GET /api/traces/$trace_id did not return the trace"
page=$(curl -sf "http://127.0.0.1:$query_port/") || page=""
grep -qi "<html" <<<"$page" || fail "GET / did not return the UI"
curl -sf -o /dev/null "http://127.0.0.1:$query_port/static/app.js" ||
  fail "GET /static/app.js failed"
echo "    /api/traces/$trace_id, / and /static/app.js answered"
