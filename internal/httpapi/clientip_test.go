package httpapi

import (
	"net/http"
	"testing"
)

// TestClientAddrReadsTheProxysForms: behind a proxy, the client address
// header holds an IP, an IP with a port, or an IPv6 address in brackets
// (RFC 7239's form); each is the client's, counted per /64 for IPv6. One
// that does not parse falls back to the peer, the proxy itself.
func TestClientAddrReadsTheProxysForms(t *testing.T) {
	t.Parallel()
	h := &Handler{opts: Options{ClientIPHeader: "X-Real-IP"}}
	for _, tc := range []struct{ header, want string }{
		{"198.51.100.7", "198.51.100.7"},
		{"198.51.100.7:50123", "198.51.100.7"},
		{"2001:db8::1", "2001:db8::/64"},
		{"[2001:db8::1]", "2001:db8::/64"},
		{"[2001:db8::1]:443", "2001:db8::/64"},
		{"10.0.0.1, 203.0.113.9", "203.0.113.9"},
		{"[198.51.100.7]", "192.0.2.1"}, // brackets are for IPv6 only
		{"[2001:db8::1", "192.0.2.1"},
		{"not-an-ip", "192.0.2.1"},
	} {
		r, err := http.NewRequest(http.MethodGet, "http://acme.example.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.RemoteAddr = "192.0.2.1:4711"
		r.Header.Set("X-Real-IP", tc.header)
		if got := h.clientAddr(r); got != tc.want {
			t.Errorf("X-Real-IP %q: client address %q, want %q", tc.header, got, tc.want)
		}
	}
}
