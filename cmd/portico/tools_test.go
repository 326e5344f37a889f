package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingNftExitsOne runs portico in nftables mode with a PATH on which nft is not: it
// exits 1 at once, before contacting the API server, saying what to install and which
// modes would work here.
func TestMissingNftExitsOne(t *testing.T) {
	fakeHost(t)
	srv, requests := apiServer(t)
	t.Setenv("PATH", t.TempDir())
	code, msg, _ := run(t, "--config="+writeConfig(t, "mode: nftables\n"), "--master="+srv.URL, "--hostname-override=node-a")
	want := "nftables mode needs the nft binary (Debian: apt-get install nftables), which is not installed"
	if code != exitError || !strings.Contains(msg, want) || !strings.Contains(msg, "modes that would work here: none") {
		t.Errorf("exit %d, error %q; want %d, %q and the modes that would work", code, msg, exitError, want)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests to the API server before failing", n)
	}
}

// TestMissingNftNamesWorkingModes: with iptables' programs on the PATH (and not nft), the
// error names iptables as a mode that would work.
func TestMissingNftNamesWorkingModes(t *testing.T) {
	fakeHost(t)
	dir := t.TempDir()
	for _, prog := range []string{"iptables-restore", "iptables-save", "ipset"} {
		if err := os.WriteFile(filepath.Join(dir, prog), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	err := checkTools(loadFile(t, "mode: nftables\n"))
	if err == nil || !strings.HasSuffix(err.Error(), "modes that would work here: iptables") {
		t.Errorf("checkTools: %v, want iptables named as a mode that would work", err)
	}
}

// TestToolsPresent: on this machine nft is installed and nftables mode passes the check.
func TestToolsPresent(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("this test needs nft on the PATH: %v", err)
	}
	if err := checkTools(loadFile(t, "mode: nftables\n")); err != nil {
		t.Errorf("checkTools: %v", err)
	}
}
