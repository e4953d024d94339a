package measure

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// Proc is what /proc says about one process.
type Proc struct {
	RSSMB  float64 `json:"rss_mb"` // VmRSS
	HWMMB  float64 `json:"hwm_mb"` // VmHWM: peak RSS since start
	CPUSec float64 `json:"cpu_s"`  // user + system time since start
}

// ReadProc reads VmRSS, VmHWM and the CPU time of pid.
func ReadProc(pid int) (Proc, error) {
	var p Proc
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[0], 64)
		switch key {
		case "VmRSS":
			p.RSSMB = kb / 1024
		case "VmHWM":
			p.HWMMB = kb / 1024
		}
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// The command name is in parentheses and may hold spaces: count fields
	// after the last ')'. utime and stime are fields 14 and 15.
	s := string(raw)
	if i := strings.LastIndex(s, ")"); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			p.CPUSec = (u + st) / clockTicks
		}
	}
	return p, nil
}

// FindProcess returns the pid of the first process named comm (e.g.
// "beam.smp" for RabbitMQ), 0 if none.
func FindProcess(comm string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	return 0
}

// Usage is one process's resources over a run.
type Usage struct {
	MaxRSSMB float64 `json:"max_rss_mb"` // highest VmRSS sampled during the run
	EndRSSMB float64 `json:"end_rss_mb"`
	HWMMB    float64 `json:"hwm_mb"` // VmHWM at the end (peak since start)
	CPUSec   float64 `json:"cpu_s"`  // CPU time spent during the run
	// CPUPerWriteMS is CPUSec per 2xx write, filled in by the caller.
	CPUPerWriteMS float64 `json:"cpu_per_write_ms,omitempty"`
}

// Sampler watches the RSS and CPU of named processes while a run goes on.
type Sampler struct {
	pids  map[string]int
	start map[string]Proc
	mu    sync.Mutex
	max   map[string]float64
	stop  func()
}

// StartSampler samples every interval until Stop.
func StartSampler(pids map[string]int, interval time.Duration) *Sampler {
	s := &Sampler{pids: pids, start: map[string]Proc{}, max: map[string]float64{}}
	for name, pid := range pids {
		if p, err := ReadProc(pid); err == nil {
			s.start[name] = p
			s.max[name] = p.RSSMB
		}
	}
	s.stop = Every(interval, s.sample)
	return s
}

func (s *Sampler) sample() {
	for name, pid := range s.pids {
		if p, err := ReadProc(pid); err == nil {
			s.mu.Lock()
			s.max[name] = max(s.max[name], p.RSSMB)
			s.mu.Unlock()
		}
	}
}

// Stop ends sampling and returns each process's usage over the run.
func (s *Sampler) Stop() map[string]Usage {
	s.stop()
	out := map[string]Usage{}
	for name, pid := range s.pids {
		p, err := ReadProc(pid)
		if err != nil {
			continue
		}
		s.mu.Lock()
		out[name] = Usage{MaxRSSMB: s.max[name], EndRSSMB: p.RSSMB, HWMMB: p.HWMMB, CPUSec: p.CPUSec - s.start[name].CPUSec}
		s.mu.Unlock()
	}
	return out
}

// RSS is a process's current resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) {
	p, err := ReadProc(pid)
	return int64(p.RSSMB * (1 << 20)), err
}

// PeakRSS is a process's peak resident set size (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	p, err := ReadProc(pid)
	return int64(p.HWMMB * (1 << 20)), err
}
