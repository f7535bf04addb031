// Command footprint counts what one request executes in the gateway's handler and in
// the reference relay's, on an in-memory upstream: instructions, and the distinct code
// lines, pages and functions they sit on. It runs the gateway's BenchmarkFootprint
// under valgrind's callgrind, counting inside one request's function only, so its
// figures are the same on a busy machine as on an idle one; times are not (bench/README.md,
// Round 12).
//
//	./task bench:footprint                       (from the repo root; installs valgrind)
//	go -C bench run ./cmd/footprint -repo .. [-n 200] [-top 25]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

var paths = []struct{ short, name string }{
	{"blocknumber", "GET /blocknumber (cache off)"},
	{"post", "POST / eth_blockNumber (cache off)"},
	{"cachehit", "GET /blocknumber, cache hit"},
}

func main() {
	repo := flag.String("repo", "", "gateway repository root (default: found above the working directory)")
	n := flag.Int("n", 200, "requests counted per handler (after 200 uncounted ones)")
	top := flag.Int("top", 0, "also list the gateway's K functions with the most code lines, per path")
	only := flag.String("only", "", "one path: blocknumber, post or cachehit (default: all)")
	flag.Parse()
	if *n < 10 {
		log.Fatal("footprint: -n: want at least 10 requests")
	}
	if _, err := exec.LookPath("valgrind"); err != nil {
		log.Fatal("footprint: valgrind not found (apt-get install valgrind; ./task bench:footprint does)")
	}
	root, err := findRepo(*repo)
	if err != nil {
		log.Fatalf("footprint: %v", err)
	}
	dir, err := os.MkdirTemp("", "footprint")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "gateway.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "./gateway/")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("footprint: building the gateway's tests: %v", err)
	}
	fmt.Printf("%-36s %-8s %9s %11s %9s %6s %5s\n", "path", "handler", "Ir/req", "code lines", "KiB", "pages", "fns")
	for _, p := range paths {
		if *only != "" && *only != p.short {
			continue
		}
		var gw, relay *footprint
		for _, who := range []string{"gateway", "relay"} {
			f, err := measure(bin, dir, who, p.short, *n)
			if err != nil {
				log.Fatalf("footprint: %s %s: %v", who, p.short, err)
			}
			fmt.Printf("%-36s %-8s %9.0f %11d %9.1f %6d %5d\n", p.name, who, f.irPerReq, len(f.lines), float64(len(f.lines))*64/1024, len(f.pages), len(f.fns))
			if who == "gateway" {
				gw = f
			} else {
				relay = f
			}
		}
		fmt.Printf("%-36s %-8s %9.2f %11.2f\n", "", "ratio", gw.irPerReq/relay.irPerReq, float64(len(gw.lines))/float64(len(relay.lines)))
		if *top > 0 {
			for _, fn := range gw.topFns(*top) {
				fmt.Printf("    %4d lines %6.0f Ir  %s\n", fn.lines, fn.ir, fn.name)
			}
		}
	}
}

// measure runs one handler's sub-benchmark under callgrind and reads its profile.
func measure(bin, dir, who, short string, n int) (*footprint, error) {
	out := filepath.Join(dir, who+"-"+short+".callgrind")
	cmd := exec.Command("valgrind", "--tool=callgrind", "--callgrind-out-file="+out,
		"--toggle-collect=*.footprintOne", "--dump-instr=yes", "--compress-pos=no", "--compress-strings=no",
		bin, "-test.run", "^$", "-test.bench", "^BenchmarkFootprint$/^"+who+"$/^"+short+"$",
		"-test.benchtime", fmt.Sprintf("%dx", n))
	// Callgrind asserts on the runtime's preemption signals (SIGURG) arriving mid-block,
	// and cannot run RDTSCP, which the runtime's contended locks read the clock with. It
	// counts whatever thread runs while the request's function is on the stack: with one
	// P no other goroutine (the head follower, the collector's workers) runs inside it.
	cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off", "GOMAXPROCS=1")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v\n%s", err, tail(msg))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f)
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func findRepo(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "gateway", "overhead_bench_test.go")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no gateway repository above %s (use -repo)", wd)
		}
	}
}
