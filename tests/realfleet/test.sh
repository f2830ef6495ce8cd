#!/usr/bin/env bash
# The integration tests on real Kubernetes control planes: builds the test bed
# and meshdeck, writes the sim's world, starts 3 real clusters, runs every test
# that runs on both fleets plus the real-only ones, and stops the clusters.
# Needs only the machine's Go and Rust toolchains (and kubectl, tmux as the sim run).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
crds="${MESHDECK_ISTIO_CRDS:-$(cd .. && pwd)/shared/istio/crds}"
state="$root/target/realfleet/state"
started=$(date +%s)
bash tests/realfleet/build.sh
echo "realfleet: built in $(( $(date +%s) - started ))s"
cargo build --quiet
target/debug/meshdeck world --clusters 3 --out-dir target/realfleet/world
# A fleet left running by hand is replaced: every run starts from the seeded world.
target/realfleet/realfleet down --state-dir "$state" >/dev/null
trap 'target/realfleet/realfleet down --state-dir "$state"' EXIT
target/realfleet/realfleet up --clusters 3 --world target/realfleet/world --crds "$crds" \
  --state-dir "$state" --kubeconfig-out target/realfleet/kubeconfig
# The test binaries whose tests run on both fleets; `sim_only` tests drive the sim's fault hooks.
export MESHDECK_TEST_FLEET=real MESHDECK_TEST_KUBECONFIG="$root/target/realfleet/kubeconfig"
set +e
cargo test --no-fail-fast --test dry_run --test apply_pipeline --test cli_apply --test inventory_live --test tui_e2e \
  --test real_fleet --test differential --test istio_analyze --test python_client \
  --test cluster_aliases --test completion --test apply_safety --test rollback_fleet --test route_owner --test cli_manners \
  --test outage --test secrets --test istio_runtime --test cli_analyze --test cli_routes --test trust --test transport --test bad_day --test pipeline_persona -- --skip sim_only 2>&1 | tee target/realfleet/test.log
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "realfleet: %d passed, %d failed\n", p, f }' target/realfleet/test.log
exit "$status"
