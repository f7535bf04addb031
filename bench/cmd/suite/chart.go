package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chart draws three panels side by side: latency percentiles, throughput
// and CPU per request (with the floor and each path's target), one bar
// group per measured path.
func (r *results) chart(path string) error {
	// Only runs that served requests: a path that answered nothing but
	// errors has no latency or CPU per request worth drawing.
	// The floor bar shows what the ratios divide by (the mean of both
	// floor runs when there are two).
	floorRun := *r.Floor
	if r.FloorCPUusPerReq > 0 {
		floorRun.CPUusPerReq = r.FloorCPUusPerReq
	}
	runs := []*run{&floorRun}
	for _, p := range r.Paths {
		if p.Status != "n/a" && p.Requests > p.Errors {
			runs = append(runs, p)
		}
	}
	names := make([]string, len(runs))
	for i, p := range runs {
		names[i] = shortName(p.Key)
	}

	lat := plot.New()
	lat.Title.Text = "Latency (ms)"
	lat.Y.Label.Text = "ms"
	colors := []color.Color{
		color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff},
		color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff},
		color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff},
	}
	width := vg.Points(9)
	for i, q := range []struct {
		name string
		get  func(*run) float64
	}{
		{"p50", func(p *run) float64 { return p.LatencyMS.P50 }},
		{"p90", func(p *run) float64 { return p.LatencyMS.P90 }},
		{"p99", func(p *run) float64 { return p.LatencyMS.P99 }},
	} {
		vals := make(plotter.Values, len(runs))
		for j, p := range runs {
			vals[j] = q.get(p)
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.Color = colors[i]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(i-1) * width
		lat.Add(bars)
		lat.Legend.Add(q.name, bars)
	}
	lat.Legend.Top = true
	lat.NominalX(names...)

	thr := plot.New()
	thr.Title.Text = "Throughput (req/s)"
	vals := make(plotter.Values, len(runs))
	for j, p := range runs {
		vals[j] = p.RPS
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(20))
	if err != nil {
		return err
	}
	bars.Color = colors[0]
	bars.LineStyle.Width = 0
	thr.Add(bars)
	thr.NominalX(names...)

	cpu := plot.New()
	cpu.Title.Text = "Server CPU per request (µs)"
	for j, p := range runs {
		vals[j] = p.CPUusPerReq
	}
	cbars, err := plotter.NewBarChart(vals, vg.Points(20))
	if err != nil {
		return err
	}
	cbars.Color = colors[1]
	cbars.LineStyle.Width = 0
	cpu.Add(cbars)
	// A short horizontal mark at target × floor over each judged path.
	floor := r.FloorCPUusPerReq
	if floor == 0 {
		floor = r.Floor.CPUusPerReq
	}
	var marks plotter.XYs
	for j, p := range runs {
		if p.Target > 0 {
			marks = append(marks, plotter.XY{X: float64(j), Y: p.Target * floor})
		}
	}
	if len(marks) > 0 {
		sc, err := plotter.NewScatter(marks)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Shape = draw.BoxGlyph{}
		sc.GlyphStyle.Radius = vg.Points(3)
		sc.GlyphStyle.Color = colors[2]
		cpu.Add(sc)
		cpu.Legend.Add("target", sc)
		cpu.Legend.Top = true
	}
	cpu.NominalX(names...)
	cpu.Y.Max = math.Max(cpu.Y.Max, 2.2*floor)

	for _, p := range []*plot.Plot{lat, thr, cpu} {
		p.X.Tick.Label.Rotation = math.Pi / 5
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
		p.Y.Min = 0
		// Headroom above the tallest bar keeps the legend off the bars.
		p.Y.Max *= 1.3
	}

	const w, h = 15 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	// A title strip above the three panels.
	title := fmt.Sprintf("infura-gateway vs fixed-node floor — %d cores, %s, %s", r.Machine.NProc,
		r.Machine.CPUModel, r.Timestamp)
	font := plot.DefaultFont
	font.Size = vg.Points(13)
	sty := draw.TextStyle{Color: color.Black, Font: font, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter}
	dc.FillText(sty, vg.Point{X: w / 2, Y: h - vg.Points(18)}, title)
	body := draw.Crop(dc, 0, 0, 0, -vg.Points(26))
	tiles := draw.Tiles{Rows: 1, Cols: 3, PadX: vg.Points(16), PadTop: vg.Points(4), PadBottom: vg.Points(4),
		PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{lat, thr, cpu}}, tiles, body)
	for j, p := range []*plot.Plot{lat, thr, cpu} {
		p.Draw(canvases[0][j])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shortName turns a run key into an axis label.
func shortName(key string) string {
	switch key {
	case "floor":
		return "floor (node)"
	case "http_blocknumber":
		return "/blocknumber pass"
	case "ws_blocknumber":
		return "/ws/blocknumber"
	case "gasprice_cache":
		return "/gasprice hit"
	case "blocknumber_cached":
		return "/blocknumber cached"
	case "rpc_post":
		return "POST /"
	case "socket2socket":
		return "s2s mux"
	case "socket2socket_per_client":
		return "s2s per-client"
	}
	return strings.ReplaceAll(key, "_", " ")
}
