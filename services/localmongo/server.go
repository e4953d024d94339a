package localmongo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/localmongo/internal/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
)

// wireServer serves the MongoDB wire protocol (OP_MSG, and OP_QUERY for the
// legacy handshake) from an engine.
type wireServer struct {
	ln  net.Listener
	eng *engine
	log *zap.Logger

	connID  atomic.Int32
	reqID   atomic.Int32
	cursors cursors
	top     topStats

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newWireServer(ln net.Listener, eng *engine, log *zap.Logger) *wireServer {
	s := &wireServer{ln: ln, eng: eng, log: log, conns: map[net.Conn]struct{}{}}
	s.cursors.open = map[int64]*cursor{}
	return s
}

func (s *wireServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("localmongo: accept failed", zap.Error(err))
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *wireServer) close() {
	s.mu.Lock()
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *wireServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	id := s.connID.Add(1)
	for {
		msg, err := wire.Read(c, nil)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("localmongo: connection ended", zap.Error(err))
			}
			return
		}
		reply, err := s.serveMsg(msg, id)
		if err != nil {
			s.log.Debug("localmongo: bad message", zap.Error(err))
			return
		}
		if reply != nil {
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	}
}

// serveMsg answers one wire message; nil reply for a moreToCome request.
func (s *wireServer) serveMsg(msg []byte, connID int32) ([]byte, error) {
	reqID := int32(binary.LittleEndian.Uint32(msg[4:8]))
	switch wire.Opcode(msg) {
	case wire.OpMsg:
		cmd, err := wire.ParseOpMsg(msg)
		if err != nil {
			return nil, err
		}
		out := s.run(cmd, connID)
		if wire.Flags(msg)&wire.MoreToCome != 0 {
			return nil, nil
		}
		return s.opMsgReply(reqID, out)
	case wire.OpQuery:
		cmd, err := parseOpQuery(msg)
		if err != nil {
			return nil, err
		}
		return s.opReply(reqID, s.run(cmd, connID))
	}
	return nil, fmt.Errorf("unsupported wire opcode %d", wire.Opcode(msg))
}

// parseOpQuery returns the command of a legacy OP_QUERY on <db>.$cmd, with $db set.
func parseOpQuery(msg []byte) (bson.D, error) {
	ns, p := wire.CString(msg, wire.HeaderLen+4)
	if p > len(msg) {
		return nil, errors.New("bad OP_QUERY")
	}
	q, _, err := wire.Document(msg, p+8) // after numberToSkip and numberToReturn
	if err != nil {
		return nil, fmt.Errorf("OP_QUERY: %w", err)
	}
	if inner, ok := lookup(q, "$query"); ok {
		q, _ = inner.(bson.D)
	} else if inner, ok := lookup(q, "query"); ok && len(q) > 0 && q[0].Key == "query" {
		q, _ = inner.(bson.D)
	}
	db, _, _ := strings.Cut(ns, ".")
	return append(q, bson.E{Key: "$db", Value: db}), nil
}

func (s *wireServer) opMsgReply(responseTo int32, doc bson.D) ([]byte, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		raw, _ = bson.Marshal(errDoc(err))
	}
	out := make([]byte, wire.HeaderLen+4+1, wire.HeaderLen+5+len(raw))
	out = append(out, raw...)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(s.reqID.Add(1)))
	binary.LittleEndian.PutUint32(out[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(out[12:], wire.OpMsg)
	return out, nil
}

func (s *wireServer) opReply(responseTo int32, doc bson.D) ([]byte, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		raw, _ = bson.Marshal(errDoc(err))
	}
	out := make([]byte, wire.HeaderLen+20, wire.HeaderLen+20+len(raw))
	out = append(out, raw...)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(s.reqID.Add(1)))
	binary.LittleEndian.PutUint32(out[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(out[12:], 1) // OP_REPLY
	binary.LittleEndian.PutUint32(out[32:], 1) // numberReturned
	return out, nil
}

// --- cursors ---

type cursor struct {
	ns   string
	docs []bson.Raw
	used time.Time
}

type cursors struct {
	mu   sync.Mutex
	next int64
	open map[int64]*cursor
}

// cursorIdle is how long an unused cursor is kept.
const cursorIdle = 10 * time.Minute

// batch returns up to n documents (and at most about 16 MB) of docs and the rest.
func batch(docs []bson.Raw, n int) (bson.A, []bson.Raw) {
	if n <= 0 {
		n = len(docs)
	}
	out := bson.A{}
	size := 0
	i := 0
	for ; i < len(docs) && i < n; i++ {
		if i > 0 && size+len(docs[i]) > 16<<20 {
			break
		}
		size += len(docs[i])
		out = append(out, docs[i])
	}
	return out, docs[i:]
}

// firstBatch answers a query: the first batch and, if more remain, a cursor for getMore.
func (s *wireServer) firstBatch(ns string, docs []bson.Raw, batchSize int, single bool) bson.D {
	if batchSize <= 0 {
		batchSize = 101
	}
	first, rest := batch(docs, batchSize)
	var id int64
	if len(rest) > 0 && !single {
		s.cursors.mu.Lock()
		now := time.Now()
		for k, c := range s.cursors.open {
			if now.Sub(c.used) > cursorIdle {
				delete(s.cursors.open, k)
			}
		}
		s.cursors.next++
		id = s.cursors.next
		s.cursors.open[id] = &cursor{ns: ns, docs: rest, used: now}
		s.cursors.mu.Unlock()
	}
	return bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: first}, {Key: "id", Value: id}, {Key: "ns", Value: ns}}}, {Key: "ok", Value: 1.0}}
}

func (s *wireServer) getMore(id int64, batchSize int) bson.D {
	s.cursors.mu.Lock()
	defer s.cursors.mu.Unlock()
	c := s.cursors.open[id]
	if c == nil {
		return cmdError(43, "CursorNotFound", fmt.Sprintf("cursor id %d not found", id))
	}
	next, rest := batch(c.docs, batchSize)
	c.docs, c.used = rest, time.Now()
	out := id
	if len(rest) == 0 {
		delete(s.cursors.open, id)
		out = 0
	}
	return bson.D{{Key: "cursor", Value: bson.D{{Key: "nextBatch", Value: next}, {Key: "id", Value: out}, {Key: "ns", Value: c.ns}}}, {Key: "ok", Value: 1.0}}
}

func (s *wireServer) killCursors(ids bson.A) bson.D {
	s.cursors.mu.Lock()
	defer s.cursors.mu.Unlock()
	killed := bson.A{}
	for _, v := range ids {
		if id, ok := asInt(v); ok {
			if _, open := s.cursors.open[id]; open {
				delete(s.cursors.open, id)
				killed = append(killed, id)
			}
		}
	}
	return bson.D{{Key: "cursorsKilled", Value: killed}, {Key: "cursorsNotFound", Value: bson.A{}},
		{Key: "cursorsAlive", Value: bson.A{}}, {Key: "cursorsUnknown", Value: bson.A{}}, {Key: "ok", Value: 1.0}}
}

func cmdError(code int32, name, msg string) bson.D {
	return bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: msg}, {Key: "code", Value: code}, {Key: "codeName", Value: name}}
}

func errDoc(err error) bson.D {
	var dup errDuplicate
	var uns errUnsupported
	switch {
	case errors.As(err, &dup):
		return cmdError(11000, "DuplicateKey", dup.Error())
	case errors.As(err, &uns):
		return cmdError(115, "CommandNotSupported", uns.Error())
	}
	return cmdError(2, "BadValue", err.Error())
}
