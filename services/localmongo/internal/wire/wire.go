// Package wire reads MongoDB wire protocol messages: the framing of a stream
// into messages and the command an OP_MSG carries. localmongo's server reads
// its requests with it, and mongotest offers it to tests' proxies.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Wire protocol op codes the server reads.
const (
	OpQuery = 2004
	OpMsg   = 2013

	ChecksumPresent = 1 << 0
	MoreToCome      = 1 << 1

	HeaderLen = 16
	MaxSize   = 64 << 20 // MongoDB's limit is 48 MB; anything bigger is a broken stream
)

// Read reads one whole wire message into buf (reused if large enough).
func Read(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr[:4])))
	if n < HeaderLen || n > MaxSize {
		return buf, fmt.Errorf("invalid wire message length %d", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[HeaderLen:]); err != nil {
		return buf, err
	}
	return buf, nil
}

// Opcode is the message's op code.
func Opcode(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[12:16])) }

// Flags returns the flag bits of an OP_MSG, 0 for anything else.
func Flags(msg []byte) uint32 {
	if Opcode(msg) != OpMsg || len(msg) < HeaderLen+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[16:20])
}

// ParseOpMsg returns the command body with its document sequences merged in as arrays.
func ParseOpMsg(msg []byte) (bson.D, error) {
	end := len(msg)
	if Flags(msg)&ChecksumPresent != 0 {
		end -= 4
	}
	var body bson.D
	var seqs []bson.E
	for p := HeaderLen + 4; p < end; {
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
			name, q := CString(sec, 0)
			var docs bson.A
			for q < len(sec) {
				d, n, err := Document(sec, q)
				if err != nil {
					return nil, fmt.Errorf("OP_MSG sequence: %w", err)
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

// CString reads the NUL-terminated string at b[p:]; next is the index after
// its NUL, len(b)+1 when there is none.
func CString(b []byte, p int) (s string, next int) {
	i := p
	for i < len(b) && b[i] != 0 {
		i++
	}
	return string(b[p:i]), i + 1
}

// Document decodes the BSON document at b[p:] and returns its length.
func Document(b []byte, p int) (bson.D, int, error) {
	if p+4 > len(b) {
		return nil, 0, errors.New("short document")
	}
	n := int(int32(binary.LittleEndian.Uint32(b[p:])))
	if n < 5 || p+n > len(b) {
		return nil, 0, fmt.Errorf("bad document length %d", n)
	}
	var d bson.D
	if err := bson.Unmarshal(b[p:p+n], &d); err != nil {
		return nil, 0, err
	}
	return d, n, nil
}
