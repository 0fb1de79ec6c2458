package netboot

import (
	"net/netip"
	"sync"
	"time"
)

// offerHold is how long an offered address stays kept for its client.
const offerHold = 30 * time.Second

// lease is one address given to one MAC.
type lease struct {
	addr    netip.Addr
	expires time.Time
}

// leases are DHCPFull's addresses: one per MAC, kept in memory (a restart
// forgets them; clients keep their addresses by asking for them again).
type leases struct {
	first, last netip.Addr
	ttl         time.Duration
	now         func() time.Time

	mu       sync.Mutex
	byMAC    map[string]lease
	owner    map[netip.Addr]string
	declined map[netip.Addr]time.Time
}

func newLeases(d DHCPConfig) *leases {
	return &leases{first: d.First, last: d.Last, ttl: d.Lease, now: time.Now,
		byMAC: map[string]lease{}, owner: map[netip.Addr]string{}, declined: map[netip.Addr]time.Time{}}
}

// offer returns the address to offer mac: its lease, else the address it
// asks for if free, else the first free one; invalid when none is free.
func (l *leases) offer(mac string, want netip.Addr) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if cur, ok := l.byMAC[mac]; ok && now.Before(cur.expires) {
		return cur.addr
	}
	addr := netip.Addr{}
	if l.free(want, now) {
		addr = want
	}
	for a := l.first; !addr.IsValid() && a.IsValid() && !l.last.Less(a); a = a.Next() {
		if l.free(a, now) {
			addr = a
		}
	}
	if addr.IsValid() {
		l.set(mac, addr, now.Add(offerHold))
	}
	return addr
}

// request binds addr to mac for a lease time if addr is mac's (offered or
// leased) or free, and reports whether it did.
func (l *leases) request(mac string, addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.owner[addr] != mac && !l.free(addr, now) {
		return false
	}
	l.set(mac, addr, now.Add(l.ttl))
	return true
}

// release ends mac's lease of addr.
func (l *leases) release(mac string, addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owner[addr] == mac {
		delete(l.owner, addr)
		delete(l.byMAC, mac)
	}
}

// decline keeps addr, which a client found in use, from being offered for
// a lease time.
func (l *leases) decline(mac string, addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owner[addr] == mac {
		delete(l.owner, addr)
		delete(l.byMAC, mac)
		l.declined[addr] = l.now().Add(l.ttl)
	}
}

// inRange reports whether addr is one of the addresses leased.
func (l *leases) inRange(addr netip.Addr) bool {
	return addr.Is4() && !addr.Less(l.first) && !l.last.Less(addr)
}

// free reports whether addr can be given out; l.mu is held.
func (l *leases) free(addr netip.Addr, now time.Time) bool {
	if !l.inRange(addr) || now.Before(l.declined[addr]) {
		return false
	}
	mac, ok := l.owner[addr]
	return !ok || !now.Before(l.byMAC[mac].expires)
}

// set gives addr to mac until expires; l.mu is held.
func (l *leases) set(mac string, addr netip.Addr, expires time.Time) {
	if old, ok := l.byMAC[mac]; ok && old.addr != addr {
		delete(l.owner, old.addr)
	}
	if prev, ok := l.owner[addr]; ok && prev != mac {
		delete(l.byMAC, prev)
	}
	l.byMAC[mac] = lease{addr: addr, expires: expires}
	l.owner[addr] = mac
}
