package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	At      time.Time
	RSSKiB  int64         // VmRSS
	CPU     time.Duration // utime+stime
	Threads int64
	Writes  int64 // write-like system calls so far (syscw of /proc/PID/io)
}

// readProc reads /proc/PID/status and /proc/PID/stat.
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range bytes.Split(status, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) > 0 {
				s.RSSKiB, _ = strconv.ParseInt(string(f[0]), 10, 64)
			}
		}
		if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			s.Threads, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// comm may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range bytes.Split(io, []byte{'\n'}) {
			if v, ok := bytes.CutPrefix(line, []byte("syscw:")); ok {
				s.Writes, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			}
		}
	}
	return s, nil
}

// selfCPU is the CPU time (user+system) pushbench itself has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNoFile lifts RLIMIT_NOFILE to its hard limit and returns the result.
func raiseNoFile() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

// loadAvg1 is the host's 1-minute load average (0 if unreadable).
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(string(f[0]), 64)
	return v
}
