package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kubeletChains are chains the kubelet creates and kube-proxy --cleanup leaves.
var kubeletChains = []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"}

func (n *node) down() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("node down needs root")
	}
	before, err := n.loadHostRecord()
	if os.IsNotExist(err) {
		step("no node state in %s: nothing to undo", n.state)
		return nil
	}
	if err != nil {
		return err
	}
	// Nothing may restart containers while they are removed.
	for _, c := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if err := n.stopProcess(c, 30*time.Second); err != nil {
			return err
		}
	}
	if _, ok := n.running("containerd"); ok {
		n.removeContainers()
	}
	for _, c := range []string{"containerd", "kube-apiserver", "etcd"} {
		if err := n.stopProcess(c, 30*time.Second); err != nil {
			return err
		}
	}
	n.killLeftovers(true)
	if err := n.unmountAll(); err != nil {
		return err
	}
	if err := n.cleanIptables(); err != nil {
		return err
	}
	if err := removeEmptyTables(before); err != nil {
		return err
	}
	if err := n.removeLinks(before); err != nil {
		return err
	}
	removeCgroups()
	restored, err := restoreSysctls(before)
	for _, r := range restored {
		step("sysctl restored: %s", r)
	}
	if err != nil {
		return err
	}
	if out, _ := run("ip", "-o", "addr", "show", "dev", "lo"); strings.Contains(out, " "+nodeIP+"/32 ") {
		if _, err := run("ip", "addr", "del", nodeIP+"/32", "dev", "lo"); err != nil {
			return err
		}
	}
	// The kubelet links container logs into /var/log/containers whatever its podLogsDir.
	links, _ := filepath.Glob("/var/log/containers/*")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, n.state+"/") {
			os.Remove(l)
		}
	}
	for p, existed := range before.Paths {
		if !existed {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	now, err := captureHost()
	if err != nil {
		return err
	}
	if d := diffHost(before, now); len(d) > 0 {
		return fmt.Errorf("host differs from before the node (state kept in %s; run down again after fixing):\n%s", n.state, strings.Join(d, "\n"))
	}
	step("host state equals the record from before the node: sysctls, iptables, links, mounts, cgroups, lo addresses, paths")
	if err := os.RemoveAll(n.state); err != nil {
		return err
	}
	step("removed %s; cluster down", n.state)
	return nil
}

// removeContainers kills and deletes every container of the k8s.io namespace.
func (n *node) removeContainers() {
	out, err := n.ctr("tasks", "ls", "-q")
	if err != nil {
		step("containerd: %v", err)
		return
	}
	tasks := strings.Fields(out)
	// SIGKILL every container process (all are in the kubepods cgroups), then delete
	// the tasks (their shims exit with them).
	n.killLeftovers(false)
	for _, t := range tasks {
		if _, err := n.ctr("tasks", "delete", "-f", t); err != nil {
			step("delete task %s: %v", t, err)
		}
	}
	out, err = n.ctr("containers", "ls", "-q")
	if err != nil {
		step("containerd: %v", err)
		return
	}
	for _, c := range strings.Fields(out) {
		n.ctr("containers", "delete", c)
	}
	step("removed %d tasks", len(tasks))
}

// killLeftovers kills container processes still in the kubepods cgroups and, with
// shims, the shims started from bin/ (left when containerd was already gone).
func (n *node) killLeftovers(shims bool) {
	pids := map[int]bool{}
	filepath.WalkDir("/sys/fs/cgroup/pids/kubepods", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids[pid] = true
				}
			}
		}
		return nil
	})
	shim := filepath.Join(n.bin, "containerd-shim-runc-v2")
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); shims && strings.TrimSuffix(exe, " (deleted)") == shim {
			pids[pid] = true
		}
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(pids) > 0 {
		step("killed %d leftover container and shim processes", len(pids))
		time.Sleep(time.Second)
	}
}

// unmountAll unmounts, deepest first, everything under the node's directories and the
// pod network namespaces.
func (n *node) unmountAll() error {
	roots := []string{n.state, n.run, "/run/containerd", "/var/run/netns", "/run/netns"}
	for attempt := 0; attempt < 3; attempt++ {
		mps, err := mountPoints()
		if err != nil {
			return err
		}
		var ours []string
		for _, mp := range mps {
			for _, r := range roots {
				if mp == r || strings.HasPrefix(mp, r+"/") {
					ours = append(ours, mp)
					break
				}
			}
		}
		if len(ours) == 0 {
			return nil
		}
		sort.Slice(ours, func(i, j int) bool { return len(ours[i]) > len(ours[j]) })
		for _, mp := range ours {
			if err := syscall.Unmount(mp, 0); err != nil {
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
		step("unmounted %d mounts", len(ours))
	}
	mps, _ := mountPoints()
	for _, mp := range mps {
		for _, r := range roots {
			if strings.HasPrefix(mp, r+"/") {
				return fmt.Errorf("still mounted: %s", mp)
			}
		}
	}
	return nil
}

// cleanIptables runs kube-proxy --cleanup, then removes the kubelet's chains and the
// CNI bridge plugin's masquerade chains (in case a pod's teardown never ran).
func (n *node) cleanIptables() error {
	if out, err := run(filepath.Join(n.bin, "kube-proxy"), "--cleanup"); err != nil {
		step("kube-proxy --cleanup: %v\n%s", err, out)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		dump, err := run(tool + "-save")
		if err != nil {
			return err
		}
		// Rules jumping to our chains from other chains, by position (iptables-save lists
		// each chain's rules in order), deleted last first so positions stay valid.
		table := ""
		type ruleRef struct {
			table, chain string
			pos          int
		}
		var jumps []ruleRef
		pos := map[string]int{}
		chains := map[string][]string{}
		for _, line := range strings.Split(dump, "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = line[1:]
			case strings.HasPrefix(line, ":"):
				name := strings.Fields(line[1:])[0]
				if ours(name) {
					chains[table] = append(chains[table], name)
				}
			case strings.HasPrefix(line, "-A "):
				f := strings.Fields(line)
				key := table + "/" + f[1]
				pos[key]++
				if !ours(f[1]) && jumpsToOurs(f) {
					jumps = append(jumps, ruleRef{table, f[1], pos[key]})
				}
			}
		}
		for i := len(jumps) - 1; i >= 0; i-- {
			j := jumps[i]
			if _, err := run(tool, "-t", j.table, "-D", j.chain, strconv.Itoa(j.pos)); err != nil {
				return err
			}
		}
		for t, cs := range chains {
			for _, c := range cs {
				run(tool, "-t", t, "-F", c)
			}
			for _, c := range cs {
				if _, err := run(tool, "-t", t, "-X", c); err != nil {
					return err
				}
			}
		}
		if len(jumps) > 0 || len(chains) > 0 {
			step("%s: removed %d rules and %d chains left behind", tool, len(jumps), countChains(chains))
		}
	}
	return nil
}

// removeEmptyTables deletes the iptables-nft tables created since the record, once
// they hold nothing (iptables never deletes a table).
func removeEmptyTables(before *hostState) error {
	had := map[string]bool{}
	for _, t := range before.Tables {
		had[t] = true
	}
	now, err := nftTables()
	if err != nil {
		return err
	}
	tools := map[string]string{"ip": "iptables-save", "ip6": "ip6tables-save"}
	for _, t := range now {
		family, name, _ := strings.Cut(t, " ")
		if had[t] || tools[family] == "" {
			continue
		}
		dump, err := run(tools[family], "-t", name)
		if err != nil || normalizeRules(dump) != "" {
			continue // not empty: the host diff reports it
		}
		if _, err := run("nft", "delete", "table", family, name); err != nil {
			return err
		}
		step("deleted empty nftables table %s", t)
	}
	return nil
}

func ours(chain string) bool {
	for _, c := range kubeletChains {
		if chain == c {
			return true
		}
	}
	return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-")
}

func jumpsToOurs(rule []string) bool {
	for i := 0; i+1 < len(rule); i++ {
		if (rule[i] == "-j" || rule[i] == "-g") && ours(rule[i+1]) {
			return true
		}
	}
	return false
}

func countChains(m map[string][]string) int {
	c := 0
	for _, v := range m {
		c += len(v)
	}
	return c
}

// removeLinks deletes the bridge and any interface that appeared since the record
// (pod veths left by an unfinished teardown).
func (n *node) removeLinks(before *hostState) error {
	now, err := captureHost()
	if err != nil {
		return err
	}
	had := map[string]bool{}
	for _, l := range before.Links {
		had[l] = true
	}
	for _, l := range now.Links {
		if !had[l] && (l == bridgeName || strings.HasPrefix(l, "veth")) {
			if _, err := run("ip", "link", "del", l); err != nil {
				return err
			}
			step("deleted link %s", l)
		}
	}
	return nil
}

// removeCgroups removes the kubelet's kubepods cgroups from every hierarchy.
func removeCgroups() {
	hier, _ := os.ReadDir("/sys/fs/cgroup")
	removed := 0
	for _, h := range hier {
		top := filepath.Join("/sys/fs/cgroup", h.Name(), "kubepods")
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			for i := 0; i < 20; i++ {
				if err := syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
					removed++
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if removed > 0 {
		step("removed %d kubepods cgroups", removed)
	}
}

func (n *node) status() error {
	for _, c := range components {
		if pid, ok := n.running(c); ok {
			fmt.Printf("%-24s running (pid %d, %d MiB)\n", c, pid, rssKB(pid)/1024)
		} else {
			fmt.Printf("%-24s not running\n", c)
		}
	}
	if _, ok := n.running("kube-apiserver"); ok {
		out, err := n.kubectl("get", "pods", "-A", "-o", "wide")
		fmt.Print(out)
		if err != nil {
			return err
		}
	}
	fmt.Printf("KUBECONFIG=%s\n", n.adminKubeconfig())
	return nil
}
