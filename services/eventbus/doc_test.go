package eventbus

import (
	"os"
	"strings"
	"testing"
)

// The subscriber shown in the package documentation is examples/audit, which
// compiles with the module, and it stays under 30 lines.
func TestDocExampleIsTheAuditProgram(t *testing.T) {
	prog, err := os.ReadFile("examples/audit/main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	body := string(prog[strings.Index(string(prog), "func main()"):])
	var quoted strings.Builder
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		quoted.WriteString("//\t" + line + "\n")
	}
	if !strings.Contains(string(doc), quoted.String()) {
		t.Errorf("doc.go does not show examples/audit/main.go's main verbatim")
	}
	if n := strings.Count(string(prog), "\n"); n >= 30 {
		t.Errorf("examples/audit/main.go has %d lines, want under 30", n)
	}
}
