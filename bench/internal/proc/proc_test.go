package proc

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	line := "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 99 1000 200\n"
	got, err := parseStat([]byte(line))
	if err != nil || got != 325 {
		t.Fatalf("parseStat = %d, %v; want 325", got, err)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
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
	if ClockTicks() <= 0 {
		t.Fatal("clock ticks")
	}
}
