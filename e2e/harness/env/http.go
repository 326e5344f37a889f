package env

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"time"
)

// HTTPAnswer is one HTTP answer read in full (its body up to 64 KiB).
type HTTPAnswer struct {
	// Status is the response's status code.
	Status int
	// Header is the response's header.
	Header http.Header
	// Body is the response's body.
	Body []byte
}

// HTTPGet GETs http://addr/ from inside the network namespace from, on a new connection,
// and reads the whole answer; timeout bounds the request.
func (e *Env) HTTPGet(ctx context.Context, from string, addr netip.AddrPort, timeout time.Duration) (HTTPAnswer, error) {
	c := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: e.Topo.Dialer(from), DisableKeepAlives: true},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/", nil)
	if err != nil {
		return HTTPAnswer{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return HTTPAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return HTTPAnswer{}, err
	}
	return HTTPAnswer{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}
