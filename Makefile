# portico — build, test and demo. Every target works on a fresh Debian machine as root with
# only Go installed: missing Debian packages are installed with apt-get and pinned binaries
# (etcd, kube-apiserver, kube-controller-manager, kubectl, kube-proxy) are built from the Go
# module proxy into .cache/bin (git-ignored), once per pinned version.

SHELL        := /bin/bash
GO           ?= go
CACHE        := $(CURDIR)/.cache
CLUSTER_BINS := $(CACHE)/bin
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X main.version=$(VERSION)
MODE         ?= nftables
E2E_TIMEOUT  ?= 40m
DEB_PACKAGES := nftables iptables ipset conntrack iproute2 netbase mmdebstrap umoci

KEEP         ?=

.PHONY: all build test unit e2e vm-ipvs lint demo demo-down deps cluster-bins node-bins bench clean image image-push

all: build

## build: build bin/portico
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/portico ./cmd/portico

IMAGE        ?= ghcr.io/portico-dev/portico
IMAGE_TAG    ?= $(VERSION)
IMAGE_TAR    := bin/portico-image.tar

## image: the container image, built without Docker (mmdebstrap + umoci, installed with
##        apt-get when missing): a Debian root filesystem with portico, nft, iptables (nft
##        and legacy), ipset, conntrack; written as an OCI archive to bin/portico-image.tar
image:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/portico-static ./cmd/portico
	deploy/image/build.sh bin/portico-static $(IMAGE_TAR) $(IMAGE_TAG)

## image-push: push the image to REGISTRY (REGISTRY=host[:port]/path; skopeo, installed
##             with apt-get when missing): $(REGISTRY)/portico:$(IMAGE_TAG)
image-push: image
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY=host[:port][/path]" >&2; exit 2; }
	@dpkg -s skopeo >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null; }
	skopeo copy $(if $(INSECURE),--dest-tls-verify=false) oci-archive:$(IMAGE_TAR):$(IMAGE_TAG) docker://$(REGISTRY)/portico:$(IMAGE_TAG)

## deps: install the Debian packages the e2e tests and the demo need (nft, iptables, conntrack,
##       ip; mmdebstrap and umoci for the container image the real-node test runs)
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## cluster-bins: build the pinned control plane (etcd, kube-apiserver, kube-controller-manager, kubectl)
##               and kube-proxy (the e2e test of `portico cleanup --kube-proxy` runs it)
cluster-bins:
	e2e/tools/build.sh $(CLUSTER_BINS) etcd kube-apiserver kube-controller-manager kubectl kube-proxy

## node-bins: build the real node's binaries (kubelet, kube-scheduler, containerd 2.x with its
##            runc shim and ctr, runc) for e2e/node, pinned like cluster-bins
node-bins:
	e2e/tools/build.sh $(CLUSTER_BINS) kubelet kube-scheduler containerd containerd-shim-runc-v2 ctr runc

## demo: a local cluster on this machine, portico on node-a, example Services answering (root)
##       MODE=<mode> picks the backend (default nftables); KEEP=1 leaves it running;
##       DEPLOY=daemonset runs portico as the DaemonSet of deploy/ under a real kubelet
##       (containerd, runc) from its container image instead of as a process
demo: build deps cluster-bins $(if $(filter daemonset,$(DEPLOY)),node-bins)
	$(GO) build -o bin/portico-demo ./e2e/demo
	PORTICO_BIN=$(CURDIR)/bin/portico PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) \
		bin/portico-demo -mode $(MODE) $(if $(KEEP),-keep) $(if $(DEPLOY),-deploy $(DEPLOY))

## demo-down: stop a demo kept with KEEP=1
demo-down:
	$(GO) build -o bin/portico-demo ./e2e/demo
	bin/portico-demo -down

## bench: portico vs upstream kube-proxy in the same run: both in nftables mode with
##        100 Services × 1,000 endpoints and a rolling update of a 1,000-pod Service through
##        the EndpointSlice controller, then at 1k/5k/10k/50k Services (cold sync, change
##        latency to the kernel and to traffic, churn, memory with children, CPU, the nft
##        floor, the dataplane), then both in iptables mode on iptables-nft and on
##        iptables-legacy at 1k/10k (cold sync with a 3-minute limit), then both in ipvs mode
##        inside a VM at 100 and 1k (root; well over an hour). QUICK=1: N = 1,000 only (ipvs:
##        100), no endpoint-heavy Services, fewer samples (under 10 minutes). Writes
##        docs/benchmarks.md, docs/bench-results.json and the plots (bench-*.png). Not
##        part of `make test`. The tool is its own Go module in bench/; it builds its tool
##        wrapper (bench/nftwrap: nft, iptables, ipset) when it starts.
bench: build deps
	e2e/tools/build.sh $(CLUSTER_BINS) etcd kube-apiserver kube-controller-manager kubectl kube-proxy
	cd bench && $(GO) build -o ../bin/portico-bench ./cmd/portico-bench
	PORTICO_BIN=$(CURDIR)/bin/portico PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) \
		bin/portico-bench -out docs $(if $(QUICK),-quick)

## lint: gofmt and go vet (the root module, with and without the e2e tag, and the bench module)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(GO) vet -tags ipvsvm ./backends/ipvs/
	cd bench && $(GO) vet ./... && $(GO) vet -tags e2e ./...

## unit: the fast tests (no root, no kernel)
unit:
	$(GO) test ./...
	cd bench && $(GO) test ./...

# The e2e tests that exercise a backend's rules (traffic through them, their repair, their
# removal, restarts and API outages over them): `make e2e` runs them again in iptables mode.
E2E_BACKEND_TESTS := TestServiceSemantics|TestCleanupKubeProxy|TestModeSwitch|TestRulesRepaired|TestServiceRemoval|TestRestartKeepsConnections|TestAPIServerOutage|TestSessionAffinityTimeout|TestStaleUDPConntrack|TestStaleUDPAfterRestart|TestTerminatingFallbackDynamic|TestSliceMovesBetweenServices|TestManualEndpoints|TestPodsThroughEndpointSliceController|TestLongNames|TestInitOnly

## e2e: the end-to-end tests: real kube-apiserver + etcd, real kernel, real traffic (root).
##      The whole suite (nftables mode, with e2e/node: portico's DaemonSet from deploy/ run by
##      a real kubelet from its container image), then E2E_BACKEND_TESTS in iptables mode
##      twice: node-a marked as an iptables-nft host, then as an iptables-legacy one
e2e: build deps cluster-bins node-bins
	PORTICO_BIN=$(CURDIR)/bin/portico PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) \
		$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -p 1 ./e2e/... ./backends/... ./proxier/...
	cd bench && PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) $(GO) test -tags e2e -count=1 -timeout 10m -run '^(TestSeededServices|TestGenPollerAndKernelUnseen|TestMonitorMute)$$' .
	PORTICO_MODE=iptables PORTICO_IPTABLES=nft PORTICO_BIN=$(CURDIR)/bin/portico PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) \
		$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -p 1 ./e2e/ -run '^($(E2E_BACKEND_TESTS))$$'
	PORTICO_MODE=iptables PORTICO_IPTABLES=legacy PORTICO_BIN=$(CURDIR)/bin/portico PORTICO_CLUSTER_BINS=$(CLUSTER_BINS) \
		$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -p 1 ./e2e/ -run '^($(E2E_BACKEND_TESTS))$$'

## vm-ipvs: the ipvs backend's kernel tests, in a VM (this machine's kernel has no IPVS):
##      a static test binary run as root on Debian's cloud kernel under qemu (e2e/vm/run.sh;
##      the first run installs qemu and downloads the kernel into .cache/vm)
vm-ipvs: deps
	mkdir -p .cache/vm
	CGO_ENABLED=0 $(GO) test -c -tags ipvsvm -o .cache/vm/ipvs.test ./backends/ipvs/
	e2e/vm/run.sh --with $$(command -v nft) --with $$(command -v ipset) --with /etc/protocols -- .cache/vm/ipvs.test -test.v -test.count=1 -test.run '^TestVM'

## test: every test (unit, then e2e, then the VM tests)
test: lint unit e2e vm-ipvs

## clean: remove build outputs (the binary cache in .cache is kept; `rm -rf .cache` drops it)
clean:
	rm -rf bin
