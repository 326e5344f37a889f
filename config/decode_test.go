package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestLenientDecoding(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantLog string
	}{
		{"unknown field", header + "mode: nftables\nfoo: bar\n", `unknown field \"foo\"`},
		{"unknown nested field", header + "mode: nftables\niptables:\n  masqueradeBitz: 3\n", `unknown field \"iptables.masqueradeBitz\"`},
		{"duplicate field", header + "mode: iptables\nmode: nftables\n", `\"mode\" already set`},
		{"wrong case", header + "mode: nftables\nMode: ipvs\n", `unknown field \"Mode\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, logs, err := loadDoc(t, tt.doc)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.Mode != ModeNFTables {
				t.Errorf("Mode = %q, want nftables", cfg.Mode)
			}
			if !logs.contains("strict decoding", "lenient", tt.wantLog) {
				t.Errorf("no warning containing %s:\n%s", tt.wantLog, logs)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"wrong kind", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n",
			`unsupported apiVersion "kubeproxy.config.k8s.io/v1alpha1" and kind "KubeletConfiguration"`},
		{"wrong apiVersion", "apiVersion: kubeproxy.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n",
			`unsupported apiVersion "kubeproxy.config.k8s.io/v1beta1"`},
		{"missing kind", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: ipvs\n", "apiVersion and kind must be set"},
		{"empty file", "", "apiVersion and kind must be set"},
		{"config map", "apiVersion: v1\nkind: ConfigMap\n", "is a ConfigMap"},
		{"bad YAML", header + "mode: [\n", "parsing YAML"},
		{"wrong type", header + "mode: [ipvs]\n", "decoding"},
		{"bad duration", header + "configSyncPeriod: soon\n", "decoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadDoc(t, tt.doc)
			var fe *FileError
			if !errors.As(err, &fe) || !IsUsageError(err) {
				t.Fatalf("err = %v (%T), want a *FileError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "config.conf") {
				t.Errorf("err = %q, want it to contain %q and the path", err, tt.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, _, err := loadArgs(t, "--config="+filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !IsUsageError(err) {
		t.Errorf("err = %v, want a usage error wrapping ErrNotExist", err)
	}
}

func TestJSONDocument(t *testing.T) {
	cfg, logs := mustLoadDoc(t, `{"apiVersion":"kubeproxy.config.k8s.io/v1alpha1","kind":"KubeProxyConfiguration","mode":"ipvs"}`)
	if cfg.Mode != ModeIPVS || logs.contains("lenient") {
		t.Errorf("Mode = %q\n%s", cfg.Mode, logs)
	}
}
