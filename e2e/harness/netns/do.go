package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	vnetns "github.com/vishvananda/netns"
)

// DoIn runs fn on a fresh goroutine locked to its OS thread, switched into the namespace
// h, and waits for it. The thread switches back afterwards; when that fails the thread
// stays locked and the runtime discards it when the goroutine ends, so no other
// goroutine ever runs in the wrong namespace.
func DoIn(h vnetns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: switch back: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// createNamed creates a namespace bind mounted at RunDir/name and returns an open handle
// to it. The calling goroutine's thread is not affected.
func createNamed(name string) (vnetns.NsHandle, error) {
	h := vnetns.None()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err = vnetns.NewNamed(name) // switches this thread into the new namespace
		if serr := vnetns.Set(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("switch back: %w", serr))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	err := <-errc
	return h, err
}

// deleteNamed unmounts and removes a named namespace. A missing one is not an error.
func deleteNamed(name string) error {
	if _, err := os.Stat(RunDir + "/" + name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := vnetns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: delete %s: %w", name, err)
	}
	return nil
}

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Dialer returns a DialFunc whose sockets are created inside a namespace, so that a
// process in the root namespace can reach addresses only that namespace can route to.
// Only the socket's creation and connection happen on the switched thread.
func (t *Topology) Dialer(name string) DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := t.Do(name, func() error {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, address)
			conn = c
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("netns: dial %s from %s: %w", address, t.Name(name), err)
		}
		return conn, nil
	}
}
