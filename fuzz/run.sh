#!/usr/bin/env bash
# Runs every fuzz target of this folder for a bounded time: fuzz/run.sh [SECONDS_PER_TARGET]
# (default 20). Needs the nightly toolchain (rustup) and a C++ compiler (libFuzzer is built
# from source); installs cargo-fuzz when missing. Seeds: the lab captures and RFC vectors of
# agent/tests/fixtures/names; the corpus grows in fuzz/corpus/TARGET (not committed). A crash
# stops the run with libFuzzer's report and leaves its input in fuzz/artifacts/TARGET.
set -euo pipefail

secs="${1:-20}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install --locked cargo-fuzz@0.13.2
fi
for target in tls http quic dns tcp_flow dhcp; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${secs}s"
    cargo +nightly fuzz run "$target" "corpus/$target" ../agent/tests/fixtures/names -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1
done
