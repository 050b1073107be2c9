#!/usr/bin/env bash
# make demo: the operator's day on a 3-host test fleet.
#   node1 = MariaDB + nginx (site www.demo.test, backends node2:8001 and node3:8001), node2/node3 = AnQiCMS "www".
# Deploys with the roles, runs steady reads and writes through nginx, makes node2's instance leak into `critical`,
# then memory_check (fails, naming the host) -> emergency_stop (only that instance) -> diagnose -> recover,
# and counts failed requests and acknowledged-but-missing writes.
#   hacking/demo.sh          run it (a stale demo fleet is removed first)
#   hacking/demo.sh --heal   act 2, automatic (also: make demo DEMO_ACT=heal): a fleet of its own with the monitor role,
#                            Prometheus + Alertmanager -> ansible-rulebook on this machine; node2's instance leaks and
#                            the fleet recycles it by itself before the kernel's OOM kill (tests/demo/heal.py)
#   hacking/demo.sh --down   tear the demo fleets down
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LAB="${OPSGUARD_DEMO_LAB:-demo}"
PY="$ROOT/.venv/bin/python"
FLEET=("$PY" "$ROOT/tests/lab/fleet.py" --name "$LAB")
OUT="$ROOT/.build/demo"
REPORTS="$OUT/reports"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.collections" PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_NOCOLOR=1

export OPSGUARD_HEAL_LAB="${LAB}-heal" OPSGUARD_HEAL_OUT="$OUT/heal"
if [[ "${1:-}" == "--down" ]]; then
    timeout 300 "${FLEET[@]}" down
    timeout 300 "$PY" "$ROOT/tests/demo/heal.py" down
    echo "demo fleets '$LAB' and '$OPSGUARD_HEAL_LAB' are down"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "make demo builds a test fleet (namespaces, cgroups): run it as root" >&2
    exit 1
fi
if [[ "${1:-}" == "--heal" || "${DEMO_ACT:-}" == "heal" ]]; then
    # Act 2: nobody types anything. Timeline and counts on stdout; exit status 3 when the kernel won.
    exec timeout 3600 "$PY" "$ROOT/tests/demo/heal.py" all --leak-mib-per-s "${DEMO_LEAK_MIB_PER_S:-4}"
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
TRAFFIC_PID=""
cleanup() {
    if [[ -n "$TRAFFIC_PID" ]] && kill -0 "$TRAFFIC_PID" 2>/dev/null; then
        touch "$OUT/traffic.stop"
        wait "$TRAFFIC_PID" || true
    fi
}
trap cleanup EXIT

mkdir -p "$OUT"
rm -rf "$REPORTS" "$OUT/traffic.stop" "$OUT/traffic.json"
START=$(date +%s)

say "1/7 Test fleet '$LAB': 3 hosts with systemd, sshd, MariaDB, nginx; 1536 MiB memory limit each"
timeout 300 "${FLEET[@]}" up --hosts 3 --memory 1536M
INV="$OUT/inventory.yml"
"$PY" "$ROOT/tests/demo/topology.py" inventory "$LAB" "$INV" >/dev/null
FRONT=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["all"]["children"]["fleet"]["hosts"]["node1"]["ansible_host"])' "$INV")

say "2/7 Deploy with the roles (database on node1, AnQiCMS www on node2 and node3, nginx on node1)"
if ! timeout 900 ansible-playbook -i "$INV" opsguard.anqicms.deploy > "$OUT/deploy.log" 2>&1; then
    tail -40 "$OUT/deploy.log"; echo "deploy failed: full log in $OUT/deploy.log" >&2; exit 1
fi
grep -A4 'PLAY RECAP' "$OUT/deploy.log" | tail -3

say "3/7 Steady traffic through nginx (http://$FRONT, Host www.demo.test): 4 threads, 30 % writes"
"$PY" "$ROOT/tests/demo/traffic.py" --url "http://$FRONT" --host-header www.demo.test --threads 4 --duration 900 \
    --stop-file "$OUT/traffic.stop" --lab "$LAB" --db-host node1 --out "$OUT/traffic.json" > /dev/null 2>&1 &
TRAFFIC_PID=$!
sleep 3
echo "node2's instance starts leaking:"
"$PY" "$ROOT/tests/demo/topology.py" leak "$LAB" node2

say "4/7 memory_check: the CI job fails and names the host"
set +e
timeout 300 ansible-playbook -i "$INV" opsguard.anqicms.memory_check -e "opsguard_report_dir=$REPORTS" -e opsguard_sample_seconds=5 > "$OUT/memory_check.log" 2>&1
rc=$?
set -e
sed -n '/Show the fleet table/,/^$/p' "$OUT/memory_check.log" | sed -n 's/^ *"\(.*\)",\{0,1\}$/  \1/p'
echo "  exit status: $rc (non-zero = a host at or above 'critical')"

say "5/7 emergency_stop: drain node2 at nginx, stop it gracefully, keep it stopped"
timeout 600 ansible-playbook -i "$INV" opsguard.anqicms.emergency_stop -e "opsguard_report_dir=$REPORTS" > "$OUT/emergency_stop.log" 2>&1 \
    || { tail -40 "$OUT/emergency_stop.log"; exit 1; }
sed -n '/Show the plan/,/^}/p;/Show the outcome/,/^}/p' "$OUT/emergency_stop.log" | sed -n 's/^ *"\(.*\)",\{0,1\}$/  \1/p'

say "6/7 diagnose: who holds the memory, MariaDB, journal, recommendations"
timeout 300 ansible-playbook -i "$INV" opsguard.anqicms.diagnose -e "opsguard_report_dir=$REPORTS" -e opsguard_sample_seconds=6 > "$OUT/diagnose.log" 2>&1 \
    || { tail -40 "$OUT/diagnose.log"; exit 1; }
sed -n '/Show the diagnosis/,/^TASK/p' "$OUT/diagnose.log" | grep -v '^TASK' | sed -n 's/^ *"\(.*\)",\{0,1\}$/  \1/p;s/^ok: \[\(.*\)\].*/ \1:/p'

say "7/7 recover: re-enable, start, health-check, back into rotation"
timeout 600 ansible-playbook -i "$INV" opsguard.anqicms.recover > "$OUT/recover.log" 2>&1 || { tail -40 "$OUT/recover.log"; exit 1; }
grep -A4 'PLAY RECAP' "$OUT/recover.log" | tail -3
sleep 3
touch "$OUT/traffic.stop"
wait "$TRAFFIC_PID"
TRAFFIC_PID=""

say "Traffic through nginx during all of it"
"$PY" - "$OUT/traffic.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  {r['requests']} requests in {r['seconds']} s ({r['reads']} reads, {r['writes']} writes)")
print(f"  failed requests: {r['failed']}")
print(f"  acknowledged writes: {r['acknowledged_writes']}, missing from the database: {len(r.get('missing_writes', []))}")
for f in r['failures'][:5]:
    print(f"    {f}")
sys.exit(0 if r['failed'] == 0 and not r.get('missing_writes') else 3)
EOF
echo
echo "Reports: $REPORTS ($(find "$REPORTS" -maxdepth 1 -type f -printf '%f '))"
echo "Logs:    $OUT/*.log; the fleet stays up for a look around: ssh -i /tmp/opsguard-lab/$LAB/id_ed25519 root@$FRONT"
echo "Done in $(( $(date +%s) - START )) s. Tear down with: make demo-down"
