#!/usr/bin/env bash
# Installs the tools operators point at a gateway, for tests/metrics_formats.rs,
# tests/grpc_refusals.rs and tests/tls_scan.rs: promtool and a Prometheus
# server (unpacked from Debian's package, so its service never starts),
# testssl.sh (Debian package), and Python's grpcio client and
# prometheus-client parser and PyJWT in the venv of install-servers.sh. Idempotent: a second run only checks.
set -euo pipefail

PREFIX="${AGW_DIFF_PREFIX:-/opt/agw-diff}"
# grpcio: the gRPC client of tests/grpc_refusals.rs; prometheus-client: its
# strict OpenMetrics parser checks what promtool (classic text only) cannot;
# PyJWT + cryptography: the Python verifier of examples/assertion/ (tests/assertion.rs).
PIP_PACKAGES=(grpcio==1.76.0 prometheus-client==0.26.0 PyJWT==2.10.1 cryptography==50.0.2)

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { ((updated)) || { apt-get update -qq || true; updated=1; }; }

if [[ ! -x "$PREFIX/prometheus/usr/bin/promtool" || ! -x "$PREFIX/prometheus/usr/bin/prometheus" ]]; then
  echo "install-protocols: prometheus (unpacked under $PREFIX/prometheus)"
  apt_update
  tmp="$(mktemp -d)"; chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  rm -rf "$PREFIX/prometheus"
  dpkg -x "$tmp"/prometheus_*.deb "$PREFIX/prometheus"
  rm -rf "$tmp"
fi

if ! command -v testssl >/dev/null 2>&1; then
  echo "install-protocols: testssl.sh"
  apt_update
  apt-get install -y -qq --no-install-recommends testssl.sh bsdextrautils dnsutils procps >/dev/null
fi

if [[ ! -x "$PREFIX/venv/bin/python" ]]; then
  python3 -m venv "$PREFIX/venv"
fi
if ! "$PREFIX/venv/bin/python" - "${PIP_PACKAGES[@]}" 2>/dev/null <<'PY'
import sys, importlib.metadata as m
sys.exit(any(m.version(n) != v for n, v in (s.split("==") for s in sys.argv[1:])))
PY
then
  echo "install-protocols: pip ${PIP_PACKAGES[*]}"
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

echo "install-protocols: ready under $PREFIX"
