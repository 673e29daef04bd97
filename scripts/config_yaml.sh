# Shared by tests/shell/lib.sh and scripts/bench.sh (sourced, not run): the
# body of a minigcs config.yaml whose every path is relative to the config's
# own folder (./node-N, ./metadata.db, ./ctl.sock, metrics.csv).
#
# config_yaml prints it from these variables (all required unless marked):
#   CFG_NODES                  node count; node N lives in ./node-N, regions
#                              cycle over us-east-1, us-west-1, eu-west-1
#   CFG_K CFG_M CFG_CHUNK      erasure coding
#   CFG_PORT CFG_MAX_FILE_SIZE the HTTP API (on 127.0.0.1)
#   CFG_RECOVERY_AUTO          true/false
#   CFG_API_EXTRA              (optional) raw YAML lines inside api:
#   CFG_RECOVERY_EXTRA         (optional) raw YAML lines inside recovery:
#   CFG_METADATA_EXTRA         (optional) raw YAML lines inside metadata:
# (extra lines indented by 2 spaces). Callers add their own top-level
# sections after it.

config_yaml() {
    local regions=(us-east-1 us-west-1 eu-west-1) i
    echo "nodes:"
    for ((i = 1; i <= CFG_NODES; i++)); do
        echo "  - id: \"node-$i\""
        echo "    region: \"${regions[$(((i - 1) % 3))]}\""
        echo "    storage_path: \"./node-$i\""
    done
    cat <<EOF
erasure_coding:
  k: $CFG_K
  m: $CFG_M
  chunk_size: $CFG_CHUNK
api:
  enabled: true
  host: "127.0.0.1"
  port: $CFG_PORT
  max_file_size: $CFG_MAX_FILE_SIZE
${CFG_API_EXTRA:-}
metrics:
  enabled: true
  output_file: "metrics.csv"
recovery:
  timeout: 30
  retry_attempts: 3
  auto: $CFG_RECOVERY_AUTO
${CFG_RECOVERY_EXTRA:-}
metadata:
  path: "./metadata.db"
${CFG_METADATA_EXTRA:-}
control:
  socket: "./ctl.sock"
EOF
}
