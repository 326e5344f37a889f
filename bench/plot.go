package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The plot's size and margins, in pixels.
const (
	plotW, plotH                             = 960, 600
	plotLeft, plotRight, plotTop, plotBottom = 90, 230, 60, 70
	plotWidth, plotHeight                    = plotW - plotLeft - plotRight, plotH - plotTop - plotBottom
	legendStep                               = 26
)

var (
	colBlue   = color.RGBA{31, 119, 180, 255}
	colOrange = color.RGBA{230, 120, 20, 255}
	colGreen  = color.RGBA{44, 160, 44, 255}
	colRed    = color.RGBA{214, 39, 40, 255}
	colBlack  = color.RGBA{0, 0, 0, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colGray   = color.RGBA{120, 120, 120, 255}
)

// plotSeries is one line of the plot.
type plotSeries struct {
	name   string
	col    color.RGBA
	dashed bool
	square bool
	pts    [][2]float64 // N, value
}

// plotRef is a dotted horizontal reference line (a target).
type plotRef struct {
	v     float64
	label string
}

// plotSpec is one chart: its series against N, on a logarithmic y axis of unit.
type plotSpec struct {
	title, yLabel string
	// unit formats a y tick ("50 ms", "200 MB").
	unit   func(float64) string
	series []*plotSeries
	refs   []plotRef
	notes  []string
	ns     []int
	xLabel string
}

// chart is the image being drawn and its axes' ranges: x linear from 0 to xHi, y
// logarithmic from yLo to yHi.
type chart struct {
	img           *image.RGBA
	yLo, yHi, xHi float64
}

// Plot draws one-endpoint change latency (p50 and p99, API write to the kernel) and
// change → traffic p50 against N for portico and kube-proxy in nftables mode, log-scale
// y, with the p50 and p99 targets as reference lines.
func Plot(r *Results, w io.Writer) error { return drawPlot(latencySpec(r), w) }

// PlotMemory draws the peak memory of the proxy with its children, and of the proxy
// process alone, against N for portico and kube-proxy in nftables mode.
func PlotMemory(r *Results, w io.Writer) error { return drawPlot(memorySpec(r), w) }

func drawPlot(sp *plotSpec, w io.Writer) error {
	c := newChart(sp)
	c.drawGrid(sp)
	c.drawFrame(sp)
	c.drawSeries(sp.series)
	c.drawTitles(sp)
	c.drawLegend(sp)
	return png.Encode(w, c.img)
}

// nftablesScales are the N of the run's nftables-mode scales.
func nftablesScales(r *Results) []int {
	var ns []int
	for _, s := range r.Scales {
		ns = append(ns, s.N)
	}
	return ns
}

// addPoints appends to each series the value get returns for its proxy at every N
// (skipping non-positive and missing values).
func addPoints(r *Results, ss []*plotSeries, proxies []string, get []func(p *ProxyRun) float64) {
	for _, s := range r.Scales {
		for i, name := range proxies {
			p := s.Proxy(name)
			if p == nil {
				continue
			}
			if v := get[i](p); v > 0 && ok(v) {
				ss[i].pts = append(ss[i].pts, [2]float64{float64(s.N), v})
			}
		}
	}
}

// latencySpec is the change latency chart.
func latencySpec(r *Results) *plotSpec {
	ss := []*plotSeries{
		{name: "portico p50", col: colBlue},
		{name: "portico p99", col: colBlue, dashed: true, square: true},
		{name: "portico traffic p50", col: colGreen, square: true},
		{name: "kube-proxy p50", col: colOrange},
		{name: "kube-proxy p99", col: colOrange, dashed: true, square: true},
		{name: "kube-proxy traffic p50", col: colRed, square: true},
	}
	p50 := changeOf(func(c *Latency) float64 { return c.P50 })
	p99 := changeOf(func(c *Latency) float64 { return c.P99 })
	traffic := func(p *ProxyRun) float64 {
		if p.Traffic == nil || p.Traffic.One == nil || p.Traffic.One.Traffic.Samples == 0 {
			return math.NaN()
		}
		return p.Traffic.One.Traffic.P50
	}
	addPoints(r, ss, []string{pPortico, pPortico, pPortico, pKP, pKP, pKP},
		[]func(*ProxyRun) float64{p50, p99, traffic, p50, p99, traffic})
	notes := []string{"p50, p99: API write ->", "kernel notification;", "traffic: -> a connection", "reaches the new endpoint",
		"spaced changes,", "minSyncPeriod " + r.Settings.MinSyncPeriod}
	if r.Quick {
		notes = append(notes, "quick run")
	}
	return &plotSpec{title: "One-endpoint change latency, nftables mode", yLabel: "latency (log scale)", unit: msLabel,
		series: ss, ns: nftablesScales(r), notes: notes,
		refs:   []plotRef{{targetChangeP50Ms, "target p50 <= 50 ms"}, {targetChangeP99Ms, "target p99 <= 200 ms"}},
		xLabel: fmt.Sprintf("Services (N), %d endpoints each", r.Settings.Endpoints)}
}

// memorySpec is the memory chart.
func memorySpec(r *Results) *plotSpec {
	ss := []*plotSeries{
		{name: "portico + children", col: colBlue},
		{name: "portico (VmHWM)", col: colBlue, dashed: true, square: true},
		{name: "kube-proxy + children", col: colOrange},
		{name: "kube-proxy (VmHWM)", col: colOrange, dashed: true, square: true},
	}
	with := func(p *ProxyRun) float64 { return mb(p.PeakWithChildrenKiB) }
	hwm := func(p *ProxyRun) float64 { return mb(p.PeakHWM()) }
	addPoints(r, ss, []string{pPortico, pPortico, pKP, pKP}, []func(*ProxyRun) float64{with, hwm, with, hwm})
	notes := []string{"+ children: the proxy and", "its tools' RSS, summed,", "sampled every 100 ms", "from launch to stop"}
	return &plotSpec{title: "Peak memory, nftables mode", yLabel: "MB (log scale)", unit: mbLabel,
		series: ss, ns: nftablesScales(r), notes: notes,
		refs:   []plotRef{{targetRSSWithChildren10kMB, "target at 10k: 100 MB"}, {targetRSSWithChildren50kMB, "target at 50k: 300 MB"}},
		xLabel: fmt.Sprintf("Services (N), %d endpoints each", r.Settings.Endpoints)}
}

// newChart sizes the axes to the points and the reference lines (whole decades on y) and
// paints the background.
func newChart(sp *plotSpec) *chart {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range sp.series {
		for _, p := range s.pts {
			lo, hi = math.Min(lo, p[1]), math.Max(hi, p[1])
		}
	}
	for _, ref := range sp.refs {
		lo, hi = math.Min(lo, ref.v), math.Max(hi, ref.v)
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	c := &chart{img: image.NewRGBA(image.Rect(0, 0, plotW, plotH))}
	draw.Draw(c.img, c.img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	c.yLo = math.Pow(10, math.Floor(math.Log10(lo)))
	c.yHi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if c.yHi <= c.yLo {
		c.yHi = c.yLo * 10
	}
	maxN := 1000.0
	for _, n := range sp.ns {
		maxN = math.Max(maxN, float64(n))
	}
	c.xHi = maxN * 1.08
	return c
}

// xOf is the pixel column of N = n.
func (c *chart) xOf(n float64) int { return plotLeft + int(n/c.xHi*float64(plotWidth)) }

// yOf is the pixel row of value v.
func (c *chart) yOf(v float64) int {
	f := (math.Log10(v) - math.Log10(c.yLo)) / (math.Log10(c.yHi) - math.Log10(c.yLo))
	return plotTop + plotHeight - int(f*float64(plotHeight))
}

// drawGrid draws the grid with y ticks at 1, 2 and 5 per decade and x ticks at 0 and
// every N.
func (c *chart) drawGrid(sp *plotSpec) {
	for d := c.yLo; d < c.yHi*1.001; d *= 10 {
		for _, k := range []float64{1, 2, 5} {
			v := d * k
			if v > c.yHi*1.001 {
				break
			}
			y := c.yOf(v)
			hline(c.img, plotLeft, plotLeft+plotWidth, y, colGrid, false)
			hline(c.img, plotLeft-6, plotLeft, y, colBlack, false)
			label := sp.unit(v)
			text(c.img, plotLeft-10-textWidth(label, 1), y+4, label, colBlack, 1)
		}
	}
	for _, n := range append([]int{0}, sp.ns...) {
		x := c.xOf(float64(n))
		vline(c.img, x, plotTop, plotTop+plotHeight, colGrid)
		vline(c.img, x, plotTop+plotHeight, plotTop+plotHeight+6, colBlack)
		label := nLabel(n)
		text(c.img, x-textWidth(label, 1)/2, plotTop+plotHeight+20, label, colBlack, 1)
	}
}

// drawFrame draws the reference lines and the box around the plot area.
func (c *chart) drawFrame(sp *plotSpec) {
	for _, ref := range sp.refs {
		hline(c.img, plotLeft, plotLeft+plotWidth, c.yOf(ref.v), colGray, true)
	}
	hline(c.img, plotLeft, plotLeft+plotWidth, plotTop+plotHeight, colBlack, false)
	vline(c.img, plotLeft, plotTop, plotTop+plotHeight, colBlack)
	hline(c.img, plotLeft, plotLeft+plotWidth, plotTop, colBlack, false)
	vline(c.img, plotLeft+plotWidth, plotTop, plotTop+plotHeight, colBlack)
}

// drawSeries draws each series' line and markers.
func (c *chart) drawSeries(ss []*plotSeries) {
	for _, s := range ss {
		for i := 1; i < len(s.pts); i++ {
			line(c.img, c.xOf(s.pts[i-1][0]), c.yOf(s.pts[i-1][1]), c.xOf(s.pts[i][0]), c.yOf(s.pts[i][1]), s.col, s.dashed)
		}
		for _, p := range s.pts {
			marker(c.img, c.xOf(p[0]), c.yOf(p[1]), s.col, s.square)
		}
	}
}

// drawTitles draws the title and the axes' labels.
func (c *chart) drawTitles(sp *plotSpec) {
	text(c.img, plotLeft+(plotWidth-textWidth(sp.title, 2))/2, 34, sp.title, colBlack, 2)
	text(c.img, plotLeft+(plotWidth-textWidth(sp.xLabel, 1))/2, plotH-22, sp.xLabel, colBlack, 1)
	text(c.img, 8, plotTop-14, sp.yLabel, colBlack, 1)
}

// drawLegend draws the legend right of the plot: the series, the reference lines and the
// notes.
func (c *chart) drawLegend(sp *plotSpec) {
	lx, ly := plotLeft+plotWidth+20, plotTop+10
	for i, s := range sp.series {
		y := ly + i*legendStep
		line(c.img, lx, y, lx+36, y, s.col, s.dashed)
		marker(c.img, lx+18, y, s.col, s.square)
		text(c.img, lx+46, y+5, s.name, colBlack, 1)
	}
	for i, ref := range sp.refs {
		y := ly + (len(sp.series)+i)*legendStep
		hline(c.img, lx, lx+36, y, colGray, true)
		text(c.img, lx+46, y+5, ref.label, colGray, 1)
	}
	ny := ly + (len(sp.series)+len(sp.refs))*legendStep + 14
	for i, n := range sp.notes {
		text(c.img, lx, ny+i*16, n, colGray, 1)
	}
}

func mbLabel(v float64) string { return fmt.Sprintf("%g MB", v) }

func msLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%g s", v/1000)
	default:
		return fmt.Sprintf("%g ms", v)
	}
}

func nLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func set(img *image.RGBA, x, y int, c color.RGBA) {
	if image.Pt(x, y).In(img.Bounds()) {
		img.SetRGBA(x, y, c)
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA, dotted bool) {
	for x := x0; x <= x1; x++ {
		if dotted && (x/4)%2 == 1 {
			continue
		}
		set(img, x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		set(img, x, y, c)
	}
}

// line draws a 3-pixel-wide line, dashed when asked (10 on, 7 off).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := float64(x1-x0), float64(y1-y0)
	n := int(math.Max(math.Abs(dx), math.Abs(dy)))
	if n == 0 {
		n = 1
	}
	length := math.Hypot(dx, dy)
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		if dashed && int(t*length)%17 >= 10 {
			continue
		}
		x, y := x0+int(math.Round(t*dx)), y0+int(math.Round(t*dy))
		for ox := -1; ox <= 1; ox++ {
			for oy := -1; oy <= 1; oy++ {
				set(img, x+ox, y+oy, c)
			}
		}
	}
}

func marker(img *image.RGBA, x, y int, c color.RGBA, square bool) {
	const r = 5
	for ox := -r; ox <= r; ox++ {
		for oy := -r; oy <= r; oy++ {
			if square || ox*ox+oy*oy <= r*r {
				set(img, x+ox, y+oy, c)
			}
		}
	}
}

// text draws s with its baseline at y, scaled by an integer factor.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Ceil()
	h := face.Height
	tmp := image.NewAlpha(image.Rect(0, 0, w+1, h+1))
	d := &font.Drawer{Dst: tmp, Src: image.Opaque, Face: face, Dot: fixed.P(0, face.Ascent)}
	d.DrawString(s)
	top := y - face.Ascent*scale
	for ty := 0; ty < tmp.Bounds().Dy(); ty++ {
		for tx := 0; tx < tmp.Bounds().Dx(); tx++ {
			if tmp.AlphaAt(tx, ty).A < 128 {
				continue
			}
			for sy := 0; sy < scale; sy++ {
				for sx := 0; sx < scale; sx++ {
					set(img, x+tx*scale+sx, top+ty*scale+sy, c)
				}
			}
		}
	}
}

func textWidth(s string, scale int) int {
	return font.MeasureString(basicfont.Face7x13, s).Ceil() * scale
}
