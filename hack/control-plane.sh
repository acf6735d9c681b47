#!/usr/bin/env bash
# Builds (or reuses) the local Kubernetes control plane the e2e tests and
# `dlscaler dev cluster` run: etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl, kwok and helm, from their Go modules at the
# versions pinned below.
#
#   hack/control-plane.sh build        build what is missing (idempotent; seconds when warm)
#   hack/control-plane.sh env          print `export` lines: DLSCALER_BIN_DIR, PATH
#   hack/control-plane.sh bin-dir      print the binary directory
#   hack/control-plane.sh update-deps  regenerate hack/k8s/go.mod and go.sum (maintainers,
#                                      after changing K8S_VERSION or ETCD_VERSION)
#
# Binaries and the Go module/build caches live in a user-level cache
# ($DLSCALER_CACHE, default ~/.cache/dlscaler), not in the clone: CI runs each build in
# a fresh clone on the same machine and must find them warm.
set -euo pipefail

K8S_VERSION=v1.36.5      # kube-apiserver, kube-scheduler, kube-controller-manager, kubectl
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
BUILD_REV=1              # bump when the build flags below change, to rebuild into a new directory

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DLSCALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlscaler}"
K8S_MOD="$ROOT/hack/k8s"
ETCD_MOD="$ROOT/hack/k8s/etcd"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"   # v1.36.5 -> v0.36.5
K8S_COMPONENTS=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
ALL_BINARIES=(etcd "${K8S_COMPONENTS[@]}" kwok helm)

# The directory name carries every pinned version and a hash of the committed
# go.mod/go.sum files, so a version bump builds into a new directory and never mixes.
bin_dir() {
  local h
  h="$( (cat "$K8S_MOD/go.mod" "$K8S_MOD/go.sum" "$ETCD_MOD/go.mod" "$ETCD_MOD/go.sum" \
    2>/dev/null; echo "$BUILD_REV") | sha256sum | cut -c1-10)"
  echo "$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-$h"
}

stamp_text() {
  printf 'kubernetes %s\netcd %s\nkwok %s\nhelm %s\ngo %s\n' \
    "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$HELM_VERSION" "$(go env GOVERSION)"
}

go_env() {
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOPATH="$CACHE/go/path"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
  export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
}

log() { echo "control-plane: $*" >&2; }

# ldflags the Kubernetes release build sets (hack/lib/version.sh), so the components
# report their real version and the API server's emulation version is right.
k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Builds one binary into $dir atomically (a temporary name, then mv) so an interrupted
# build leaves either nothing or a complete binary.
install_bin() {
  local dir="$1" name="$2" src="$3"
  shift 3
  if [[ -x "$dir/$name" ]]; then
    log "$name: present"
    return
  fi
  log "building $name ($src) ..."
  local start=$SECONDS tmp="$dir/.$name.tmp.$$"
  "$@" -o "$tmp" "$src"
  mv -f "$tmp" "$dir/$name"
  log "built $name in $((SECONDS - start)) s"
}

cmd_build() {
  command -v go >/dev/null || { log "Go is required (go1.26 or newer) to build the control plane"; exit 1; }
  go_env
  local dir
  dir="$(bin_dir)"
  if [[ -f "$dir/.stamp" ]] && [[ "$(cat "$dir/.stamp")" == "$(stamp_text)" ]]; then
    log "binaries up to date in $dir"
    return
  fi
  mkdir -p "$dir" "$CACHE"
  # One build at a time per cache: two clones (or a developer and CI) may start together.
  exec {lock_fd}>"$CACHE/.control-plane.lock"
  if ! flock -n "$lock_fd"; then
    log "another build is running; waiting for its lock ($CACHE/.control-plane.lock) ..."
    flock "$lock_fd"
  fi
  if [[ -f "$dir/.stamp" ]] && [[ "$(cat "$dir/.stamp")" == "$(stamp_text)" ]]; then
    log "binaries up to date in $dir"
    return
  fi
  log "building into $dir (cold: 15-25 min on 2 cores; Go caches in $CACHE/go)"
  # Leftovers of an interrupted build (binaries are only ever moved in complete).
  rm -rf "$dir"/.gobin.* "$dir"/.*.tmp.*
  local total=$SECONDS
  # kwok and helm carry no replace directives: build them straight from the proxy.
  # (`go install` ignores the current module; GOBIN picks the output directory.)
  local name
  for name in kwok helm; do
    if [[ -x "$dir/$name" ]]; then log "$name: present"; continue; fi
    local mod ver
    if [[ $name == kwok ]]; then mod=sigs.k8s.io/kwok/cmd/kwok ver=$KWOK_VERSION; else mod=helm.sh/helm/v3/cmd/helm ver=$HELM_VERSION; fi
    log "building $name ($mod@$ver) ..."
    local start=$SECONDS tmpbin="$dir/.gobin.$$"
    mkdir -p "$tmpbin"
    local ldflags="-s -w"
    [[ $name == helm ]] && ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    [[ $name == kwok ]] && ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
    (cd "$dir" && GOFLAGS=-buildvcs=false GOBIN="$tmpbin" go install -trimpath -ldflags "$ldflags" "$mod@$ver")
    mv -f "$tmpbin/$name" "$dir/$name"
    rmdir "$tmpbin"
    log "built $name in $((SECONDS - start)) s"
  done
  # etcd's own go.mod has replace directives (so `go install etcd@version` refuses);
  # hack/k8s/etcd is a module of ours that requires it at the pinned version.
  (cd "$ETCD_MOD" && install_bin "$dir" etcd go.etcd.io/etcd/server/v3 go build -trimpath -ldflags "-s -w")
  local ldflags comp
  ldflags="$(k8s_ldflags)"
  for comp in "${K8S_COMPONENTS[@]}"; do
    (cd "$K8S_MOD" && install_bin "$dir" "$comp" "k8s.io/kubernetes/cmd/$comp" \
      go build -trimpath -tags selinux,notest -ldflags "$ldflags")
  done
  stamp_text >"$dir/.stamp"
  log "all binaries ready in $dir ($((SECONDS - total)) s)"
}

cmd_env() {
  local dir
  dir="$(bin_dir)"
  echo "export DLSCALER_BIN_DIR='$dir'"
  echo "export PATH='$dir':\"\$PATH\""
}

# Regenerates hack/k8s/go.mod from the kubernetes go.mod: k8s.io/kubernetes requires
# every staging module at v0.0.0 and replaces it with ./staging/src/..., which only
# works inside its own repository; as a dependency each one must be replaced with the
# matching published v0.X.Y (as cluster-autoscaler's hack/update-deps.sh does).
cmd_update_deps() {
  go_env
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >mod.json)
  local gomod
  gomod="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["GoMod"])' "$tmp/mod.json")"
  mapfile -t staging < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  [[ ${#staging[@]} -gt 10 ]] || { log "found no staging modules in $gomod"; exit 1; }
  {
    echo "// Tools module for the local control plane (hack/control-plane.sh); generated by"
    echo "// \`hack/control-plane.sh update-deps\`. Do not edit by hand."
    echo "module dlscaler.io/hack/k8s"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    local m
    for m in "${staging[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
  } >"$K8S_MOD/go.mod"
  rm -f "$K8S_MOD/go.sum"
  local comp tools=()
  for comp in "${K8S_COMPONENTS[@]}"; do tools+=("k8s.io/kubernetes/cmd/$comp@$K8S_VERSION"); done
  (cd "$K8S_MOD" && go get -tool "${tools[@]}" && go mod tidy)
  {
    echo "// Builds etcd at the pinned version (see hack/control-plane.sh)."
    echo "module dlscaler.io/hack/k8s/etcd"
    echo
    echo "go 1.26.0"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } >"$ETCD_MOD/go.mod"
  rm -f "$ETCD_MOD/go.sum"
  # etcd's sibling modules at the same version (its own go.mod replaces them with ../).
  (cd "$ETCD_MOD" && go get "go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
    "go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" "go.etcd.io/etcd/client/v3@$ETCD_VERSION" \
    "go.etcd.io/etcd/pkg/v3@$ETCD_VERSION" &&
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
  log "updated $K8S_MOD/go.mod and $ETCD_MOD/go.mod"
}

case "${1:-}" in
  build) cmd_build ;;
  env) cmd_env ;;
  bin-dir) bin_dir ;;
  update-deps) cmd_update_deps ;;
  *)
    echo "usage: $0 build|env|bin-dir|update-deps" >&2
    exit 2
    ;;
esac
