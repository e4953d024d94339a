package imagebuild

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child go away if this process dies (e.g. a test timeout).
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
