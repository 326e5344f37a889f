package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// header starts every test document.
const header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

// logSink captures log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func (s *logSink) contains(parts ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range s.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func newTestLogger() (klog.Logger, *logSink) {
	sink := &logSink{}
	logger := funcr.New(func(prefix, args string) {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		sink.lines = append(sink.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
	return logger, sink
}

// writeFile writes content to a temporary file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadArgs parses args with a fresh flag set and calls Load.
func loadArgs(t *testing.T, args ...string) (*Config, *logSink, error) {
	t.Helper()
	var f Flags
	fs := pflag.NewFlagSet("portico", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	logger, sink := newTestLogger()
	cfg, err := Load(&f, fs, logger)
	return cfg, sink, err
}

// loadDoc writes doc to a file and loads it with --config plus args.
func loadDoc(t *testing.T, doc string, args ...string) (*Config, *logSink, error) {
	t.Helper()
	path := writeFile(t, doc)
	return loadArgs(t, append([]string{"--config=" + path}, args...)...)
}

// mustLoad is loadArgs that fails the test on error.
func mustLoad(t *testing.T, args ...string) (*Config, *logSink) {
	t.Helper()
	cfg, sink, err := loadArgs(t, args...)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return cfg, sink
}

// mustLoadDoc is loadDoc that fails the test on error.
func mustLoadDoc(t *testing.T, doc string, args ...string) (*Config, *logSink) {
	t.Helper()
	cfg, sink, err := loadDoc(t, doc, args...)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return cfg, sink
}
