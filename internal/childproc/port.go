package childproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports for servers are picked below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999 by default). A port the
// kernel hands out for ":0" comes from that range, and so does the local
// port of every outgoing connection: with many tests connecting at once,
// such a port is often taken again between FreePort's check and the
// server's bind. Below the range only another FreePort-style picker can
// race for it.
const (
	lowestPort    = 10000
	fallbackFirst = 32768 // the kernel's default start of the ephemeral range
)

var (
	portsMu sync.Mutex
	handed  = map[int]bool{} // ports this process already handed out
)

// FreePort returns a loopback TCP port that was free a moment ago, below
// the ephemeral port range and never the same twice in one process.
// Another process may still take it before the server binds it, so
// callers retry once with a new port when the server reports the address
// in use.
func FreePort() (int, error) {
	first := ephemeralStart()
	if first-lowestPort < 1000 {
		return kernelPort()
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := lowestPort + rand.IntN(first-lowestPort)
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		handed[port] = true
		return port, nil
	}
	return kernelPort()
}

// kernelPort asks the kernel for a free port.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallbackFirst
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return fallbackFirst
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return fallbackFirst
	}
	return n
}
