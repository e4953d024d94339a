//go:build chaos

package chaos_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/personscore/stack/chaos"
)

// A private node whose AMQP port is taken when it boots exits; StartAll starts
// it again on fresh ports instead of failing the scenarios that need it.
func TestFleetStartRetriesOnFreshPorts(t *testing.T) {
	f, err := chaos.NewFleet(t.TempDir(), "chaos"+chaos.NewID()[:4]+"retry", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.StopAll()
	n := f.Nodes[0]
	taken := n.Port
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(taken))
	if err != nil {
		t.Fatalf("taking the node's port %d: %v", taken, err)
	}
	defer l.Close()
	tries, err := f.StartAll(t.Context(), t.Logf)
	if err != nil {
		t.Fatalf("StartAll with the first port taken (tries %v): %v", tries, err)
	}
	if tries[n.Name] != 2 || n.Port == taken {
		t.Fatalf("tries %v, port %d (taken %d): want a second start on another port", tries, n.Port, taken)
	}
	if !n.Ready() {
		t.Fatalf("%s does not answer AMQP on port %d after StartAll", n.Name, n.Port)
	}
}
