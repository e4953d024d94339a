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
		msg, err := readMsg(c, nil)
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
	switch opcode(msg) {
	case opMsg:
		cmd, err := parseOpMsg(msg)
		if err != nil {
			return nil, err
		}
		out := s.run(cmd, connID)
		if msgFlags(msg)&msgMoreToCome != 0 {
			return nil, nil
		}
		return s.opMsgReply(reqID, out)
	case opQuery:
		cmd, err := parseOpQuery(msg)
		if err != nil {
			return nil, err
		}
		return s.opReply(reqID, s.run(cmd, connID))
	}
	return nil, fmt.Errorf("unsupported wire opcode %d", opcode(msg))
}

// parseOpMsg returns the command body with its document sequences merged in as arrays.
func parseOpMsg(msg []byte) (bson.D, error) {
	end := len(msg)
	if msgFlags(msg)&msgChecksumPresent != 0 {
		end -= 4
	}
	var body bson.D
	var seqs []bson.E
	for p := headerLen + 4; p < end; {
		kind := msg[p]
		p++
		if end-p < 4 {
			return nil, errors.New("short OP_MSG section")
		}
		size := int(int32(binary.LittleEndian.Uint32(msg[p:])))
		if size < 5 || p+size > end {
			return nil, errors.New("bad OP_MSG section size")
		}
		switch kind {
		case 0:
			if err := bson.Unmarshal(msg[p:p+size], &body); err != nil {
				return nil, err
			}
		case 1:
			sec := msg[p+4 : p+size]
			i := 0
			for i < len(sec) && sec[i] != 0 {
				i++
			}
			name := string(sec[:i])
			var docs bson.A
			for q := i + 1; q+4 <= len(sec); {
				n := int(int32(binary.LittleEndian.Uint32(sec[q:])))
				if n < 5 || q+n > len(sec) {
					return nil, errors.New("bad document in OP_MSG sequence")
				}
				var d bson.D
				if err := bson.Unmarshal(sec[q:q+n], &d); err != nil {
					return nil, err
				}
				docs = append(docs, d)
				q += n
			}
			seqs = append(seqs, bson.E{Key: name, Value: docs})
		default:
			return nil, fmt.Errorf("unknown OP_MSG section kind %d", kind)
		}
		p += size
	}
	return append(body, seqs...), nil
}

// parseOpQuery returns the command of a legacy OP_QUERY on <db>.$cmd, with $db set.
func parseOpQuery(msg []byte) (bson.D, error) {
	p := headerLen + 4
	i := p
	for i < len(msg) && msg[i] != 0 {
		i++
	}
	if i >= len(msg) {
		return nil, errors.New("bad OP_QUERY")
	}
	ns := string(msg[p:i])
	p = i + 1 + 8
	if p+4 > len(msg) {
		return nil, errors.New("short OP_QUERY")
	}
	n := int(int32(binary.LittleEndian.Uint32(msg[p:])))
	if n < 5 || p+n > len(msg) {
		return nil, errors.New("bad OP_QUERY document")
	}
	var q bson.D
	if err := bson.Unmarshal(msg[p:p+n], &q); err != nil {
		return nil, err
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
	out := make([]byte, headerLen+4+1, headerLen+5+len(raw))
	out = append(out, raw...)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(s.reqID.Add(1)))
	binary.LittleEndian.PutUint32(out[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(out[12:], opMsg)
	return out, nil
}

func (s *wireServer) opReply(responseTo int32, doc bson.D) ([]byte, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		raw, _ = bson.Marshal(errDoc(err))
	}
	out := make([]byte, headerLen+20, headerLen+20+len(raw))
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
