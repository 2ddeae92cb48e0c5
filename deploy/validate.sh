#!/usr/bin/env bash
# Checks everything under deploy/ without a cluster and without network access
# beyond installing the checker itself:
#   - every Kubernetes manifest, strictly, against the Kubernetes API schemas
#     bundled in the kubernetes-validate package (unknown fields fail too);
#   - kustomizations list exactly the manifests beside them;
#   - references inside each example (ConfigMap volumes, Service selectors and
#     named ports, probe ports, PodDisruptionBudget selectors) resolve;
#   - every gateway.toml embedded in a ConfigMap parses and agrees with its pod
#     (ports, mount path, termination grace vs. drain + grace), and passes
#     `authgear-gateway check` when a built binary is found;
#   - the systemd unit, with `systemd-analyze verify` when that tool exists.
# Prints one line per checked item and exits non-zero on any problem.
# Usage: bash deploy/validate.sh   (as root on Debian, or with python3 >= 3.11
# and venv already present)
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$deploy_dir")"

# Pinned so that results change only when someone bumps it on purpose.
kv_version="1.37.0"
# The oldest Kubernetes the examples target (1.30: first with the preStop
# sleep action enabled by default) and the newest the pinned package knows.
k8s_versions=(1.30.0 1.37.0)
venv="${AUTHGEAR_VALIDATE_VENV:-/tmp/authgear-gateway-validate-venv}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs a command with its output hidden unless it fails.
quietly() {
  if ! "$@" >"$work/cmd.log" 2>&1; then
    echo "validate.sh: command failed: $*" >&2
    cat "$work/cmd.log" >&2
    return 1
  fi
}

python_ok() {
  command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import sys, tomllib, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if ! python_ok; then
  # Debian ships venv/ensurepip separately from the interpreter.
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "validate.sh: needs python3 >= 3.11 with venv; install python3 and python3-venv" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  quietly apt-get update
  quietly apt-get install -y --no-install-recommends python3 python3-venv
  python_ok || { echo "validate.sh: python3 >= 3.11 with venv still missing" >&2; exit 1; }
fi

# Reuse the venv when it already has the pinned version; rebuild it otherwise
# (also repairs a venv left half-made by an interrupted run).
if ! "$venv/bin/python" -c "
import sys, importlib.metadata as m
sys.exit(m.version('kubernetes-validate') != '$kv_version')" >/dev/null 2>&1; then
  rm -rf "$venv"
  quietly python3 -m venv "$venv"
  quietly "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
    "kubernetes-validate==$kv_version"
fi

# The checks run in a fresh network namespace when the kernel allows it, so
# a passing run proves the schemas are local; elsewhere a socket guard in the
# checker does the same job less completely.
offline=()
if unshare --net true >/dev/null 2>&1; then
  offline=(unshare --net)
fi

kustomize_cmd=""
if command -v kubectl >/dev/null 2>&1; then
  kustomize_cmd="kubectl"
fi

# When a gateway binary is at hand (AUTHGEAR_GATEWAY_BIN, or the newer of the
# release/debug builds), its own `check` also judges each embedded config.
gateway_bin="${AUTHGEAR_GATEWAY_BIN:-}"
if [[ -z $gateway_bin ]]; then
  for candidate in "$repo_dir/target/release/authgear-gateway" "$repo_dir/target/debug/authgear-gateway"; do
    if [[ -x $candidate && (-z $gateway_bin || $candidate -nt $gateway_bin) ]]; then
      gateway_bin="$candidate"
    fi
  done
fi
if [[ -n $gateway_bin ]] && ! "$gateway_bin" check --help >/dev/null 2>&1; then
  echo "skip ${gateway_bin#"$repo_dir"/}: has no working \`check\` subcommand"
  gateway_bin=""
fi
if [[ -z $gateway_bin ]]; then
  echo "skip authgear-gateway check: no built binary (build it or set AUTHGEAR_GATEWAY_BIN)"
fi

status=0
"${offline[@]}" "$venv/bin/python" - "$repo_dir" "$kustomize_cmd" "$gateway_bin" "$work" \
  "${k8s_versions[@]}" <<'PY' || status=1
import os
import re
import socket
import subprocess
import sys
import tomllib


def _refuse_network(*_args, **_kwargs):
    raise RuntimeError("network access attempted: validation must be offline")


socket.socket.connect = _refuse_network
socket.socket.connect_ex = _refuse_network
socket.create_connection = _refuse_network
socket.getaddrinfo = _refuse_network

import yaml  # noqa: E402  (after the guard, so nothing can slip past it)
from kubernetes_validate import utils as kv  # noqa: E402
from kubernetes_validate.version import __version__ as kv_version  # noqa: E402

repo = sys.argv[1]
kubectl = sys.argv[2]
gateway_bin = sys.argv[3]
scratch = sys.argv[4]
versions = sys.argv[5:]
k8s_root = os.path.join(repo, "deploy", "kubernetes")
errors = []
checked = {"resources": 0, "files": 0, "configs": 0, "kustomizations": 0}

GATEWAY_CONFIG_DIR = "/etc/authgear-gateway"
GATEWAY_CONFIG_FILE = "gateway.toml"
AUTH_MODES = {"public", "optional", "required"}


def rel(path):
    r = os.path.relpath(path, repo)
    return path if r.startswith("..") else r


def fail(where, message):
    errors.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}")


def ok(where, message):
    print(f"ok   {where}: {message}")


def schema_check(where, doc):
    """Strict schema validation against every target Kubernetes version."""
    good = True
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top level)"
            fail(where, f"k8s {version}: {path}: {e.message}")
            good = False
        except kv.SchemaNotFoundError as e:
            # kubernetes-validate only warns here; an unknown kind or
            # apiVersion is a typo or a removed API, so it fails here.
            fail(where, e.message)
            good = False
        except kv.VersionNotSupportedError as e:
            fail(where, e.message)
            good = False
    return good


def duration_seconds(value):
    """'5s', '500ms', '1m', '1m30s' -> seconds; None when unparsable."""
    if not isinstance(value, str):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def listen_port(value):
    m = re.fullmatch(r"(?:\[[^\]]*\]|[^:]*):(\d+)", value or "")
    return int(m.group(1)) if m else None


def check_gateway_toml(where, text):
    """Structural checks only; `authgear-gateway check` (below) does the rest."""
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(where, f"gateway config is not valid TOML: {e}")
        return None
    problems = []

    def is_str_list(v):
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    for table in ("server", "admin"):
        listen = cfg.get(table, {}).get("listen")
        if listen is not None and listen_port(listen) is None:
            problems.append(f"[{table}] listen must be \"host:port\"")
    if not (isinstance(cfg.get("upstream", {}).get("url"), str) or cfg.get("upstreams")):
        problems.append("no [upstream] url (or [upstreams.NAME])")
    auth = cfg.get("auth", {})
    issuers = auth.get("issuers") or ([auth] if "issuer" in auth else [])
    if not issuers or not all(isinstance(i.get("issuer"), str) for i in issuers):
        problems.append("no [auth] issuer (or [[auth.issuers]] issuer)")
    for i in issuers:
        if "audiences" in i and not is_str_list(i["audiences"]):
            problems.append("audiences must be a list of strings")
    routes = cfg.get("routes", [])
    if not isinstance(routes, list) or not routes:
        problems.append("no [[routes]]: every request would be refused")
        routes = []
    for i, route in enumerate(routes):
        if not isinstance(route.get("path"), str):
            problems.append(f"routes[{i}] has no path")
        if "auth" in route and route["auth"] not in AUTH_MODES:
            problems.append(f"routes[{i}] auth must be one of {sorted(AUTH_MODES)}")
    if not all(isinstance(v, str) for v in cfg.get("headers", {}).values()):
        problems.append("[headers] values must be claim names (strings)")
    if cfg.get("log", {}).get("format", "pretty") not in ("json", "pretty"):
        problems.append('[log] format must be "json" or "pretty"')
    server = cfg.get("server", {})
    for key in ("shutdown_drain", "shutdown_grace"):
        if key in server and duration_seconds(server[key]) is None:
            problems.append(f"[server] {key} is not a duration like \"5s\"")
    for p in problems:
        fail(where, p)
    return None if problems else cfg


def run_gateway_check(where, text):
    path = os.path.join(scratch, "gateway.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    proc = subprocess.run([gateway_bin, "check", "--config", path],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().replace(path, "gateway.toml")
        fail(where, f"{rel(gateway_bin)} check:\n{out}")
    else:
        ok(where, f"{rel(gateway_bin)} check passes")


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod_against_configs(where, workload, configmaps):
    """Cross-checks between a workload's pod and the gateway configs it mounts."""
    before = len(errors)
    mounts_gateway = _check_pod(where, workload, configmaps)
    if len(errors) == before:
        ok(where, "pod wiring ok" + (" (gateway config mount, ports, probes, grace "
                                     "period, securityContext)" if mounts_gateway else ""))


def _check_pod(where, workload, configmaps):
    mounts_gateway = False
    spec = workload["spec"]
    tmpl = spec.get("template", {})
    pod = tmpl.get("spec", {})
    pod_labels = tmpl.get("metadata", {}).get("labels", {})
    if not labels_match(spec.get("selector", {}).get("matchLabels", {}), pod_labels):
        fail(where, "selector.matchLabels does not match the pod template labels")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        cwhere = f"{where} container {c['name']}"
        port_names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        port_numbers = set(port_names.values())
        for probe_kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = c.get(probe_kind, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in port_names:
                fail(cwhere, f"{probe_kind} uses unknown port name {port!r}")
        for mount in c.get("volumeMounts", []):
            vol = volumes.get(mount["name"])
            if vol is None:
                fail(cwhere, f"volumeMount {mount['name']!r} has no volume")
                continue
            cm_ref = vol.get("configMap")
            if not cm_ref:
                continue
            cm = configmaps.get(cm_ref.get("name"))
            if cm is None:
                if not cm_ref.get("optional"):
                    fail(cwhere, f"ConfigMap {cm_ref.get('name')!r} is not defined beside it")
                continue
            if GATEWAY_CONFIG_FILE not in cm["data"]:
                continue
            # This container runs the gateway.
            mounts_gateway = True
            if "subPath" in mount or "subPathExpr" in mount:
                fail(cwhere, "gateway config mounted with subPath: it would never be "
                             "updated, so hot reload could not work")
            if mount.get("mountPath", "").rstrip("/") != GATEWAY_CONFIG_DIR and not c.get("args"):
                fail(cwhere, f"gateway config must be mounted at {GATEWAY_CONFIG_DIR}, "
                             "where the image's entrypoint reads it")
            cfg = cm["config"]
            if cfg is None:
                continue
            # The gateway's own defaults when a listen address is left out.
            listen = {
                "server": cfg.get("server", {}).get("listen", "0.0.0.0:8080"),
                "admin": cfg.get("admin", {}).get("listen", "127.0.0.1:9090"),
            }
            for table, addr in listen.items():
                port = listen_port(addr)
                if port not in port_numbers:
                    fail(cwhere, f"[{table}] listen port {port} is not a containerPort")
            if re.match(r"(127\.|localhost:|\[::1\]:)", listen["admin"]):
                fail(cwhere, f"[admin] listen {listen['admin']} is loopback-only: the "
                             "kubelet probes the pod IP, so the pod would never be ready")
            admin_port = listen_port(listen["admin"])
            for probe_kind in ("livenessProbe", "readinessProbe"):
                port = c.get(probe_kind, {}).get("httpGet", {}).get("port")
                if port is None:
                    fail(cwhere, f"gateway container has no {probe_kind}")
                    continue
                if port_names.get(port, port) != admin_port:
                    fail(cwhere, f"{probe_kind} must target the admin port {admin_port}")
            server = cfg.get("server", {})
            drain = duration_seconds(server.get("shutdown_drain", "5s")) or 0
            grace = duration_seconds(server.get("shutdown_grace", "30s")) or 0
            tgp = pod.get("terminationGracePeriodSeconds", 30)
            if tgp <= drain + grace:
                fail(cwhere, f"terminationGracePeriodSeconds {tgp} must exceed "
                             f"shutdown_drain + shutdown_grace ({drain:g}s + {grace:g}s)")
            sc = c.get("securityContext", {})
            psc = pod.get("securityContext", {})
            wanted = {
                "runAsNonRoot": sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
                "allowPrivilegeEscalation: false": sc.get("allowPrivilegeEscalation") is False,
                "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                "capabilities.drop [ALL]": "ALL" in sc.get("capabilities", {}).get("drop", []),
                "seccompProfile RuntimeDefault":
                    sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
            }
            for name, good in wanted.items():
                if not good:
                    fail(cwhere, f"gateway securityContext lacks {name}")
    return mounts_gateway


def check_directory(directory, files):
    """Validates one directory of manifests; returns the parsed resources."""
    resources = []  # (where, doc)
    kustomization = None
    for path in files:
        checked["files"] += 1
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            fail(rel(path), f"not valid YAML: {e}")
            continue
        if not docs:
            fail(rel(path), "no YAML documents")
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                fail(rel(path), "document without apiVersion/kind")
                continue
            if doc["kind"] == "Kustomization":
                kustomization = (path, doc)
                continue
            name = (doc.get("metadata") or {}).get("name")
            if not name:
                fail(rel(path), f"{doc['kind']} without metadata.name")
                continue
            where = f"{rel(path)} {doc['kind']}/{name}"
            checked["resources"] += 1
            if schema_check(where, doc):
                ok(where, "schema ok for k8s " + ", ".join(v.rsplit(".", 1)[0] for v in versions))
            resources.append((where, doc))

    configmaps = {}
    for where, doc in resources:
        if doc["kind"] != "ConfigMap":
            continue
        data = doc.get("data") or {}
        entry = {"data": data, "config": None}
        for key, text in data.items():
            if key.endswith(".toml"):
                checked["configs"] += 1
                cfg = check_gateway_toml(f"{where} [{key}]", text)
                if cfg is not None:
                    ok(f"{where} [{key}]", "gateway config parses")
                    if key == GATEWAY_CONFIG_FILE:
                        entry["config"] = cfg
                    if gateway_bin:
                        run_gateway_check(f"{where} [{key}]", text)
        configmaps[doc["metadata"]["name"]] = entry

    workloads = [(w, d) for w, d in resources
                 if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    for where, doc in workloads:
        check_pod_against_configs(where, doc, configmaps)

    def pod_for(selector):
        for _, d in workloads:
            labels = d["spec"]["template"].get("metadata", {}).get("labels", {})
            if labels_match(selector, labels):
                return d
        return None

    for where, doc in resources:
        if doc["kind"] == "Service":
            target = pod_for(doc["spec"].get("selector", {}))
            if target is None:
                fail(where, "selector matches no workload defined beside it")
                continue
            names = {p.get("name") for c in target["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for port in doc["spec"].get("ports", []):
                tp = port.get("targetPort")
                if isinstance(tp, str) and tp not in names:
                    fail(where, f"targetPort {tp!r} is not a named containerPort")
        elif doc["kind"] == "PodDisruptionBudget":
            if pod_for(doc["spec"].get("selector", {}).get("matchLabels", {})) is None:
                fail(where, "selector matches no workload defined beside it")

    if kustomization is None:
        fail(rel(directory), "no kustomization.yaml")
    else:
        kpath, kdoc = kustomization
        checked["kustomizations"] += 1
        listed = kdoc.get("resources") or []
        good = True
        for entry in listed:
            if "://" in entry or not os.path.isfile(os.path.join(directory, entry)):
                fail(rel(kpath), f"resource {entry!r} is not a file beside it")
                good = False
        unlisted = sorted(os.path.basename(p) for p in files
                          if p != kpath and os.path.basename(p) not in listed)
        for name in unlisted:
            fail(rel(kpath), f"{name} is not listed in resources")
            good = False
        if good:
            ok(rel(kpath), f"lists all {len(listed)} manifests")
        if good and kubectl:
            # The real kustomize renderer (bundled in kubectl), so what
            # `kubectl apply -k` would send is validated too.
            proc = subprocess.run([kubectl, "kustomize", directory],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                fail(rel(kpath), f"kubectl kustomize failed: {proc.stderr.strip()}")
            else:
                rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
                bad = [d for d in rendered if not schema_check(
                    f"{rel(kpath)} rendered {d.get('kind')}/{d.get('metadata', {}).get('name')}", d)]
                if not bad:
                    ok(rel(kpath), f"kubectl kustomize renders {len(rendered)} valid resources")


if not os.path.isdir(k8s_root):
    fail(rel(k8s_root), "directory missing")
else:
    by_dir = {}
    for dirpath, _dirs, names in os.walk(k8s_root):
        for n in names:
            if n.endswith((".yaml", ".yml")):
                by_dir.setdefault(dirpath, []).append(os.path.join(dirpath, n))
    if not by_dir:
        fail(rel(k8s_root), "no manifests found")
    for directory in sorted(by_dir):
        check_directory(directory, sorted(by_dir[directory]))

print(f"kubernetes: {checked['resources']} resources in {checked['files']} files, "
      f"{checked['configs']} gateway configs, {checked['kustomizations']} kustomizations; "
      f"kubernetes-validate {kv_version}")
if errors:
    print(f"kubernetes: {len(errors)} problem(s)")
    sys.exit(1)
PY

unit="$deploy_dir/systemd/authgear-gateway.service"
if [[ ! -f "$unit" ]]; then
  echo "FAIL ${unit#"$repo_dir"/}: missing"
  status=1
elif command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart binaries exist, so it checks a copy whose
  # gateway path points at a stand-in executable.
  printf '#!/bin/sh\nexit 0\n' >"$work/authgear-gateway"
  chmod +x "$work/authgear-gateway"
  sed "s|/usr/local/bin/authgear-gateway|$work/authgear-gateway|g" "$unit" \
    >"$work/authgear-gateway.service"
  # verify reports unknown or malformed settings as warnings yet exits 0, so
  # any line naming the unit counts as a failure.
  set +e
  verify_out="$(systemd-analyze verify "$work/authgear-gateway.service" 2>&1)"
  verify_rc=$?
  set -e
  unit_lines="$(grep -F "authgear-gateway.service" <<<"$verify_out" || true)"
  if [[ $verify_rc -ne 0 || -n "$unit_lines" ]]; then
    echo "FAIL ${unit#"$repo_dir"/}: systemd-analyze verify:"
    shown="${unit_lines:-$verify_out}"
    echo "${shown//"$work/"/deploy/systemd/}"
    status=1
  else
    echo "ok   ${unit#"$repo_dir"/}: systemd-analyze verify"
  fi
else
  echo "skip ${unit#"$repo_dir"/}: systemd-analyze not installed"
fi

# deploy/forward-auth/: the core-API manifests strictly; the CRD examples
# (Traefik, Istio, Envoy Gateway) have no schema offline and are listed as
# unvalidated in its README.
for fa in "$deploy_dir"/forward-auth/ingress-nginx.yaml; do
  for version in "${k8s_versions[@]}"; do
    if "${offline[@]}" "$venv/bin/kubernetes-validate" --strict -k "$version" "$fa" >"$work/fa.log" 2>&1; then
      echo "ok   ${fa#"$repo_dir"/}: kubernetes $version (strict)"
    else
      cat "$work/fa.log"
      status=1
    fi
  done
done

if [[ $status -ne 0 ]]; then
  echo "validate.sh: FAILED" >&2
  exit 1
fi
echo "validate.sh: all deploy checks passed"
