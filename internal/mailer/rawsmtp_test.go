package mailer_test

import (
	"bufio"
	"net"
	"testing"
)

// rawSMTPServer serves one connection on a loopback port, as a mail server
// that misbehaves in ways smtptest's does not: it sends the greeting, then
// hands every line the client sends to answer, which writes the replies it
// wants (none: the server hangs). closed is closed once the client closed
// its connection (or the test ended and closed it).
func rawSMTPServer(t *testing.T, answer func(c net.Conn, line string)) (addr string, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	done := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			close(done)
			return
		}
		accepted <- c
		r := bufio.NewReader(c)
		c.Write([]byte("220 localhost ESMTP\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(done) // the client closed (or the test did)
				return
			}
			answer(c, line)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if c, ok := <-accepted; ok {
			c.Close()
		}
		<-done
	})
	return ln.Addr().String(), done
}
