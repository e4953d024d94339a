package persontest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// writeFault is an armed FailNextWrite.
type writeFault struct {
	applied bool
	then    func()
}

// FailNextWrite breaks the connection of the next write command (insert,
// update, delete, findAndModify) that passes a MongoDB proxy, once: with
// applied false the proxy drops the command, so MongoDB never sees it; with
// applied true it forwards the command and drops MongoDB's answer. Either way
// it then runs then (unless nil) and closes that connection, so the client
// learns only that the connection broke.
func (p *Proxy) FailNextWrite(applied bool, then func()) {
	if !p.mongo {
		panic("persontest: FailNextWrite on a proxy not started by StartMongoProxy")
	}
	p.mu.Lock()
	p.fault = &writeFault{applied: applied, then: then}
	p.mu.Unlock()
}

// takeFault disarms and returns the armed fault if msg is a write command.
func (p *Proxy) takeFault(msg []byte) *writeFault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == nil || !isWrite(msg) {
		return nil
	}
	f := p.fault
	p.fault = nil
	return f
}

// mongoLink is one client connection through a MongoDB proxy.
type mongoLink struct {
	p              *Proxy
	client, server net.Conn

	mu      sync.Mutex
	drop    bool  // drop the answer to request dropID
	dropID  int32 // request id of the write whose answer is lost
	dropped func()
}

// requests forwards the client's messages, dropping a failed write.
func (l *mongoLink) requests() {
	defer l.p.wg.Done()
	defer l.p.untrack(l.client, l.server)
	var buf []byte
	for {
		msg, err := readWireMsg(l.client, buf)
		if err != nil {
			return
		}
		buf = msg
		if f := l.p.takeFault(msg); f != nil {
			if !f.applied {
				l.fail(f.then)
				return
			}
			l.mu.Lock()
			l.drop, l.dropID, l.dropped = true, int32(binary.LittleEndian.Uint32(msg[4:8])), f.then
			l.mu.Unlock()
		}
		if _, err := l.server.Write(msg); err != nil {
			return
		}
	}
}

// replies forwards MongoDB's answers, dropping the one to a failed write.
func (l *mongoLink) replies() {
	defer l.p.wg.Done()
	defer l.p.untrack(l.client, l.server)
	var buf []byte
	for {
		msg, err := readWireMsg(l.server, buf)
		if err != nil {
			return
		}
		buf = msg
		l.mu.Lock()
		drop := l.drop && int32(binary.LittleEndian.Uint32(msg[8:12])) == l.dropID
		then := l.dropped
		l.mu.Unlock()
		if drop {
			l.fail(then)
			return
		}
		if _, err := l.client.Write(msg); err != nil {
			return
		}
	}
}

// fail runs then and closes the connection.
func (l *mongoLink) fail(then func()) {
	if then != nil {
		then()
	}
	l.p.untrack(l.client, l.server)
}

const (
	wireHeaderLen = 16
	opMsg         = 2013
	maxWireMsg    = 64 << 20
)

// readWireMsg reads one whole MongoDB wire message, reusing buf if it is
// large enough.
func readWireMsg(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [wireHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr[:4])))
	if n < wireHeaderLen || n > maxWireMsg {
		return nil, fmt.Errorf("persontest: wire message of %d bytes", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[wireHeaderLen:]); err != nil {
		return nil, err
	}
	return buf, nil
}

// isWrite reports whether msg is an OP_MSG whose command is a write.
func isWrite(msg []byte) bool {
	if len(msg) < wireHeaderLen+4 || binary.LittleEndian.Uint32(msg[12:16]) != opMsg {
		return false
	}
	end := len(msg)
	if binary.LittleEndian.Uint32(msg[16:20])&1 != 0 { // checksum present
		end -= 4
	}
	for pos := wireHeaderLen + 4; pos+5 <= end; {
		kind := msg[pos]
		size := int(int32(binary.LittleEndian.Uint32(msg[pos+1 : pos+5])))
		if size < 5 || pos+1+size > end {
			return false
		}
		if kind == 0 { // the command document
			e, err := bson.Raw(msg[pos+1 : pos+1+size]).IndexErr(0)
			if err != nil {
				return false
			}
			switch strings.ToLower(e.Key()) {
			case "insert", "update", "delete", "findandmodify":
				return true
			}
			return false
		}
		pos += 1 + size // a document sequence
	}
	return false
}
