package kubelet

import (
	"fmt"
	"path/filepath"
	"strings"
)

// PauseImage is the sandbox image containerd starts in every pod: the harness's own
// pause program (pause/), imported under this name because nothing can be pulled here.
const PauseImage = "registry.k8s.io/pause:3.10.1"

// containerdConfig returns containerd 2.x's configuration (format version 3): its own
// root, state and socket under dir, runc from binDir with cgroupfs (the machine's cgroups
// are v1), the overlayfs snapshotter, the pause image pinned, and the plugins that cannot
// work here disabled. There is no CNI configuration: the node runs host-network pods
// only, which the kubelet admits while the runtime's network is not ready.
func containerdConfig(dir, binDir string) string {
	r := func(p string) string { return filepath.Join(dir, p) }
	lines := []string{
		`version = 3`,
		fmt.Sprintf(`root = %q`, r("containerd/root")),
		fmt.Sprintf(`state = %q`, r("containerd/state")),
		`disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", ` +
			`"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]`,
		``,
		`[grpc]`,
		fmt.Sprintf(`  address = %q`, socket(dir)),
		`[ttrpc]`,
		fmt.Sprintf(`  address = %q`, socket(dir)+".ttrpc"),
		``,
		`[plugins.'io.containerd.cri.v1.images']`,
		`  snapshotter = "overlayfs"`,
		`[plugins.'io.containerd.cri.v1.images'.pinned_images]`,
		fmt.Sprintf(`  sandbox = %q`, PauseImage),
		// This machine's root lacks CAP_SYS_RESOURCE: no process may lower its
		// oom_score_adj, and runc fails to start a container whose spec asks for it (the
		// kubelet asks -997 and -998 for system-node-critical pods and sandboxes).
		// Restricted, a container gets at least containerd's own adjustment.
		`[plugins.'io.containerd.cri.v1.runtime']`,
		`  restrict_oom_score_adj = true`,
		`[plugins.'io.containerd.cri.v1.runtime'.containerd]`,
		`  default_runtime_name = "runc"`,
		`[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]`,
		`  runtime_type = "io.containerd.runc.v2"`,
		`[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]`,
		fmt.Sprintf(`  BinaryName = %q`, filepath.Join(binDir, "runc")),
		`  SystemdCgroup = false`,
		`[plugins.'io.containerd.cri.v1.runtime'.cni]`,
		fmt.Sprintf(`  bin_dirs = [%q]`, r("cni/bin")),
		fmt.Sprintf(`  conf_dir = %q`, r("cni/net.d")),
	}
	return strings.Join(lines, "\n") + "\n"
}

// socket returns containerd's socket under dir.
func socket(dir string) string { return filepath.Join(dir, "containerd", "containerd.sock") }

// kubeletConfig returns the kubelet's KubeletConfiguration: cgroup v1 allowed
// (failCgroupV1: false; kubelet 1.35+ refuses it otherwise) with cgroupfs, every cgroup
// under cgroupRoot (so that nothing lands among the machine's own), the runtime's socket,
// the API on nodeIP, no authentication of its own API (the harness is alone on it), pod
// logs under dir, and no eviction or image garbage collection (the machine's disk usage
// is not the test's business).
func kubeletConfig(dir, nodeIP, cgroupRoot string) string {
	lines := []string{
		`apiVersion: kubelet.config.k8s.io/v1beta1`,
		`kind: KubeletConfiguration`,
		`failCgroupV1: false`,
		`cgroupDriver: cgroupfs`,
		fmt.Sprintf(`cgroupRoot: %q`, cgroupRoot),
		`failSwapOn: false`,
		fmt.Sprintf(`address: %q`, nodeIP),
		`port: 10250`,
		`readOnlyPort: 0`,
		`healthzBindAddress: 127.0.0.1`,
		`healthzPort: 10248`,
		`authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}`,
		`authorization: {mode: AlwaysAllow}`,
		fmt.Sprintf(`containerRuntimeEndpoint: %q`, "unix://"+socket(dir)),
		fmt.Sprintf(`podLogsDir: %q`, filepath.Join(dir, "pod-logs")),
		`evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}`,
		`imageGCHighThresholdPercent: 100`,
		`imageGCLowThresholdPercent: 99`,
		`localStorageCapacityIsolation: false`,
		`resolvConf: /etc/resolv.conf`,
		`syncFrequency: 10s`,
		`fileCheckFrequency: 10s`,
		`nodeStatusUpdateFrequency: 5s`,
		`serializeImagePulls: false`,
	}
	return strings.Join(lines, "\n") + "\n"
}
