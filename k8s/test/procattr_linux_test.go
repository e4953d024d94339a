package test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes a child process go away if the test binary dies (e.g. timeout).
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
