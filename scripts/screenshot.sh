#!/bin/sh
# Writes docs/status.png, the README's picture of the status page: the
# browser test (tests/e2e/status.rs) saves what headless chromium shows once
# it has run, paused and resumed its registries. Needs what
# `scripts/deps.sh test` installs, and root, as the e2e tests do.
set -eu
cd "$(dirname "$0")/.."
PB_STATUS_PNG="$PWD/docs/status.png" cargo test --test e2e status:: -- --nocapture
echo "wrote docs/status.png" >&2
