package localmongo

import (
	"encoding/binary"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// buildOpMsg builds an OP_MSG with a document sequence before the body, to check
// that the body is found wherever it is.
func buildOpMsg(t *testing.T, flags uint32, body bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := bson.Marshal(bson.D{{Key: "_id", Value: 1}})
	seq := append([]byte{1, 0, 0, 0, 0}, "documents\x00"...)
	seq = append(seq, doc...)
	binary.LittleEndian.PutUint32(seq[1:5], uint32(len(seq)-1))

	msg := make([]byte, 20)
	binary.LittleEndian.PutUint32(msg[12:], opMsg)
	binary.LittleEndian.PutUint32(msg[16:], flags)
	msg = append(msg, seq...)
	msg = append(msg, 0)
	msg = append(msg, b...)
	if flags&msgChecksumPresent != 0 {
		msg = append(msg, 0, 0, 0, 0)
	}
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	return msg
}

func opQueryMsg(t *testing.T, coll string, query bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(query)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 20)
	binary.LittleEndian.PutUint32(msg[12:], opQuery)
	msg = append(msg, coll+"\x00"...)
	msg = append(msg, 0, 0, 0, 0, 1, 0, 0, 0)
	msg = append(msg, b...)
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	return msg
}

func TestIsWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"insert", buildOpMsg(t, 0, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "d"}}), true},
		{"update", buildOpMsg(t, 0, bson.D{{Key: "update", Value: "c"}}), true},
		{"delete", buildOpMsg(t, 0, bson.D{{Key: "delete", Value: "c"}}), true},
		{"findAndModify", buildOpMsg(t, 0, bson.D{{Key: "findAndModify", Value: "c"}}), true},
		{"findandmodify lower case", buildOpMsg(t, 0, bson.D{{Key: "findandmodify", Value: "c"}}), true},
		{"with checksum", buildOpMsg(t, msgChecksumPresent, bson.D{{Key: "update", Value: "c"}}), true},
		{"find", buildOpMsg(t, 0, bson.D{{Key: "find", Value: "c"}}), false},
		{"aggregate", buildOpMsg(t, 0, bson.D{{Key: "aggregate", Value: "c"}}), false},
		{"empty body", buildOpMsg(t, 0, bson.D{}), false},
		{"OP_QUERY hello", opQueryMsg(t, "admin.$cmd", bson.D{{Key: "hello", Value: 1}}), false},
		{"OP_QUERY insert", opQueryMsg(t, "d.$cmd", bson.D{{Key: "insert", Value: "c"}}), true},
		{"OP_QUERY wrapped", opQueryMsg(t, "d.$cmd", bson.D{{Key: "$query", Value: bson.D{{Key: "delete", Value: "c"}}}}), true},
		{"OP_QUERY on a collection", opQueryMsg(t, "d.c", bson.D{{Key: "insert", Value: 1}}), false},
		{"truncated", []byte{16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0}, false},
	} {
		if got := isWrite(tc.msg); got != tc.want {
			t.Errorf("%s: isWrite = %v, want %v", tc.name, got, tc.want)
		}
	}
}
