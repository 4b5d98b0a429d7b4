#!/usr/bin/env bash
# The podtls crate as crates.io would ship it: package it, then build and test the
# unpacked package on its own (no workspace, no path dependencies), and build it with
# the declared minimum Rust version. Idempotent; installs that toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=/var/tmp/podtls-ci-target}"
export CARGO_TARGET_DIR

msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$msrv" ] && [ -n "$version" ] || { echo "cannot read rust-version/version from Cargo.toml" >&2; exit 1; }

# 1. Package (cargo's own verification builds the library from the packaged files).
cargo package -p podtls --allow-dirty
crate="$CARGO_TARGET_DIR/package/podtls-$version.crate"

# 2. Unpack it somewhere outside the workspace and test it as a user would.
# Always the same directory: cargo keys its fingerprints on the package's paths, so a
# fresh directory per run would let it reuse test binaries built for a directory that
# no longer exists (compile-time env! paths inside them would point nowhere).
work="$CARGO_TARGET_DIR/packaged-src"
rm -rf "$work"
mkdir -p "$work"
tar -xzf "$crate" -C "$work"
# `cargo package` stores fixed, old mtimes; cargo decides freshness by mtime, so without
# this a changed source file would look older than last run's build and its stale test
# binaries would run instead. Touched, the crate itself is rebuilt; its deps stay cached.
find "$work" -type f -exec touch {} +
pkg="$work/podtls-$version"
for f in README.md Cargo.toml Cargo.lock; do
  [ -f "$pkg/$f" ] || { echo "the packaged crate lacks $f" >&2; exit 1; }
done
# The crate's own lock file pins what the workspace tested; its target dir is separate
# from the workspace's so the two never share fingerprints.
pkg_target="$CARGO_TARGET_DIR/packaged"
# Every target either builds with default features or declares required-features.
CARGO_TARGET_DIR="$pkg_target" cargo check --manifest-path "$pkg/Cargo.toml" --locked --all-targets
# The tests, doctests (the README's examples) included, with the test helpers on.
CARGO_TARGET_DIR="$pkg_target" cargo test --manifest-path "$pkg/Cargo.toml" --locked --features test-util

# 3. The declared MSRV builds it (library, all features).
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$msrv" --profile minimal
fi
CARGO_TARGET_DIR="$pkg_target-msrv" cargo "+$msrv" check --manifest-path "$pkg/Cargo.toml" --locked --all-features --lib
echo "package check: podtls $version packaged, tested, and built with Rust $msrv"
