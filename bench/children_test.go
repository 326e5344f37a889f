package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestNotExecuted: a child running its parent's program (as between a fork and its exec)
// is recognised, a child running another program is not.
func TestNotExecuted(t *testing.T) {
	if os.Getenv("BENCH_TEST_SLEEP") != "" {
		time.Sleep(10 * time.Second)
		return
	}
	start := func(cmd *exec.Cmd) *exec.Cmd {
		t.Helper()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		time.Sleep(200 * time.Millisecond) // past its exec
		return cmd
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	same := exec.Command(self, "-test.run=^TestNotExecuted$")
	same.Env = append(os.Environ(), "BENCH_TEST_SLEEP=1")
	other := exec.Command("sleep", "10")
	if got := notExecuted(start(same).Process.Pid); !got {
		t.Error("a child running the parent's program: notExecuted = false")
	}
	if got := notExecuted(start(other).Process.Pid); got {
		t.Error("a child running sleep: notExecuted = true")
	}
	if notExecuted(1 << 30) {
		t.Error("a process that does not exist: notExecuted = true")
	}
}
