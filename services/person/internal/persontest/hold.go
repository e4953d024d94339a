package persontest

import (
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/personscore/localmongo/mongotest"
)

// hold is an armed Hold.
type hold struct {
	command string
	cut     bool
	n       int           // how many commands to keep
	held    chan struct{} // closed once the first is kept
	msgs    [][]byte
}

// Hold makes a MongoDB proxy keep back the next n commands named command
// (e.g. "update") that clients send: MongoDB does not see them until release
// sends them, in order, on a connection of its own, and waits for each answer.
// With cut the proxy closes the sender's connection as soon as a command is
// kept, so the driver loses the answer of a command it did send (a connection
// reset); without, the driver waits for an answer until its deadline. held is
// closed once the first command was kept. Together they make a write that
// reaches MongoDB only after its sender gave up on it.
func (p *Proxy) Hold(n int, command string, cut bool) (held <-chan struct{}, release func() error) {
	if !p.mongo {
		panic("persontest: Hold on a proxy not started by StartMongoProxy")
	}
	h := &hold{command: command, cut: cut, n: n, held: make(chan struct{})}
	p.mu.Lock()
	p.hold = h
	p.mu.Unlock()
	return h.held, func() error {
		p.mu.Lock()
		if p.hold == h {
			p.hold = nil
		}
		msgs := h.msgs
		p.mu.Unlock()
		if len(msgs) != n {
			return fmt.Errorf("persontest: %d %s commands held, want %d", len(msgs), command, n)
		}
		c, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, msg := range msgs {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			if _, err := mongotest.ReadMessage(c, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

// keep reports whether msg, a client's message, is kept by an armed Hold;
// if so the client's connection is to be closed (after, without cut, the
// client gave up on it and closed it).
func (l *mongoLink) keep(msg []byte) bool {
	p := l.p
	p.mu.Lock()
	h := p.hold
	kept := h != nil && mongotest.CommandName(msg) == h.command
	if kept {
		if h.msgs = append(h.msgs, slices.Clone(msg)); len(h.msgs) == 1 {
			close(h.held)
		}
		if len(h.msgs) == h.n {
			p.hold = nil
		}
	}
	p.mu.Unlock()
	if kept && !h.cut {
		_, _ = io.Copy(io.Discard, l.client) // no answer comes
	}
	return kept
}
