package persontest

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/personscore/localmongo/mongotest"
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

// requests forwards the client's messages; a failed write is dropped, or its
// answer marked to be dropped.
func (l *mongoLink) requests() {
	l.pump(l.client, l.server, func(msg []byte) (bool, func()) {
		if l.keep(msg) { // hold.go
			return true, nil
		}
		f := l.p.takeFault(msg)
		switch {
		case f == nil:
			return false, nil
		case !f.applied:
			return true, f.then
		}
		l.mu.Lock()
		l.drop, l.dropID, l.dropped = true, int32(binary.LittleEndian.Uint32(msg[4:8])), f.then
		l.mu.Unlock()
		return false, nil
	})
}

// replies forwards MongoDB's answers but the one to a failed write.
func (l *mongoLink) replies() {
	l.pump(l.server, l.client, func(msg []byte) (bool, func()) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.drop && int32(binary.LittleEndian.Uint32(msg[8:12])) == l.dropID, l.dropped
	})
}

// pump forwards whole messages from src to dst until the connection ends, or
// until brk says so for a message: then it runs the returned func (unless
// nil), drops the message and closes the connection.
func (l *mongoLink) pump(src, dst net.Conn, brk func(msg []byte) (bool, func())) {
	defer l.p.wg.Done()
	defer l.p.untrack(l.client, l.server)
	var buf []byte
	for {
		msg, err := mongotest.ReadMessage(src, buf)
		if err != nil {
			return
		}
		buf = msg
		if stop, then := brk(msg); stop {
			if then != nil {
				then()
			}
			return
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
	}
}

// isWrite reports whether msg carries a write command.
func isWrite(msg []byte) bool {
	switch mongotest.CommandName(msg) {
	case "insert", "update", "delete", "findandmodify":
		return true
	}
	return false
}
