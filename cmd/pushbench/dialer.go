package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT: bind(2) to an address with
// port 0 then defers the choice of port to connect(2), which only needs the
// 4-tuple to be unique. Without it every source address is limited to the
// ephemeral range once for all destinations.
const ipBindAddressNoPort = 24

// dialer opens loopback TCP connections, spreading them over the configured
// 127.0.0.x source addresses. Connections are closed with SO_LINGER 0 so a
// run leaves no TIME_WAIT sockets behind to starve the next one of ports.
type dialer struct {
	sources []net.IP
	next    atomic.Uint64
	timeout time.Duration
}

// parseSourceIPs parses "127.0.0.1-127.0.0.20" or "127.0.0.1,127.0.0.5".
func parseSourceIPs(spec string) ([]net.IP, error) {
	if spec == "" {
		return nil, nil
	}
	var out []net.IP
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("--source-ips: %v", err)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(hi); err != nil {
				return nil, fmt.Errorf("--source-ips: %v", err)
			}
		}
		if !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("--source-ips: %q is not an ascending IPv4 range", part)
		}
		for ip := a; ; ip = ip.Next() {
			if !ip.IsLoopback() {
				return nil, fmt.Errorf("--source-ips: %v is not a loopback address", ip)
			}
			out = append(out, net.IP(ip.AsSlice()))
			if ip == b || len(out) > 1<<16 {
				break
			}
		}
	}
	return out, nil
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
	if n := len(d.sources); n > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[d.next.Add(1)%uint64(n)]}
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := nd.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// checkLoopback refuses any destination that is not a loopback IP literal or
// "localhost": pushbench never sends traffic off the host.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback address %q (pushbench is loopback only)", hostport)
	}
	return nil
}
