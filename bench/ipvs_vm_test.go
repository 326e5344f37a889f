package bench

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestParseProcIPVS reads /proc/net/ip_vs: virtual servers with their real servers, in
// hexadecimal, and counts the Services whose virtual server is complete.
func TestParseProcIPVS(t *testing.T) {
	const proc = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600001:0050 rr
  -> 0AF00000:1F90      Masq    1      0          0
  -> 0AF00001:1F90      Masq    1      0          0
TCP  0A600002:0050 rr
  -> 0AF00002:1F90      Masq    1      0          0
UDP  0A60000A:0035 rr
`
	tbl := parseProcIPVS(bufio.NewScanner(strings.NewReader(proc)))
	if got := tbl["TCP 10.96.0.1:80"]; len(got) != 2 || got[0] != "10.240.0.0:8080" || got[1] != "10.240.0.1:8080" {
		t.Errorf("10.96.0.1:80 has real servers %v", got)
	}
	if _, ok := tbl["UDP 10.96.0.10:53"]; !ok || len(tbl) != 3 {
		t.Errorf("parsed %v", tbl)
	}
	svcs := []VMService{
		{Name: "a", ClusterIP: "10.96.0.1", Port: 80, Endpoints: []string{"10.240.0.0", "10.240.0.1"}},
		{Name: "b", ClusterIP: "10.96.0.2", Port: 80, Endpoints: []string{"10.240.0.2", "10.240.0.3"}},
		{Name: "c", ClusterIP: "10.96.0.3", Port: 80, Endpoints: []string{"10.240.0.4"}},
	}
	if complete, present := completeServices(tbl, svcs); complete != 1 || present != 2 {
		t.Errorf("complete %d present %d, want 1 and 2", complete, present)
	}
}

// TestVMResultRoundTrip prints results as the payload does, amid console noise, and
// reads them back as the host does.
func TestVMResultRoundTrip(t *testing.T) {
	in := &IPVSRun{N: 100, Kernel: "6.1.0-test", Proxies: []*IPVSProxyRun{{Proxy: "portico", Cold: &IPVSCold{S: 1.5}}}}
	var out bytes.Buffer
	out.WriteString("=== vm: kernel 6.1.0\nvm-bench: portico at N=100\n")
	printVMResult(&out, in)
	out.WriteString("=== vm: exit=0\n[  12.3] reboot: Power down\n")
	got, err := ParseVMResult(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.N != 100 || got.Kernel != in.Kernel || got.Proxy("portico").Cold.S != 1.5 {
		t.Errorf("read back %+v", got)
	}
	if _, err := ParseVMResult("=== vm: exit=1\n"); err == nil {
		t.Error("no error for an output without results")
	}
}
