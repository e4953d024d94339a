package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// components in start order; down stops them in reverse.
var components = []string{"etcd", "kube-apiserver", "containerd", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

func (n *node) pidFile(name string) string { return n.path("pids", name+".pid") }

// running returns the PID of the component if its recorded process is alive and is
// still the binary started from bin/.
func (n *node) running(name string) (int, bool) {
	b, err := os.ReadFile(n.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != filepath.Join(n.bin, name) {
		return pid, false
	}
	return pid, true
}

// startProcess starts bin/NAME detached (own session) with its output in logs/NAME.log
// and records its PID, unless it already runs.
func (n *node) startProcess(name string, args ...string) error {
	if pid, ok := n.running(name); ok {
		step("%s already running (pid %d)", name, pid)
		return nil
	}
	for _, d := range []string{"pids", "logs"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	log, err := os.OpenFile(n.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(n.bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = n.state
	// containerd finds its shim on PATH; kubelet and kube-proxy call iptables.
	cmd.Env = append(os.Environ(), "PATH="+n.bin+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.WriteFile(n.pidFile(name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	// Reap it if it exits while we run, so running() sees it gone.
	go cmd.Wait()
	step("%s started (pid %d, log %s)", name, cmd.Process.Pid, n.path("logs", name+".log"))
	return nil
}

// stopProcess sends SIGTERM to the recorded PID, SIGKILL after grace, and removes the
// PID file.
func (n *node) stopProcess(name string, grace time.Duration) error {
	pid, ok := n.running(name)
	if !ok {
		os.Remove(n.pidFile(name))
		return nil
	}
	step("stopping %s (pid %d)", name, pid)
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if _, ok := n.running(name); !ok {
			return os.Remove(n.pidFile(name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 50; i++ {
		if _, ok := n.running(name); !ok {
			return os.Remove(n.pidFile(name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) survived SIGKILL", name, pid)
}

// run executes a command, returning its combined output in the error.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// waitFor polls cond every second until it returns true or the deadline passes; the
// last error is reported.
func waitFor(what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return fmt.Errorf("%s: not after %s: %v", what, timeout, last)
		}
		time.Sleep(time.Second)
	}
}
