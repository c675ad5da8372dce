package devstack

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// listen opens addr, turning "address already in use" into one clear line
// that names the flag to change.
func listen(addr, flagName string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: address already in use: stop the process holding the port, or pass another address with -%s", addr, flagName)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s (-%s): %w", addr, flagName, err)
	}
	return ln, nil
}
