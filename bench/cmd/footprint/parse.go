package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// footprint is what one request executed, read from a callgrind profile taken with
// --dump-instr=yes --compress-pos=no --compress-strings=no: an instruction is "hot" when
// at least half the counted requests ran it (the rest are rare branches: a pool's New,
// a clock's tick).
type footprint struct {
	requests int
	irPerReq float64
	lines    map[uint64]bool // 64-byte code lines of hot instructions
	pages    map[uint64]bool // 4 KiB pages of them
	fns      map[string]bool // functions with a hot instruction
	count    map[uint64]int64
	fnOf     map[uint64]string
}

type fnFootprint struct {
	name  string
	lines int
	ir    float64
}

// entryFn is the function every counted request runs once (BenchmarkFootprint's).
const entryFn = ".footprintOne"

func parse(r io.Reader) (*footprint, error) {
	f := &footprint{count: map[uint64]int64{}, fnOf: map[uint64]string{}}
	var fn string
	var total int64
	callCost := false // the next cost line is a call's inclusive cost
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "fn="):
			fn = line[3:]
		case strings.HasPrefix(line, "calls="):
			callCost = true
		case strings.HasPrefix(line, "0x"):
			fields := strings.Fields(line)
			addr, err := strconv.ParseUint(fields[0][2:], 16, 64)
			if err != nil || len(fields) < 2 {
				return nil, fmt.Errorf("cost line %q: want an absolute address (--compress-pos=no)", line)
			}
			ir, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("cost line %q: %v", line, err)
			}
			f.fnOf[addr] = fn
			if callCost {
				// The callee's inclusive cost, counted in the callee's own lines.
				callCost = false
				continue
			}
			f.count[addr] += ir
			total += ir
		case strings.HasPrefix(line, "+"), strings.HasPrefix(line, "-"), strings.HasPrefix(line, "*"):
			return nil, fmt.Errorf("cost line %q: want absolute positions (--compress-pos=no)", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for addr, c := range f.count {
		if strings.HasSuffix(f.fnOf[addr], entryFn) && int(c) > f.requests {
			f.requests = int(c)
		}
	}
	if f.requests == 0 {
		return nil, fmt.Errorf("no instruction of %s counted: was the profile collected with --toggle-collect=*%s?", entryFn, entryFn)
	}
	f.irPerReq = float64(total) / float64(f.requests)
	f.lines, f.pages, f.fns = map[uint64]bool{}, map[uint64]bool{}, map[string]bool{}
	for addr, c := range f.count {
		if 2*c >= int64(f.requests) {
			f.lines[addr>>6], f.pages[addr>>12], f.fns[f.fnOf[addr]] = true, true, true
		}
	}
	return f, nil
}

// topFns lists the k functions with the most hot code lines.
func (f *footprint) topFns(k int) []fnFootprint {
	lines := map[string]map[uint64]bool{}
	ir := map[string]int64{}
	for addr, c := range f.count {
		if 2*c < int64(f.requests) {
			continue
		}
		name := f.fnOf[addr]
		if lines[name] == nil {
			lines[name] = map[uint64]bool{}
		}
		lines[name][addr>>6] = true
		ir[name] += c
	}
	out := make([]fnFootprint, 0, len(lines))
	for name, l := range lines {
		out = append(out, fnFootprint{name: name, lines: len(l), ir: float64(ir[name]) / float64(f.requests)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].lines != out[j].lines {
			return out[i].lines > out[j].lines
		}
		return out[i].name < out[j].name
	})
	if len(out) > k {
		out = out[:k]
	}
	return out
}
