package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
)

// TestKeyedLimiterBoundedUnderFlood: a flood of distinct addresses never
// grows the table past its bound, and a key in debt is not forgotten while
// the table has room.
func TestKeyedLimiterBoundedUnderFlood(t *testing.T) {
	l := newKeyedLimiter(0.001, 1, 1000)
	if ok, _ := l.allow("victim"); !ok {
		t.Fatal("first request refused")
	}
	for i := range 500 {
		l.allow(fmt.Sprint("10.0.", i/256, ".", i%256))
	}
	if ok, wait := l.allow("victim"); ok || wait <= 0 {
		t.Fatalf("a key over its rate was allowed again (wait %v) while the table had room", wait)
	}
	for i := range 200_000 {
		l.allow(fmt.Sprint("flood-", i))
		if n := l.size(); n > 1000 {
			t.Fatalf("table grew to %d buckets after %d distinct keys, bound 1000", n, i+1)
		}
	}
}

func TestKeyedLimiterAllOrNothing(t *testing.T) {
	l := newKeyedLimiter(0.001, 2, 100)
	if ok, _, _ := l.allowN(map[string]int{"a": 1}); !ok {
		t.Fatal("refused")
	}
	if ok, denied, _ := l.allowN(map[string]int{"a": 2, "b": 2}); ok || denied != "a" {
		t.Fatalf("allowN = %v %q, want a denied", ok, denied)
	}
	// b's tokens were given back.
	if ok, _, _ := l.allowN(map[string]int{"b": 2}); !ok {
		t.Fatal("b's tokens were taken by a refused request")
	}
	if ok, _, wait := l.allowN(map[string]int{"c": 3}); ok || wait != 0 {
		t.Fatalf("over the burst: %v wait %v, want refused with no useful wait", ok, wait)
	}
}

func TestParseForwardedFor(t *testing.T) {
	cases := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{[]string{"203.0.113.1"}, "[203.0.113.1]", false},
		{[]string{"203.0.113.1, 10.0.0.1"}, "[203.0.113.1 10.0.0.1]", false},
		{[]string{"203.0.113.1", "10.0.0.1,10.0.0.2"}, "[203.0.113.1 10.0.0.1 10.0.0.2]", false},
		{[]string{"[2001:db8::1]:443, 198.51.100.2:80"}, "[2001:db8::1 198.51.100.2]", false},
		{[]string{"2001:db8::2"}, "[2001:db8::2]", false},
		{[]string{"unknown, 10.0.0.1"}, "[10.0.0.1]", true},
		{[]string{"10.0.0.1, garbage"}, "[]", true},
		{[]string{""}, "[]", true},
	}
	for _, c := range cases {
		got, err := ParseForwardedFor(c.in)
		if fmt.Sprint(got) != c.want || (err != nil) != c.wantErr {
			t.Errorf("ParseForwardedFor(%q) = %v, %v; want %s (error %v)", c.in, got, err, c.want, c.wantErr)
		}
	}
}

func TestClientAddr(t *testing.T) {
	tp := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct{ peer, xff, want string }{
		{"198.51.100.9:5000", "203.0.113.1", "198.51.100.9:5000"}, // untrusted peer: header ignored
		{"10.1.2.3:5000", "", "10.1.2.3:5000"},
		{"10.1.2.3:5000", "203.0.113.1", "203.0.113.1"},
		{"10.1.2.3:5000", "6.6.6.6, 203.0.113.1, 10.4.4.4", "203.0.113.1"}, // the client's own hop is not believed
		{"10.1.2.3:5000", "10.4.4.4, 10.5.5.5", "10.4.4.4"},                // all proxies: the leftmost
		{"10.1.2.3:5000", "203.0.113.1, junk", "10.1.2.3:5000"},            // a malformed hop a proxy would not write
		{"[::1]:5000", "2001:db8::7", "2001:db8::7"},
		{"[::ffff:10.1.2.3]:5000", "203.0.113.5", "203.0.113.5"},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := tp.clientAddr(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %q, want %q", c.peer, c.xff, got, c.want)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,")
	if err != nil || fmt.Sprint(got) != "[10.0.0.0/8 192.0.2.1/32 2001:db8::/32]" {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := ParseTrustedProxies("10.0.0.0/33"); err == nil {
		t.Fatal("a bad CIDR was accepted")
	}
}
