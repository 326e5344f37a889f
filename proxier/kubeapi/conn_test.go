package kubeapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func TestSetHealthCheckDefaults(t *testing.T) {
	env := map[string]string{envPingTimeout: "7"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	set := func(k, v string) error { env[k] = v; return nil }
	if err := SetHealthCheckDefaults(lookup, set); err != nil {
		t.Fatal(err)
	}
	if env[envReadIdleTimeout] != "10" || env[envPingTimeout] != "7" {
		t.Errorf("environment %v, want %s=10 (portico's default) and %s=7 (the administrator's)", env, envReadIdleTimeout, envPingTimeout)
	}
	failing := func(string, string) error { return errors.New("read-only") }
	if err := SetHealthCheckDefaults(func(string) (string, bool) { return "", false }, failing); err == nil {
		t.Error("a failing setenv was not reported")
	}
}

// silentProxy forwards TCP connections on loopback to target until it is silenced: from
// then on it reads and discards what either side sends and forwards nothing, keeping
// every socket open, as a path whose far end vanished without a FIN or RST.
type silentProxy struct {
	ln       net.Listener
	target   string
	silenced atomic.Bool
	accepted atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
}

func newSilentProxy(t *testing.T, target string) *silentProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *silentProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

func (p *silentProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			_ = dst.Close()
			return
		}
		if !p.silenced.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

func (p *silentProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// watchServer is an HTTP/2 API server whose watch of Services sends one ADDED event and
// then nothing; lists of every kind answer an empty list.
func watchServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var h2 atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") != "true" {
			_ = json.NewEncoder(w).Encode(metav1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}})
			return
		}
		svc, _ := json.Marshal(corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "5"}})
		_ = json.NewEncoder(w).Encode(metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Raw: svc}})
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		close(done)
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, &h2
}

// TestDeadConnectionEndsWatch: when the path to the API server goes silent, the HTTP/2
// health check (here 1 s + 1 s) closes the connection and the watch ends as a watch the
// server closed, without an error event, so that client-go's reflector resumes it at once.
func TestDeadConnectionEndsWatch(t *testing.T) {
	t.Setenv(envReadIdleTimeout, "1")
	t.Setenv(envPingTimeout, "1")
	srv, h2 := watchServer(t)
	proxy := newSilentProxy(t, srv.Listener.Addr().String())
	src, err := Sources(&rest.Config{Host: "https://" + proxy.ln.Addr().String(), TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	w, err := cache.ToListerWatcherWithContext(src.Services).WatchWithContext(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := <-w.ResultChan(); ev.Type != watch.Added {
		t.Fatalf("first event %v, want ADDED", ev)
	}
	if h2.Load() == 0 {
		t.Fatal("the watch did not use HTTP/2")
	}
	proxy.silenced.Store(true)
	silent := time.Now()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if ok {
				t.Fatalf("after the path went silent: event %s %v, want the watch to end without one", ev.Type, ev.Object)
			}
			took := time.Since(silent)
			if took < time.Second || took > 4*time.Second {
				t.Errorf("the watch ended %v after the path went silent, want after the 1 s + 1 s health check", took)
			}
			t.Logf("the watch ended %v after the path went silent", took.Round(time.Millisecond))
			return
		case <-time.After(6 * time.Second):
			t.Fatal("the watch is still open 6 s after the path went silent")
		}
	}
}

// TestSourcesShareOneConnection: the four list-watches, over three API groups, use one
// connection to the API server.
func TestSourcesShareOneConnection(t *testing.T) {
	srv, _ := watchServer(t)
	proxy := newSilentProxy(t, srv.Listener.Addr().String())
	src, err := Sources(&rest.Config{Host: "https://" + proxy.ln.Addr().String(), TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, lw := range []cache.ListerWatcher{src.Services, src.EndpointSlices, src.Nodes, src.ServiceCIDRs} {
		if _, err := cache.ToListerWatcherWithContext(lw).ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := proxy.accepted.Load(); n != 1 {
		t.Errorf("%d connections to the API server, want 1", n)
	}
}

// sizeRecorder is a body that records the buffer size of each Read and answers it with
// at most chunk bytes of what is left.
type sizeRecorder struct {
	data  []byte
	chunk int
	asked []int
}

func (s *sizeRecorder) Read(p []byte) (int, error) {
	s.asked = append(s.asked, len(p))
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

func (s *sizeRecorder) Close() error { return nil }

// TestWatchBodyReadsInLargePieces: read the way client-go reads a watch (a 4-byte length,
// then the frame), a watch body asks the connection for watchReadBuffer bytes at a time,
// so that the HTTP/2 client acknowledges the data in few WINDOW_UPDATE frames, and asks it
// at most once per read, so that an event is never held back waiting for more.
func TestWatchBodyReadsInLargePieces(t *testing.T) {
	const frames, size = 200, 1000
	var stream []byte
	for i := range frames {
		stream = binary.BigEndian.AppendUint32(stream, size)
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, size)...)
	}
	rec := &sizeRecorder{data: stream, chunk: 16 << 10}
	body := newWatchBody(rec)
	hdr, frame := make([]byte, 4), make([]byte, size)
	for i := range frames {
		before := len(rec.asked)
		if _, err := io.ReadFull(body, hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(body, frame); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint32(hdr) != size || frame[0] != byte(i) || frame[size-1] != byte(i) {
			t.Fatalf("frame %d read wrong", i)
		}
		if reads := len(rec.asked) - before; reads > 2 {
			t.Fatalf("frame %d took %d reads of the connection, want at most 2", i, reads)
		}
	}
	for i, n := range rec.asked {
		if n < watchReadBuffer/2 {
			t.Errorf("read %d of the connection asked for %d bytes, want about %d", i, n, watchReadBuffer)
		}
	}
	if want := len(stream)/(16<<10) + 1; len(rec.asked) > want {
		t.Errorf("%d reads of the connection for %d bytes in chunks of 16 KiB, want at most %d", len(rec.asked), len(stream), want)
	}
}
