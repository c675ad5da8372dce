// Package procstat reads CPU time from Linux's /proc, for the benchmarks
// that say where the CPU of a task went: the load command's per-process
// CPU notes and the backend CPU of invoice's BenchmarkPDFUnit read a
// process's from /proc/<pid>/stat, which works for any process of the same
// machine that the caller may see (PostgreSQL's backends, redis-server);
// the load command's machine-wide view reads every CPU's states from
// /proc/stat (ReadMachine).
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// UserHZ is the unit of the CPU times in /proc (USER_HZ). It is 100 on
// every Linux architecture Go runs on.
const UserHZ = 100

// Stat is what this package reads from /proc/<pid>/stat.
type Stat struct {
	PPID   int
	CPU    time.Duration // utime + stime
	Reaped time.Duration // cutime + cstime: children waited for
}

// Read parses /proc/<pid>/stat (proc(5)).
func Read(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return Parse(data)
}

// Parse parses the contents of a /proc/<pid>/stat file. The command name,
// which may hold spaces and parentheses, ends at the last ')'.
func Parse(data []byte) (Stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return Stat{}, errors.New("malformed stat: no ')'")
	}
	// After "pid (comm) ": state(3) ppid(4) ... utime(14) stime(15)
	// cutime(16) cstime(17); f[0] is the state.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("malformed stat: %d fields after comm", len(f))
	}
	n := make([]int64, 0, 5)
	for _, idx := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[idx], 10, 64)
		if err != nil {
			return Stat{}, fmt.Errorf("malformed stat field %d: %w", idx+3, err)
		}
		n = append(n, v)
	}
	tick := time.Second / UserHZ
	return Stat{
		PPID:   int(n[0]),
		CPU:    time.Duration(n[1]+n[2]) * tick,
		Reaped: time.Duration(n[3]+n[4]) * tick,
	}, nil
}

// CPU is the summed CPU time (user + system) of the processes pids so
// far; an error when one of them cannot be read (it exited, or runs on
// another machine).
func CPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		st, err := Read(pid)
		if err != nil {
			return 0, err
		}
		total += st.CPU
	}
	return total, nil
}

// TreeCPU is the CPU time of pid, of its children that have exited and
// been reaped, and of its live children (one level: PostgreSQL's backends
// and auxiliary processes are the postmaster's children).
func TreeCPU(pid int) (time.Duration, error) {
	root, err := Read(pid)
	if err != nil {
		return 0, err
	}
	total := root.CPU + root.Reaped
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		st, err := Read(child)
		if err != nil {
			continue // exited meanwhile: counted in Reaped next time
		}
		if st.PPID == pid {
			total += st.CPU
		}
	}
	return total, nil
}

// Machine is the time all of the machine's CPUs spent in each state so
// far, from the "cpu" line of /proc/stat (proc(5)): what no process's own
// counters show, such as the kernel's threads (a file system's journal,
// writeback) and the time the CPUs sat idle.
type Machine struct {
	User   time.Duration // user and nice
	Kernel time.Duration // system, irq and softirq
	Idle   time.Duration
	IOWait time.Duration // idle with I/O outstanding
	Steal  time.Duration // taken by the hypervisor
}

// ReadMachine parses /proc/stat.
func ReadMachine() (Machine, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Machine{}, err
	}
	return ParseMachine(data)
}

// ParseMachine parses the contents of /proc/stat: its first line, "cpu"
// and the times in USER_HZ of user, nice, system, idle, iowait, irq,
// softirq and steal (older kernels stop earlier: the missing ones are 0).
func ParseMachine(data []byte) (Machine, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return Machine{}, fmt.Errorf("malformed /proc/stat: first line %.60q", line)
	}
	var n [8]int64
	for i := range n {
		if i+1 >= len(f) {
			break
		}
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return Machine{}, fmt.Errorf("malformed /proc/stat field %d: %w", i+1, err)
		}
		n[i] = v
	}
	tick := time.Second / UserHZ
	return Machine{
		User:   time.Duration(n[0]+n[1]) * tick,
		Kernel: time.Duration(n[2]+n[5]+n[6]) * tick,
		Idle:   time.Duration(n[3]) * tick,
		IOWait: time.Duration(n[4]) * tick,
		Steal:  time.Duration(n[7]) * tick,
	}, nil
}

// Sub returns the time spent in each state from o to m.
func (m Machine) Sub(o Machine) Machine {
	return Machine{User: m.User - o.User, Kernel: m.Kernel - o.Kernel, Idle: m.Idle - o.Idle,
		IOWait: m.IOWait - o.IOWait, Steal: m.Steal - o.Steal}
}

// Total is the time of every state together.
func (m Machine) Total() time.Duration { return m.User + m.Kernel + m.Idle + m.IOWait + m.Steal }
