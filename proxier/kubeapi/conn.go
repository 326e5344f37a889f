package kubeapi

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Connection to the API server. The list-watches of package proxier retry a request
// that fails for want of the API server within a fraction of a second; these settings
// bound how long a request can wait on a connection that is gone.
const (
	// DialTimeout bounds a TCP connection attempt (client-go's default is 30 s). While
	// the path to the API server drops packets, every attempt hangs this long, and once
	// the path is back the next attempt starts at most this plus one retry delay later
	// (the kernel's own SYN retransmissions, 1, 3, 7, 15 s after the first, would
	// otherwise set the pace). Two seconds leave room for one lost SYN.
	DialTimeout = 2 * time.Second
	// ReadIdleTimeout: after this long without a frame from the API server, the HTTP/2
	// client sends a PING (client-go's default is 30 s). Quiet watches receive a
	// bookmark only about once a minute, so it is pings that tell a live connection
	// from a dead one. A PING and its ACK are 17-byte frames that the API server's
	// HTTP/2 layer answers without a handler: one every 10 s from each idle node is
	// 500 a second for 5,000 nodes, next to nothing for the API server.
	ReadIdleTimeout = 10 * time.Second
	// PingTimeout: a PING unanswered this long closes the connection, and with it every
	// request on it (client-go's default is 15 s). A connection whose peer vanished
	// without a FIN or RST is noticed within ReadIdleTimeout + PingTimeout = 15 s
	// instead of 45 s; 5 s is far longer than any live API server takes to answer.
	PingTimeout = 5 * time.Second
)

// client-go's HTTP/2 health-check variables, read whenever it builds a transport.
const (
	envReadIdleTimeout = "HTTP2_READ_IDLE_TIMEOUT_SECONDS"
	envPingTimeout     = "HTTP2_PING_TIMEOUT_SECONDS"
)

// SetHealthCheckDefaults sets client-go's HTTP/2 connection health check to
// ReadIdleTimeout and PingTimeout through its environment variables
// (HTTP2_READ_IDLE_TIMEOUT_SECONDS, HTTP2_PING_TIMEOUT_SECONDS), except those that
// lookup finds already set: an administrator's values win. client-go reads them when
// it builds a transport, so call it before Sources. lookup and set are os.LookupEnv and
// os.Setenv outside tests.
func SetHealthCheckDefaults(lookup func(string) (string, bool), set func(key, value string) error) error {
	for _, v := range []struct {
		key string
		d   time.Duration
	}{{envReadIdleTimeout, ReadIdleTimeout}, {envPingTimeout, PingTimeout}} {
		if _, ok := lookup(v.key); ok {
			continue
		}
		if err := set(v.key, strconv.Itoa(int(v.d/time.Second))); err != nil {
			return fmt.Errorf("setting %s: %w", v.key, err)
		}
	}
	return nil
}

// lostConnection is the error of the Go HTTP/2 client for a connection that did not
// answer its health-check PING (golang.org/x/net/http2 does not export it).
const lostConnection = "http2: client connection lost"

// endLostWatches wraps a transport so that the body of a watch whose connection failed
// its health check ends with io.EOF. client-go reads a broken connection's "connection
// reset" or GOAWAY as the end of a watch and resumes it at once, from the last resource
// version, but turns this error into an error event: its reflector then waits its own
// backoff (0.8 s and more) and relists. The health check closes a connection at most once
// per ReadIdleTimeout + PingTimeout, so resuming at once cannot loop fast.
func endLostWatches(rt http.RoundTripper) http.RoundTripper { return lostWatchEnder{rt} }

// lostWatchEnder is endLostWatches' round tripper.
type lostWatchEnder struct{ rt http.RoundTripper }

// RoundTrip sends req and, for a watch, wraps the response body in lostAsEOF, read
// through a buffer (watchBody).
func (l lostWatchEnder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || req.URL.Query().Get("watch") != "true" {
		return resp, err
	}
	resp.Body = newWatchBody(lostAsEOF{resp.Body})
	return resp, nil
}

// watchReadBuffer is the size of a watch body's read buffer.
const watchReadBuffer = 64 << 10

// watchBody reads a watch's response body through a buffer. client-go reads a watch one
// event at a time, in reads of the frame's length and then of its body (about 1 KiB for
// an EndpointSlice), and Go's HTTP/2 client sends the API server a WINDOW_UPDATE frame,
// a TLS record and a write system call, for every 4 KiB that reads consume. The initial
// events of a watch-list at 10,000 Services are 15 MB: some 3,700 writes, which took
// about 0.15 s of CPU on each start. Through the buffer, one read takes whatever the
// connection has received (up to watchReadBuffer) and the updates are that much fewer.
// bufio.Reader reads the body at most once per call, so an event is never held back
// waiting for more.
type watchBody struct {
	*bufio.Reader
	io.Closer
}

func newWatchBody(body io.ReadCloser) watchBody {
	return watchBody{Reader: bufio.NewReaderSize(body, watchReadBuffer), Closer: body}
}

// WrappedRoundTripper returns the wrapped round tripper (client-go walks wrappers with
// it, e.g. to close idle connections).
func (l lostWatchEnder) WrappedRoundTripper() http.RoundTripper { return l.rt }

// lostAsEOF is a response body that reads a lost connection as its end.
type lostAsEOF struct{ io.ReadCloser }

func (b lostAsEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && strings.Contains(err.Error(), lostConnection) {
		return n, io.EOF
	}
	return n, err
}
