package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/config"
)

// applyLogging applies the logging section of the configuration to klog, as kube-proxy
// does: -v and --vmodule given on the command line win over logging.verbosity and
// logging.vmodule; logging.flushFrequency sets how often klog flushes.
func applyLogging(fs *pflag.FlagSet, l config.LoggingConfig) error {
	if !fs.Changed("v") {
		if err := fs.Set("v", strconv.Itoa(l.Verbosity)); err != nil {
			return fmt.Errorf("logging.verbosity: %d: %w", l.Verbosity, err)
		}
	}
	if !fs.Changed("vmodule") {
		if err := fs.Set("vmodule", l.VModule); err != nil {
			return fmt.Errorf("logging.vmodule: %q: %w", l.VModule, err)
		}
	}
	if l.FlushFrequency > 0 {
		klog.StartFlushDaemon(l.FlushFrequency)
	}
	return nil
}
