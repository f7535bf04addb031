// Package proc reads the CPU time and memory of a process from /proc and
// raises the open-file limit of the current process (Linux only).
package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// ClockTicks returns the kernel's USER_HZ (`getconf CLK_TCK`), the unit of
// utime and stime in /proc/<pid>/stat. It falls back to 100, the value on
// every mainstream Linux architecture.
func ClockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// CPUTicks returns utime+stime of pid in clock ticks.
func CPUTicks(pid int) (int64, error) {
	u, s, err := CPUTimes(pid)
	return u + s, err
}

// CPUTimes returns pid's user-space (utime) and kernel (stime) CPU time in clock ticks,
// from one read: the process's own code apart from the kernel's time in its syscalls.
func CPUTimes(pid int) (utime, stime int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatSplit(b)
}

// parseStatSplit extracts fields 14 (utime) and 15 (stime). The command name
// (field 2) is in parentheses and may contain spaces, so fields are
// counted from the last ')'.
func parseStatSplit(b []byte) (utime, stime int64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("cannot parse /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14 -> f[11], stime f[12].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("cannot parse /proc stat: %d fields", len(f))
	}
	if utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("cannot parse utime: %w", err)
	}
	if stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("cannot parse stime: %w", err)
	}
	return utime, stime, nil
}

// Syscalls returns the read and write syscalls pid has made, from syscr and syscw in
// /proc/<pid>/io (reads that found nothing and parked count too). Unlike CPU time, the
// count does not move when another process loads the machine.
func Syscalls(pid int) (reads, writes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseIO(b)
}

func parseIO(b []byte) (reads, writes int64, err error) {
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("cannot parse %s: %w", k, err)
		}
		if k == "syscr" {
			reads = n
		} else {
			writes = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("no syscr/syscw lines")
	}
	return reads, writes, nil
}

// RSSKiB returns VmRSS of pid in KiB from /proc/<pid>/status.
func RSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

func parseRSS(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// RaiseNoFile raises RLIMIT_NOFILE of this process (and so of the children
// it starts afterwards) to at least want: the soft limit up to the hard
// limit, and the hard limit too when the process may (root). It returns the
// soft limit in force afterwards. The user's shell limits are untouched.
func RaiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}
