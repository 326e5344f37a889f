package backendtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EnterFreshNetns moves the calling goroutine's thread into a new, empty network namespace
// and returns the function that moves it back (call it with defer). Kernel tests program
// the kernel with commands (nft, iptables-restore, ...) started with os/exec, and a child
// process starts in the network namespace of the thread that forks it: a test locks its
// goroutine to its thread, enters the namespace and does everything from that goroutine
// (no t.Run subtests, no other goroutines). Before returning, EnterFreshNetns checks that
// a child process really runs in the new namespace, so that nothing is ever written into
// the machine's own. tools are the commands the test needs; a missing one fails the test
// (as does not running as root): a kernel test never passes by skipping.
func EnterFreshNetns(t *testing.T, tools ...string) func() {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("kernel tests must run as root: they create a network namespace and program the kernel in it " +
			"(run them with `make test` as root)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this kernel test needs %s: %v (make deps installs it)", tool, err)
		}
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current network namespace: %v", err)
	}
	fresh, err := netns.New() // also switches this thread into it
	if err != nil {
		_ = netns.Set(orig) // New may fail after switching
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("creating a network namespace: %v", err)
	}
	restore := func() {
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: the runtime discards it when the goroutine ends,
			// so nothing else ever runs in the test's namespace.
			t.Errorf("returning to the original network namespace: %v", err)
			return
		}
		fresh.Close()
		orig.Close()
		runtime.UnlockOSThread()
	}
	if err := checkChildNetns(orig, fresh); err != nil {
		restore()
		t.Fatalf("%v; refusing to touch the kernel", err)
	}
	return restore
}

// checkChildNetns checks the assumption everything rests on: a command started from the
// locked thread runs in the fresh namespace, not in orig.
func checkChildNetns(orig, fresh netns.NsHandle) error {
	origIno, err := nsInode(orig)
	if err != nil {
		return err
	}
	freshIno, err := nsInode(fresh)
	if err != nil {
		return err
	}
	out, err := exec.Command("readlink", "/proc/self/ns/net").CombinedOutput()
	got, want := strings.TrimSpace(string(out)), fmt.Sprintf("net:[%d]", freshIno)
	if err != nil || got != want || freshIno == origIno {
		return fmt.Errorf("a child process of the locked thread is in network namespace %q (err %v), want the new one %s (the original is net:[%d])",
			got, err, want, origIno)
	}
	return nil
}

func nsInode(h netns.NsHandle) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return 0, fmt.Errorf("stat of a network namespace: %w", err)
	}
	return st.Ino, nil
}
