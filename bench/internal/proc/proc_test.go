package proc

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	line := "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 99 1000 200\n"
	u, st, err := parseStatSplit([]byte(line))
	if got := u + st; err != nil || got != 325 {
		t.Fatalf("parseStatSplit = %d+%d, %v; want 325", u, st, err)
	}
	if _, _, err := parseStatSplit([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestParseIO(t *testing.T) {
	io := "rchar: 1\nwchar: 2\nsyscr: 3930\nsyscw: 2000\nread_bytes: 0\n"
	r, w, err := parseIO([]byte(io))
	if err != nil || r != 3930 || w != 2000 {
		t.Fatalf("parseIO = %d, %d, %v; want 3930, 2000", r, w, err)
	}
	if _, _, err := parseIO([]byte("rchar: 1\n")); err == nil {
		t.Fatal("no syscr/syscw parsed")
	}
}

func TestSelf(t *testing.T) {
	if _, err := CPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	rss, err := RSSKiB(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("rss %d %v", rss, err)
	}
	r0, _, err := Syscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile("/proc/self/stat"); err != nil {
		t.Fatal(err)
	}
	if r1, _, err := Syscalls(os.Getpid()); err != nil || r1 <= r0 {
		t.Fatalf("reads %d then %d (%v): a read syscall was not counted", r0, r1, err)
	}
	if ClockTicks() <= 0 {
		t.Fatal("clock ticks")
	}
}

func TestParseStatSplit(t *testing.T) {
	line := []byte("4242 (infura gateway) S 1 4242 4242 0 -1 4194560 1000 0 0 0 731 129 0 0 20 0 9 0 100 0 0")
	u, s, err := parseStatSplit(line)
	if err != nil || u != 731 || s != 129 {
		t.Fatalf("utime %d stime %d err %v, want 731 129", u, s, err)
	}
	if _, _, err := parseStatSplit([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("a short line parsed")
	}
}
