#!/usr/bin/env bash
# Installs the system packages the test suite starts for real: PostgreSQL
# (integration tests on a live server) and Prometheus (dashboard checks).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "system-deps: missing ${need[*]}; run as root or install them with apt-get" >&2
        exit 1
    fi
    echo "system-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
