package api

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies are the --trusted-proxies networks: a peer in one of them
// may name the client in X-Forwarded-For. Nobody else may: a client that
// sends the header itself is still known by its socket address.
type trustedProxies []netip.Prefix

// ParseTrustedProxies parses a comma-separated list of CIDRs or single
// addresses (--trusted-proxies).
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, errors.New("--trusted-proxies: " + f + " is not a CIDR or an IP address")
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address of the client of r: the socket's peer, or, when
// the peer is a trusted proxy, the rightmost X-Forwarded-For hop that is not
// itself a trusted proxy (hops to its left were written by the client and
// prove nothing). A malformed hop ends the walk at the last trusted one.
func (t trustedProxies) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !t.contains(peer) {
		return r.RemoteAddr
	}
	hops, _ := ParseForwardedFor(r.Header.Values("X-Forwarded-For"))
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		client = hops[i]
		if !t.contains(client) {
			break
		}
	}
	if client == peer {
		return r.RemoteAddr
	}
	return client.Unmap().String()
}

// ParseForwardedFor returns the hops of X-Forwarded-For header values, left
// to right (several header lines are one list). A hop may carry a port
// ("203.0.113.7:4711", "[2001:db8::1]:443"). On a malformed hop it returns
// the hops to its right, which a trusted proxy wrote, and an error.
func ParseForwardedFor(values []string) ([]netip.Addr, error) {
	var fields []string
	for _, v := range values {
		fields = append(fields, strings.Split(v, ",")...)
	}
	hops := make([]netip.Addr, 0, len(fields))
	for i := len(fields) - 1; i >= 0; i-- {
		a, err := parseHop(strings.TrimSpace(fields[i]))
		if err != nil {
			reverse(hops)
			return hops, err
		}
		hops = append(hops, a)
	}
	reverse(hops)
	return hops, nil
}

func parseHop(f string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(f); err == nil {
		return a, nil
	}
	if ap, err := netip.ParseAddrPort(f); err == nil {
		return ap.Addr(), nil
	}
	return netip.Addr{}, errors.New("malformed X-Forwarded-For hop")
}

func reverse(a []netip.Addr) {
	for i, j := 0, len(a)-1; i < j; i, j = i+1, j-1 {
		a[i], a[j] = a[j], a[i]
	}
}

// hostOf is the address part of a RemoteAddr (with or without a port): the
// key of the per-address limits.
func hostOf(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
