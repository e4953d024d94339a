package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CPU time per message, of this process (the client) and of the local
// broker, is reported next to the throughput: on a shared machine the
// throughput swings with what else runs, while the CPU an implementation
// spends (and makes the broker spend) per message is a property of the
// implementation. Broker CPU is only measured when the broker runs on this
// machine (its beam.smp process is found, or named by BENCH_BROKER_PID); as
// other clients may use the same broker, the broker's CPU rate in the pause
// before each run is taken as background and subtracted.

const clockTicks = 100 // USER_HZ on Linux

var (
	brokerOnce sync.Once
	brokerPID  int
	// background is the broker's CPU use per second of wall time measured
	// just before the current run.
	background float64
)

// measureBackground sleeps for d and records the broker's CPU rate meanwhile.
func measureBackground(d time.Duration) {
	pid := findBroker()
	before, ok := processCPU(pid)
	start := time.Now()
	time.Sleep(d)
	after, ok2 := processCPU(pid)
	background = 0
	if pid > 0 && ok && ok2 {
		background = float64(after-before) / float64(time.Since(start))
	}
}

func findBroker() int {
	brokerOnce.Do(func() {
		if pid, err := strconv.Atoi(os.Getenv("BENCH_BROKER_PID")); err == nil {
			brokerPID = pid
			return
		}
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, dir := range dirs {
			cmd, err := os.ReadFile(filepath.Join(dir, "cmdline"))
			if err != nil || !bytes.Contains(cmd, []byte("beam.smp")) {
				continue
			}
			if bytes.Contains(cmd, []byte("\x00-s\x00rabbit\x00boot\x00")) {
				brokerPID, _ = strconv.Atoi(filepath.Base(dir))
				return
			}
		}
	})
	return brokerPID
}

// processCPU is the user+system CPU time a process has used.
func processCPU(pid int) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which is in parentheses.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks, true
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type cpuMeter struct {
	client, broker time.Duration
	brokerOK       bool
	start          time.Time
}

func startCPU() cpuMeter {
	m := cpuMeter{client: selfCPU(), start: time.Now()}
	if pid := findBroker(); pid > 0 {
		m.broker, m.brokerOK = processCPU(pid)
	}
	return m
}

// report adds client and broker CPU microseconds per message to b.
func (m cpuMeter) report(b *testing.B, n int) {
	b.ReportMetric(float64((selfCPU()-m.client).Microseconds())/float64(n), "client-µs/msg")
	if !m.brokerOK {
		return
	}
	if now, ok := processCPU(findBroker()); ok {
		used := float64(now-m.broker) - background*float64(time.Since(m.start))
		b.ReportMetric(max(used, 0)/float64(time.Microsecond)/float64(n), "broker-µs/msg")
	}
}
