package persontest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// hold is the client messages the proxy keeps back from MongoDB.
type hold struct {
	match func(msg []byte) bool
	cut   bool          // also close the client's connection once one is kept
	n     int           // how many to keep
	held  chan struct{} // closed once the first is kept
	msgs  [][]byte
}

// Hold makes the proxy keep back the next n whole wire messages clients send
// that match accepts: MongoDB does not see them until release sends them, in
// order, on a connection of its own, waiting for each answer. With cut the
// proxy also closes the sender's connection as soon as a message is kept, so
// the driver loses the answer of a command it did send (a connection reset, a
// crashed proxy); without, the driver waits for an answer until its deadline.
// held is closed once the first message was kept. Together they make a write
// that reaches MongoDB only after its sender gave up on it.
func (p *Proxy) Hold(n int, match func(msg []byte) bool, cut bool) (held <-chan struct{}, release func() error) {
	h := &hold{match: match, cut: cut, n: n, held: make(chan struct{})}
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
			return fmt.Errorf("persontest: %d messages held, want %d", len(msgs), n)
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
			if _, err := readMessage(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// Command matches an OP_MSG whose command is name on collection coll, e.g.
// Command("update", "persons").
func Command(name, coll string) func(msg []byte) bool {
	// header (16 bytes), flag bits (4), section kind 0 (1), document length
	// (4), then the first element: type string, name, length, coll.
	var elem bytes.Buffer
	elem.WriteByte(0x02)
	elem.WriteString(name)
	elem.WriteByte(0)
	_ = binary.Write(&elem, binary.LittleEndian, int32(len(coll)+1))
	elem.WriteString(coll)
	elem.WriteByte(0)
	const opMsg = 2013
	return func(msg []byte) bool {
		return len(msg) > 25 && binary.LittleEndian.Uint32(msg[12:16]) == opMsg && msg[20] == 0 &&
			bytes.HasPrefix(msg[25:], elem.Bytes())
	}
}

// forward copies src to dst one MongoDB wire message at a time, keeping back
// the ones an armed hold matches. Anything else (the proxy also stands in for
// RabbitMQ) is copied as it comes.
func (p *Proxy) forward(dst, src net.Conn) {
	for {
		msg, err := readMessage(src)
		var other notWire
		if errors.As(err, &other) {
			if _, err := dst.Write(other); err == nil {
				_, _ = io.Copy(dst, src)
			}
			return
		}
		if err != nil {
			return
		}
		p.mu.Lock()
		h := p.hold
		kept := h != nil && h.match(msg)
		if kept {
			if h.msgs = append(h.msgs, msg); len(h.msgs) == 1 {
				close(h.held)
			}
			if len(h.msgs) == h.n {
				p.hold = nil
			}
		}
		p.mu.Unlock()
		if kept {
			if h.cut {
				return
			}
			// Hang: the driver waits for an answer that never comes.
			_, _ = io.Copy(io.Discard, src)
			return
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
	}
}

// notWire is the start of a stream that is no MongoDB wire message.
type notWire []byte

func (notWire) Error() string { return "persontest: not a MongoDB wire message" }

// readMessage reads one wire message (its length, then the rest).
func readMessage(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(size[:])
	if n < 16 || n > 48_000_000 {
		return nil, notWire(size[:])
	}
	msg := make([]byte, n)
	copy(msg, size[:])
	_, err := io.ReadFull(r, msg[4:])
	return msg, err
}
