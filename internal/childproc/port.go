package childproc

import (
	"fmt"
	"net"
)

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the server binds it, so callers retry once
// with a new port when the server reports the address in use.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
