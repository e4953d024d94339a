package mongotest

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"

	"github.com/personscore/localmongo/internal/wire"
)

// ReadMessage reads one whole MongoDB wire message from r, reusing buf if it
// is large enough: for a test's proxy that acts on whole messages.
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) { return wire.Read(r, buf) }

// CommandName is the lower-case name of the command an OP_MSG message carries
// ("insert", "update", "find", …), or "" for any other or malformed message.
func CommandName(msg []byte) string {
	if len(msg) < wire.HeaderLen || wire.Opcode(msg) != wire.OpMsg {
		return ""
	}
	cmd, err := wire.ParseOpMsg(msg)
	if err != nil || len(cmd) == 0 {
		return ""
	}
	return strings.ToLower(cmd[0].Key)
}

// SequenceDocs returns the documents of an OP_MSG's document sequences (an
// update's statements, an insert's documents) as slices of msg, so that a
// test's proxy can alter one in place (keeping its length); nil for any other
// or malformed message.
func SequenceDocs(msg []byte) [][]byte {
	if len(msg) < wire.HeaderLen+4 || wire.Opcode(msg) != wire.OpMsg {
		return nil
	}
	end := len(msg)
	if wire.Flags(msg)&wire.ChecksumPresent != 0 {
		end -= 4
	}
	var docs [][]byte
	for p := wire.HeaderLen + 4; p+5 <= end; {
		kind := msg[p]
		size := int(int32(binary.LittleEndian.Uint32(msg[p+1:])))
		if size < 5 || p+1+size > end {
			return nil
		}
		if kind == 1 {
			sec := msg[p+5 : p+1+size]
			q := bytes.IndexByte(sec, 0) + 1
			if q == 0 {
				return nil
			}
			for q+4 <= len(sec) {
				n := int(int32(binary.LittleEndian.Uint32(sec[q:])))
				if n < 5 || q+n > len(sec) {
					return nil
				}
				docs = append(docs, sec[q:q+n])
				q += n
			}
		}
		p += 1 + size
	}
	return docs
}
