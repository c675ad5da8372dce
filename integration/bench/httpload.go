package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// leanHTTP is the load generator's HTTP/1.1 client, in the spirit of wrk:
// a fixed set of keep-alive connections, each request written with one
// write and its response parsed from a buffered reader on the calling
// goroutine. net/http's client adds two goroutines per connection and
// channel hand-offs per request; on a 2-CPU machine shared with the
// service under test that overhead is measured as the service's (the
// scenario reports the net/http client as a diagnostic row).
type leanHTTP struct {
	addr  string
	conns chan *leanConn
}

// leanConn is one keep-alive connection (nil conn: not dialled yet, or
// closed after an error).
type leanConn struct {
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
}

// newLeanHTTP returns a client for addr with up to n connections.
func newLeanHTTP(addr string, n int) *leanHTTP {
	c := &leanHTTP{addr: addr, conns: make(chan *leanConn, n)}
	for range n {
		c.conns <- &leanConn{}
	}
	return c
}

// close closes every connection; call it when no request is in flight.
func (c *leanHTTP) close() {
	for range cap(c.conns) {
		lc := <-c.conns
		if lc.conn != nil {
			lc.conn.Close()
		}
	}
}

// post sends "POST path" to host with the bearer token and body (a JSON
// document; nil for none) and returns the status and body.
func (c *leanHTTP) post(ctx context.Context, host, path, token string, body []byte) (int, []byte, error) {
	var lc *leanConn
	select {
	case lc = <-c.conns:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	defer func() { c.conns <- lc }()
	if lc.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		lc.conn, lc.r = conn, bufio.NewReaderSize(conn, 4096)
	}
	status, out, keep, err := lc.roundTrip(host, path, token, body)
	if err != nil || !keep {
		lc.conn.Close()
		lc.conn = nil
	}
	return status, out, err
}

// roundTrip writes one request and reads its response; keep is false when
// the server asked to close the connection.
func (lc *leanConn) roundTrip(host, path, token string, reqBody []byte) (status int, body []byte, keep bool, err error) {
	b := lc.buf[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nAuthorization: Bearer "...)
	b = append(b, token...)
	if len(reqBody) > 0 {
		b = append(b, "\r\nContent-Type: application/json"...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(reqBody)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, reqBody...)
	lc.buf = b
	if err := lc.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, nil, false, err
	}
	if _, err := lc.conn.Write(b); err != nil {
		return 0, nil, false, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(lc.r, nil)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read response: %w", err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, body, !resp.Close, nil
}
