package testenv

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is a TCP proxy in front of a real server (MinIO) that injects
// the faults of a bad network on command: latency, a throttled link,
// connections cut mid-transfer and a server that refuses connections. Each
// setting applies from the moment it is made; the zero settings forward
// every byte as it comes.
type FaultProxy struct {
	target string
	ln     net.Listener
	done   chan struct{}
	wg     sync.WaitGroup

	latency  atomic.Int64 // time.Duration added to every forwarded piece
	cutAfter atomic.Int64 // server→client bytes before a new connection is cut; 0: never
	rate     atomic.Int64 // server→client bytes per second per connection; 0: unlimited
	refusing atomic.Bool

	conns, cuts atomic.Int64

	mu   sync.Mutex
	open map[*proxyConn]bool
}

// StartFaultProxy listens on a free port of 127.0.0.1 and forwards every
// connection to target (HOST:PORT). It is closed when the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p := &FaultProxy{target: target, ln: ln, done: make(chan struct{}), open: map[*proxyConn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's HOST:PORT, to use in place of the target's.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// StoreURL returns an s3:// store URL (as MinIO.URL makes them) with its
// endpoint replaced by the proxy's address.
func (p *FaultProxy) StoreURL(storeURL string) string {
	u, err := url.Parse(storeURL)
	if err != nil {
		panic("fault proxy: bad store URL " + storeURL)
	}
	q := u.Query()
	q.Set("endpoint", p.Addr())
	u.RawQuery = q.Encode()
	return u.String()
}

// SetLatency delays every piece of data, in both directions, by d; it
// adds latency without limiting throughput. A very long d stalls the
// connections: bytes stop flowing but nothing is closed.
func (p *FaultProxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// CutAfter makes every connection opened from now on be cut, both sides
// reset (RST), once n bytes have gone from the server to the client.
// 0 stops cutting new connections.
func (p *FaultProxy) CutAfter(n int64) { p.cutAfter.Store(n) }

// SetRate throttles server→client traffic to bytesPerSec on each
// connection; 0 is unlimited.
func (p *FaultProxy) SetRate(bytesPerSec int64) { p.rate.Store(bytesPerSec) }

// Refuse, while on, resets every new connection as soon as it is accepted
// and cuts the open ones; off, the proxy forwards again.
func (p *FaultProxy) Refuse(on bool) {
	p.refusing.Store(on)
	if !on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		p.cut(c)
	}
}

// Conns counts the connections accepted, refused ones included.
func (p *FaultProxy) Conns() int64 { return p.conns.Load() }

// Cuts counts the connections the proxy reset: cut after CutAfter bytes,
// cut by Refuse, or refused when accepted.
func (p *FaultProxy) Cuts() int64 { return p.cuts.Load() }

func (p *FaultProxy) close() {
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.close(false)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *FaultProxy) accept() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.conns.Add(1)
		client := conn.(*net.TCPConn)
		if p.refusing.Load() {
			p.cuts.Add(1)
			reset(client)
			continue
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client, server *net.TCPConn
	limit          int64 // server→client bytes before the cut; 0: none
	once           sync.Once
	closed         chan struct{}
}

// close closes both sides, resetting them with rst, and reports whether
// this call was the one that closed them.
func (c *proxyConn) close(rst bool) (closed bool) {
	c.once.Do(func() {
		if rst {
			c.client.SetLinger(0)
			c.server.SetLinger(0)
		}
		c.client.Close()
		c.server.Close()
		close(c.closed)
		closed = true
	})
	return closed
}

func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// cut resets c, counting it once.
func (p *FaultProxy) cut(c *proxyConn) {
	if c.close(true) {
		p.cuts.Add(1)
	}
}

func (p *FaultProxy) serve(client *net.TCPConn) {
	conn, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(client)
		return
	}
	c := &proxyConn{client: client, server: conn.(*net.TCPConn), limit: p.cutAfter.Load(), closed: make(chan struct{})}
	p.mu.Lock()
	select {
	case <-p.done: // closed while dialing: close has already swept p.open
		p.mu.Unlock()
		c.close(true)
		return
	default:
		p.open[c] = true
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.open, c)
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { p.forward(c, c.server, c.client, false) })
	p.forward(c, c.client, c.server, true)
	wg.Wait()
}

// piece is data read from one side, due at the other at a time.
type piece struct {
	b  []byte
	at time.Time
}

// forward copies src to dst, down for server→client, until either side
// closes; then it closes both. A reader goroutine stamps each piece with
// its due time, so latency delays the bytes without throttling them.
func (p *FaultProxy) forward(c *proxyConn, dst, src *net.TCPConn, down bool) {
	q := make(chan piece, 64)
	var wg sync.WaitGroup
	defer wg.Wait()      // the reader ends once the connection is closed,
	defer c.close(false) // which happens first
	wg.Go(func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				select {
				case q <- piece{b[:n], time.Now().Add(time.Duration(p.latency.Load()))}:
				case <-c.closed:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	var sent int64
	for pc := range q {
		if !p.wait(c, time.Until(pc.at)) || !p.deliver(c, dst, pc.b, down, &sent) {
			return
		}
	}
}

// deliver writes b to dst, throttled and cut as the settings say for
// server→client traffic, and reports whether the connection goes on.
func (p *FaultProxy) deliver(c *proxyConn, dst *net.TCPConn, b []byte, down bool, sent *int64) bool {
	for len(b) > 0 {
		part, rate := b, p.rate.Load()
		if down && rate > 0 {
			part = part[:min(int64(len(part)), max(rate/10, 1))] // a tenth of a second at a time
		}
		cut := down && c.limit > 0 && *sent+int64(len(part)) >= c.limit
		if cut {
			part = part[:c.limit-*sent]
		}
		n, err := dst.Write(part)
		*sent += int64(n)
		if cut {
			p.cut(c)
			return false
		}
		if err != nil || (down && rate > 0 && !p.wait(c, time.Duration(int64(n)*int64(time.Second)/rate))) {
			return false
		}
		b = b[n:]
	}
	return true
}

// wait sleeps for d unless the connection or the proxy closes first.
func (p *FaultProxy) wait(c *proxyConn, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closed:
		return false
	case <-p.done:
		return false
	}
}
