package localmongo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// Wire protocol op codes the gate looks at.
const (
	opUpdate     = 2001 // legacy, removed from MongoDB; gated to be safe
	opInsert     = 2002 // legacy
	opQuery      = 2004
	opDelete     = 2006 // legacy
	opCompressed = 2012 // body unreadable without decompressing; gated to be safe
	opMsg        = 2013

	msgChecksumPresent = 1 << 0
	msgMoreToCome      = 1 << 1

	headerLen  = 16
	maxMsgSize = 64 << 20 // MongoDB's limit is 48 MB; anything bigger is a broken stream
)

// gate is a TCP proxy in front of FerretDB that lets one write command through
// at a time. FerretDB v1 runs an update as read-modify-write without a row lock,
// so concurrent updates of one document lose writes; real MongoDB does not.
type gate struct {
	ln       net.Listener
	upstream string // FerretDB's loopback address
	log      *zap.Logger

	writeMu sync.Mutex // held while one write command is inside FerretDB

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both sides of every proxied connection, closed on shutdown
	closed bool
	wg     sync.WaitGroup
}

func newGate(ln net.Listener, upstream string, log *zap.Logger) *gate {
	return &gate{ln: ln, upstream: upstream, log: log, conns: map[net.Conn]struct{}{}}
}

func (g *gate) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				g.log.Error("localmongo: accept failed", zap.Error(err))
			}
			return
		}
		if !g.track(c) {
			_ = c.Close()
			return
		}
		g.wg.Add(1)
		go g.handle(c)
	}
}

// track registers c for shutdown; false once the gate is closing.
func (g *gate) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *gate) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	_ = c.Close()
}

// close stops accepting, drops every proxied connection and waits for the handlers.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	_ = g.ln.Close()
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *gate) handle(client net.Conn) {
	defer g.wg.Done()
	defer g.untrack(client)

	server, err := net.Dial("tcp", g.upstream)
	if err != nil {
		g.log.Error("localmongo: dial FerretDB failed", zap.Error(err))
		return
	}
	if !g.track(server) {
		_ = server.Close()
		return
	}
	defer g.untrack(server)

	var req, rep []byte
	for {
		if req, err = readMsg(client, req); err != nil {
			g.logConnErr(err)
			return
		}
		if rep, err = g.roundTrip(req, server, client, rep); err != nil {
			g.logConnErr(err)
			return
		}
	}
}

// roundTrip forwards one request and its reply(ies). Drivers keep one operation in
// flight per connection, so strict request/reply alternation is enough.
func (g *gate) roundTrip(req []byte, server, client net.Conn, rep []byte) ([]byte, error) {
	write := isWrite(req)
	if write {
		g.writeMu.Lock()
	}
	locked := write
	unlock := func() {
		if locked {
			locked = false
			g.writeMu.Unlock()
		}
	}
	defer unlock()

	// A request with moreToCome expects no reply (unacknowledged write, w:0).
	// FerretDB v1 ignores that flag and replies anyway, which would desynchronize
	// the client. Clearing the flag makes any server reply; the gate then waits for
	// it (so w:0 writes are serialized too) and drops it. The flag can only be
	// cleared without a checksum (drivers do not send one).
	noReply := false
	if flags := msgFlags(req); flags&msgMoreToCome != 0 && flags&msgChecksumPresent == 0 {
		binary.LittleEndian.PutUint32(req[16:20], flags&^msgMoreToCome)
		noReply = true
	}

	if _, err := server.Write(req); err != nil {
		return rep, err
	}

	for {
		var err error
		if rep, err = readMsg(server, rep); err != nil {
			return rep, err
		}
		// The reply exists, so the write is finished inside FerretDB: release the
		// gate before writing to the client, so a slow client cannot stall others.
		more := msgFlags(rep)&msgMoreToCome != 0
		if !more {
			unlock()
		}
		if noReply {
			return rep, nil
		}
		if _, err := client.Write(rep); err != nil {
			return rep, err
		}
		// Exhaust cursors / streaming hello: the server keeps sending replies
		// while moreToCome is set, without further requests.
		if !more {
			return rep, nil
		}
	}
}

func (g *gate) logConnErr(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	g.log.Debug("localmongo: proxied connection ended", zap.Error(err))
}

// readMsg reads one whole wire message into buf (reused if large enough).
func readMsg(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr[:4])))
	if n < headerLen || n > maxMsgSize {
		return buf, fmt.Errorf("invalid wire message length %d", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[headerLen:]); err != nil {
		return buf, err
	}
	return buf, nil
}

func opcode(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[12:16])) }

// msgFlags returns the flag bits of an OP_MSG, 0 for anything else.
func msgFlags(msg []byte) uint32 {
	if opcode(msg) != opMsg || len(msg) < headerLen+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[16:20])
}

// isWrite reports whether msg carries a command that modifies documents.
func isWrite(msg []byte) bool {
	switch opcode(msg) {
	case opMsg:
		return isWriteCommand(opMsgCommand(msg))
	case opQuery:
		return isWriteCommand(opQueryCommand(msg))
	case opUpdate, opInsert, opDelete, opCompressed:
		return true
	default:
		return false
	}
}

func isWriteCommand(name string) bool {
	switch strings.ToLower(name) {
	case "insert", "update", "delete", "findandmodify", "bulkwrite":
		return true
	}
	return false
}

// opMsgCommand returns the first key of the OP_MSG body (the section of kind 0),
// which is the command name.
func opMsgCommand(msg []byte) string {
	if len(msg) < headerLen+4 {
		return ""
	}
	end := len(msg)
	if msgFlags(msg)&msgChecksumPresent != 0 {
		end -= 4
	}
	for p := headerLen + 4; p < end; {
		kind := msg[p]
		p++
		switch kind {
		case 0: // body: one BSON document
			return firstKey(msg[p:end])
		case 1: // document sequence: int32 size (includes itself), identifier, documents
			if end-p < 4 {
				return ""
			}
			size := int(int32(binary.LittleEndian.Uint32(msg[p:])))
			if size < 4 {
				return ""
			}
			p += size
		default:
			return ""
		}
	}
	return ""
}

// opQueryCommand returns the command name of a legacy OP_QUERY on "<db>.$cmd".
// FerretDB only serves handshake/auth commands this way, but the check is cheap.
func opQueryCommand(msg []byte) string {
	p := headerLen + 4 // flags
	if len(msg) < p {
		return ""
	}
	i := bytes.IndexByte(msg[p:], 0)
	if i < 0 || !strings.HasSuffix(string(msg[p:p+i]), ".$cmd") {
		return ""
	}
	p += i + 1 + 8 // collection name, numberToSkip, numberToReturn
	if p > len(msg) {
		return ""
	}
	doc := msg[p:]
	key := firstKey(doc)
	if key == "$query" || key == "query" { // wrapped form: {$query: {cmd...}, $readPreference: ...}
		return firstKey(doc[4+1+len(key)+1:])
	}
	return key
}

// firstKey returns the name of the first element of a BSON document.
func firstKey(doc []byte) string {
	if len(doc) < 5 || doc[4] == 0 {
		return ""
	}
	i := bytes.IndexByte(doc[5:], 0)
	if i < 0 {
		return ""
	}
	return string(doc[5 : 5+i])
}
