package mongotest

import (
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
