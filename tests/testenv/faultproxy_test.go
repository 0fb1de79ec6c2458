package testenv_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// byteServer answers every line "N" with N bytes, on a loopback listener.
func byteServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var n int64
					if _, err := fmt.Fscanln(r, &n); err != nil {
						return
					}
					if _, err := io.CopyN(c, strings.NewReader(strings.Repeat("x", int(n))), n); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// ask sends "n" on c and reads the answer; it returns how many bytes came.
func ask(c net.Conn, n int64) (int64, error) {
	if _, err := fmt.Fprintln(c, n); err != nil {
		return 0, err
	}
	return io.CopyN(io.Discard, c, n)
}

func dial(t *testing.T, p *testenv.FaultProxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFaultProxy(t *testing.T) {
	p := testenv.StartFaultProxy(t, byteServer(t))

	c := dial(t, p)
	if got, err := ask(c, 1<<20); got != 1<<20 || err != nil {
		t.Fatalf("ask(1 MiB) through the proxy = %d, %v", got, err)
	}

	p.CutAfter(100 << 10)
	if got, err := ask(c, 1<<20); got != 1<<20 || err != nil {
		t.Errorf("a connection opened before CutAfter: ask = %d, %v; want it untouched", got, err)
	}
	cut := dial(t, p)
	if got, err := ask(cut, 1<<20); got != 100<<10 || err == nil {
		t.Errorf("ask(1 MiB) after CutAfter(100 KiB) = %d, %v; want 102400 bytes and an error", got, err)
	}
	p.CutAfter(0)

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if _, err := ask(dial(t, p), 1); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 200*time.Millisecond {
		t.Errorf("round trip with 100ms latency each way took %v, want at least 200ms", rtt)
	}
	p.SetLatency(0)

	p.SetRate(1 << 20)
	start = time.Now()
	if got, err := ask(dial(t, p), 512<<10); got != 512<<10 || err != nil {
		t.Fatalf("ask at 1 MiB/s = %d, %v", got, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("512 KiB at 1 MiB/s took %v, want about 500ms", d)
	}
	p.SetRate(0)

	p.Refuse(true)
	if _, err := ask(c, 10); err == nil {
		t.Errorf("an open connection still works after Refuse(true)")
	}
	// Refused is reset when accepted: the dial itself may see the reset.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		if got, err := ask(c, 10); err == nil {
			t.Errorf("a new connection while refusing got %d bytes, want an error", got)
		}
		c.Close()
	}
	p.Refuse(false)
	if got, err := ask(dial(t, p), 10); got != 10 || err != nil {
		t.Errorf("after Refuse(false): ask = %d, %v", got, err)
	}
	t.Logf("proxy counted %d connections, %d cut", p.Conns(), p.Cuts())
	// Cut: the one past CutAfter, the three still open when Refuse came, the one refused.
	if p.Conns() != 6 || p.Cuts() != 5 {
		t.Errorf("Conns, Cuts = %d, %d; want 6, 5", p.Conns(), p.Cuts())
	}
}

func TestFaultProxyStoreURL(t *testing.T) {
	p := testenv.StartFaultProxy(t, "127.0.0.1:1")
	got := p.StoreURL("s3://b/catalog?endpoint=127.0.0.1:9000&insecure=true&credentials=/tmp/c")
	if !strings.Contains(got, "endpoint="+strings.ReplaceAll(p.Addr(), ":", "%3A")) || !strings.HasPrefix(got, "s3://b/catalog?") || !strings.Contains(got, "insecure=true") {
		t.Errorf("StoreURL = %q, want the proxy %s as endpoint", got, p.Addr())
	}
}
