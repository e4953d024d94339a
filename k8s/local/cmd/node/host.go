package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// hostState is what the node may change on the machine, recorded before the first
// change and compared after teardown.
type hostState struct {
	Sysctls  map[string]string // /proc/sys path -> value, writable entries only
	Paths    map[string]bool   // directories the node may create -> existed before
	Iptables map[string]string // "iptables"/"ip6tables" -> rules (no counters)
	Links    []string          // network interfaces
	Mounts   []string          // mount points
	Cgroups  []string          // first-level cgroups of every hierarchy
	LoAddrs  string            // addresses on lo
	Tables   []string          // nftables tables ("ip nat", ...)
}

// createdPaths are directories the runtime creates at fixed places on the host.
var createdPaths = []string{
	"/run/containerd", "/var/run/netns", "/var/lib/cni", "/run/nri", "/run/personscore-node",
	"/var/log/containers", "/var/log/pods", "/var/run/kubernetes",
}

// volatileSysctls change by themselves; they are neither restored nor compared.
var volatileSysctls = regexp.MustCompile(`^/proc/sys/(kernel/random/|kernel/ns_last_pid|fs/|vm/drop_caches|kernel/printk_ratelimit|net/netfilter/nf_conntrack_count|kernel/sched_domain|kernel/hung_task|dev/)`)

func captureHost() (*hostState, error) {
	h := &hostState{Sysctls: map[string]string{}, Paths: map[string]bool{}, Iptables: map[string]string{}}
	err := filepath.WalkDir("/proc/sys", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() || volatileSysctls.MatchString(p) {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm()&0o200 == 0 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		h.Sysctls[p] = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range createdPaths {
		_, err := os.Stat(p)
		h.Paths[p] = err == nil
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		out, err := run(tool + "-save")
		if err != nil {
			return nil, err
		}
		h.Iptables[tool] = normalizeRules(out)
	}
	out, err := run("ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			h.Links = append(h.Links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	sort.Strings(h.Links)
	if h.Mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	hier, _ := os.ReadDir("/sys/fs/cgroup")
	for _, hd := range hier {
		subs, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", hd.Name()))
		for _, s := range subs {
			if s.IsDir() {
				h.Cgroups = append(h.Cgroups, hd.Name()+"/"+s.Name())
			}
		}
	}
	sort.Strings(h.Cgroups)
	if h.LoAddrs, err = run("ip", "-o", "addr", "show", "dev", "lo"); err != nil {
		return nil, err
	}
	if h.Tables, err = nftTables(); err != nil {
		return nil, err
	}
	return h, nil
}

// nftTables lists the nftables tables (iptables-nft keeps its tables there).
func nftTables() ([]string, error) {
	out, err := run("nft", "list", "tables")
	if err != nil {
		return nil, err
	}
	var tables []string
	for _, line := range strings.Split(out, "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "table "); ok {
			tables = append(tables, t)
		}
	}
	sort.Strings(tables)
	return tables, nil
}

// normalizeRules drops comments and packet counters from iptables-save output, and
// tables holding nothing but empty built-in chains with policy ACCEPT (iptables-nft
// creates such a table on first use and never removes it: the same state as none).
func normalizeRules(s string) string {
	counters := regexp.MustCompile(` \[\d+:\d+\]$`)
	builtinAccept := regexp.MustCompile(`^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT$`)
	var b strings.Builder
	var table []string
	empty := true
	flush := func() {
		if len(table) > 0 && !empty {
			b.WriteString(strings.Join(table, "\n") + "\n")
		}
		table, empty = nil, true
	}
	for _, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = counters.ReplaceAllString(line, "")
		switch {
		case strings.HasPrefix(line, "*"):
			flush()
		case line == "COMMIT":
		case !builtinAccept.MatchString(line):
			empty = false
		}
		table = append(table, line)
	}
	flush()
	return b.String()
}

// mountPoints lists every mount point of this mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			mps = append(mps, unescapeMount(fields[4]))
		}
	}
	sort.Strings(mps)
	return mps, sc.Err()
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func (n *node) hostRecord() string { return n.path("host-before.json") }

// recordHost saves the host state once, before the node changes anything.
func (n *node) recordHost() error {
	if _, err := os.Stat(n.hostRecord()); err == nil {
		return nil
	}
	h, err := captureHost()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.state, 0o755); err != nil {
		return err
	}
	step("recorded host state (%d sysctls, iptables, links, mounts, cgroups) in %s", len(h.Sysctls), n.hostRecord())
	return os.WriteFile(n.hostRecord(), b, 0o600)
}

func (n *node) loadHostRecord() (*hostState, error) {
	b, err := os.ReadFile(n.hostRecord())
	if err != nil {
		return nil, err
	}
	var h hostState
	return &h, json.Unmarshal(b, &h)
}

// restoreSysctls writes back every recorded value that changed (ip_forward first: writing
// it resets the per-interface forwarding flags).
func restoreSysctls(before *hostState) ([]string, error) {
	keys := make([]string, 0, len(before.Sysctls))
	for k := range before.Sysctls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		fi, fj := strings.HasSuffix(keys[i], "/ip_forward"), strings.HasSuffix(keys[j], "/ip_forward")
		if fi != fj {
			return fi
		}
		return keys[i] < keys[j]
	})
	var restored []string
	var errs []string
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			continue // an interface's entry, gone with it
		}
		now := strings.TrimSpace(string(b))
		if now == before.Sysctls[k] {
			continue
		}
		if err := os.WriteFile(k, []byte(before.Sysctls[k]), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		restored = append(restored, fmt.Sprintf("%s %s -> %s", strings.TrimPrefix(k, "/proc/sys/"), now, before.Sysctls[k]))
	}
	if len(errs) > 0 {
		return restored, fmt.Errorf("restore sysctls: %s", strings.Join(errs, "; "))
	}
	return restored, nil
}

// diffHost lists every difference between the recorded and the current state.
func diffHost(before, now *hostState) []string {
	var d []string
	for k, v := range before.Sysctls {
		if cur, ok := now.Sysctls[k]; ok && cur != v {
			d = append(d, fmt.Sprintf("sysctl %s: %q, was %q", k, cur, v))
		}
	}
	for p, existed := range before.Paths {
		if now.Paths[p] != existed {
			d = append(d, fmt.Sprintf("path %s: exists=%v, was %v", p, now.Paths[p], existed))
		}
	}
	for tool, rules := range before.Iptables {
		if now.Iptables[tool] != rules {
			d = append(d, fmt.Sprintf("%s-save differs:\n%s", tool, lineDiff(rules, now.Iptables[tool])))
		}
	}
	if a, b := strings.Join(before.Links, " "), strings.Join(now.Links, " "); a != b {
		d = append(d, fmt.Sprintf("links: %s, was %s", b, a))
	}
	d = append(d, setDiff("mount", before.Mounts, now.Mounts)...)
	d = append(d, setDiff("cgroup", before.Cgroups, now.Cgroups)...)
	d = append(d, setDiff("nftables table", before.Tables, now.Tables)...)
	if before.LoAddrs != now.LoAddrs {
		d = append(d, fmt.Sprintf("lo addresses: %q, was %q", now.LoAddrs, before.LoAddrs))
	}
	sort.Strings(d)
	return d
}

func setDiff(what string, before, now []string) []string {
	was := map[string]int{}
	for _, s := range before {
		was[s]++
	}
	var d []string
	for _, s := range now {
		if was[s] == 0 {
			d = append(d, fmt.Sprintf("%s added: %s", what, s))
		}
		was[s]--
	}
	for s, c := range was {
		if c > 0 {
			d = append(d, fmt.Sprintf("%s removed: %s", what, s))
		}
	}
	return d
}

func lineDiff(a, b string) string {
	return strings.Join(setDiff("rule", strings.Split(a, "\n"), strings.Split(b, "\n")), "\n")
}
