package localmongo

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Wire protocol op codes the server reads.
const (
	opQuery = 2004
	opMsg   = 2013

	msgChecksumPresent = 1 << 0
	msgMoreToCome      = 1 << 1

	headerLen  = 16
	maxMsgSize = 64 << 20 // MongoDB's limit is 48 MB; anything bigger is a broken stream
)

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
