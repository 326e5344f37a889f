package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// origins maps a v1alpha1 JSON field path (e.g. "iptables.syncPeriod") to
// the command-line flag (e.g. "--iptables-sync-period") its value came
// from. Fields not in the map came from the file or a default.
type origins map[string]string

// Load builds the effective configuration from the parsed flags and, if
// --config is given, the configuration file, following kube-proxy's
// precedence rules:
//
//   - Without --config, kube-proxy's defaults are overridden by the flags
//     that were explicitly set.
//   - With --config, the file (plus defaults) is authoritative and, as in
//     kube-proxy, the flags that map to configuration fields are ignored
//     (a log line names each ignored flag that was set). Exceptions:
//     --hostname-override (when non-empty), --master, --cleanup,
//     --init-only, --write-config-to, portico's own --kube-api-compression
//     and, unlike kube-proxy, --proxy-mode/--mode, which take precedence
//     over the file's mode.
//   - Without any mode, iptables is used and a hint recommends nftables.
//
// Reading or decoding problems are returned as *FileError, invalid values
// as *ValidationError listing all problems.
func Load(f *Flags, fs *pflag.FlagSet, logger klog.Logger) (*Config, error) {
	if f == nil || fs == nil {
		return nil, errors.New("config.Load: nil flags or flag set")
	}
	origin := origins{}
	obj := &kubeproxyconfigv1alpha1.KubeProxyConfiguration{}
	if f.ConfigFile != "" {
		var err error
		if obj, err = readConfigFile(f.ConfigFile, logger); err != nil {
			return nil, err
		}
	}
	setDefaults(obj)
	modeSource := resolveMode(f, fs, obj, origin, logger)
	if f.ConfigFile != "" {
		warnIgnoredFlags(f, fs, obj, logger)
	} else {
		applyFlags(f, fs, obj, origin, logger)
	}
	var problems []string
	if p := applyHostnameOverride(f, obj, origin); p != "" {
		problems = append(problems, p)
	}
	setPlatformDefaults(obj)
	problems = append(problems, validate(obj, origin)...)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	cfg := buildConfig(obj)
	cfg.Mode, cfg.ModeSource, cfg.File = string(obj.Mode), modeSource, f.ConfigFile
	cfg.Master, cfg.Cleanup, cfg.InitOnly, cfg.WriteConfigTo = f.Master, f.Cleanup, f.InitOnly, f.WriteConfigTo
	cfg.APICompression = f.APICompression
	return cfg, nil
}

// modeFlagName returns the mode flag that was set ("--proxy-mode" or
// "--mode"), or "" if neither was set to a non-empty value.
func modeFlagName(f *Flags, fs *pflag.FlagSet) string {
	if f.Mode == "" || (!fs.Changed("proxy-mode") && !fs.Changed("mode")) {
		return ""
	}
	if f.modeFlag != "" {
		return "--" + f.modeFlag
	}
	if fs.Changed("mode") {
		return "--mode"
	}
	return "--proxy-mode"
}

// resolveMode sets obj.Mode: an explicitly set --proxy-mode/--mode wins,
// then the file's mode, then the iptables default. It returns the source.
func resolveMode(f *Flags, fs *pflag.FlagSet, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, origin origins, logger klog.Logger) string {
	if name := modeFlagName(f, fs); name != "" {
		if f.ConfigFile != "" && string(obj.Mode) != f.Mode {
			logger.Info("The proxy mode given on the command line overrides the config file",
				"flag", name, "flagMode", f.Mode, "fileMode", string(obj.Mode), "file", f.ConfigFile)
		}
		obj.Mode = kubeproxyconfigv1alpha1.ProxyMode(f.Mode)
		origin["mode"] = name
		return ModeSourceFlag
	}
	if obj.Mode != "" {
		return ModeSourceFile
	}
	obj.Mode = ModeIPTables
	logger.Info("No proxy mode configured, defaulting to iptables; nftables is the recommended mode (set 'mode: nftables' in the config file or pass --proxy-mode=nftables)")
	return ModeSourceDefault
}

// applyHostnameOverride applies a non-empty --hostname-override, which
// kube-proxy honours even with --config. It returns a problem message for
// a blank value.
func applyHostnameOverride(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, origin origins) string {
	if f.HostnameOverride == "" {
		return ""
	}
	name := strings.TrimSpace(f.HostnameOverride)
	if name == "" {
		return fmt.Sprintf("--hostname-override: %q must not be blank", f.HostnameOverride)
	}
	obj.HostnameOverride = strings.ToLower(name)
	origin["hostnameOverride"] = "--hostname-override"
	return ""
}

// warnIgnoredFlags logs every explicitly set flag that is ignored because
// a config file is used.
func warnIgnoredFlags(f *Flags, fs *pflag.FlagSet, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, logger klog.Logger) {
	scratch := obj.DeepCopy()
	for _, b := range flagBindings(f, scratch) {
		if fs.Changed(b.flag) {
			logger.Info("Ignoring command-line flag because --config is given (as kube-proxy does)",
				"flag", "--"+b.flag, "file", f.ConfigFile)
		}
	}
}

// applyFlags applies the explicitly set flags on top of the defaults, when
// no config file is used.
func applyFlags(f *Flags, fs *pflag.FlagSet, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, origin origins, logger klog.Logger) {
	setFlagSyncBaseline(obj)
	for _, b := range flagBindings(f, obj) {
		if !fs.Changed(b.flag) {
			continue
		}
		if b.apply == nil {
			logger.Info("Ignoring command-line flag that does not apply to the proxy mode",
				"flag", "--"+b.flag, "mode", string(obj.Mode))
			continue
		}
		b.apply()
		if b.path != "" {
			origin[b.path] = "--" + b.flag
		}
	}
	applyDeprecatedPorts(f, fs, obj, origin)
}

// setFlagSyncBaseline mirrors kube-proxy without a config file: the sync
// periods of the selected mode start from the iptables defaults (so ipvs
// mode gets a 1s minSyncPeriod, unlike an ipvs config file).
func setFlagSyncBaseline(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	sync, minSync := modeSyncPeriods(obj)
	*sync, *minSync = obj.IPTables.SyncPeriod, obj.IPTables.MinSyncPeriod
}

// applyDeprecatedPorts combines --healthz-port/--metrics-port with the
// server addresses as kube-proxy does without a config file: port 0
// disables the server, otherwise the port is added to a bare IP.
func applyDeprecatedPorts(f *Flags, fs *pflag.FlagSet, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, origin origins) {
	if f.WriteConfigTo != "" {
		return
	}
	apply := func(addr *string, port int32, path, portFlag string) {
		before := *addr
		if port == 0 {
			*addr = ""
		} else {
			*addr = appendPortIfNeeded(*addr, int(port))
		}
		if *addr != before && fs.Changed(portFlag) {
			origin[path] = "--" + portFlag
		}
	}
	healthzPort, metricsPort := int32(defaultHealthzPort), int32(defaultMetricsPort)
	if fs.Changed("healthz-port") {
		healthzPort = f.HealthzPort
	}
	if fs.Changed("metrics-port") {
		metricsPort = f.MetricsPort
	}
	apply(&obj.HealthzBindAddress, healthzPort, "healthzBindAddress", "healthz-port")
	apply(&obj.MetricsBindAddress, metricsPort, "metricsBindAddress", "metrics-port")
}
