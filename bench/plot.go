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

// Plot draws one-endpoint change latency (p50 and p99) against N for portico and
// kube-proxy, log-scale y, with the p50 and p99 targets as reference lines.
func Plot(r *Results, w io.Writer) error {
	const W, H = 960, 600
	const left, right, top, bottom = 90, 230, 60, 70
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	pw, ph := W-left-right, H-top-bottom

	type series struct {
		name   string
		col    color.RGBA
		dashed bool
		square bool
		pts    [][2]float64 // N, ms
	}
	blue := color.RGBA{31, 119, 180, 255}
	orange := color.RGBA{230, 120, 20, 255}
	ss := []*series{
		{name: "portico p50", col: blue},
		{name: "portico p99", col: blue, dashed: true, square: true},
		{name: "kube-proxy p50", col: orange},
		{name: "kube-proxy p99", col: orange, dashed: true, square: true},
	}
	var ns []int
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range r.Scales {
		ns = append(ns, s.N)
		for i, name := range []string{pPortico, pPortico, pKP, pKP} {
			p := s.Proxy(name)
			if p == nil || p.Change == nil || p.Change.Samples == 0 {
				continue
			}
			v := p.Change.P50
			if i%2 == 1 {
				v = p.Change.P99
			}
			if v <= 0 || !ok(v) {
				continue
			}
			ss[i].pts = append(ss[i].pts, [2]float64{float64(s.N), v})
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	// Reference lines are part of the range.
	lo, hi = math.Min(lo, targetChangeP50Ms), math.Max(hi, targetChangeP99Ms)
	yLo := math.Pow(10, math.Floor(math.Log10(lo)))
	yHi := math.Pow(10, math.Ceil(math.Log10(hi)))
	if yHi <= yLo {
		yHi = yLo * 10
	}
	maxN := 1000.0
	for _, n := range ns {
		maxN = math.Max(maxN, float64(n))
	}
	xHi := maxN * 1.08
	xOf := func(n float64) int { return left + int(n/xHi*float64(pw)) }
	yOf := func(v float64) int {
		f := (math.Log10(v) - math.Log10(yLo)) / (math.Log10(yHi) - math.Log10(yLo))
		return top + ph - int(f*float64(ph))
	}
	black := color.RGBA{0, 0, 0, 255}
	grid := color.RGBA{225, 225, 225, 255}
	// Grid and y ticks: 1, 2, 5 per decade.
	for d := yLo; d < yHi*1.001; d *= 10 {
		for _, k := range []float64{1, 2, 5} {
			v := d * k
			if v > yHi*1.001 {
				break
			}
			y := yOf(v)
			hline(img, left, left+pw, y, grid, false)
			hline(img, left-6, left, y, black, false)
			label := msLabel(v)
			text(img, left-10-textWidth(label, 1), y+4, label, black, 1)
		}
	}
	// x ticks at every N, and 0.
	for _, n := range append([]int{0}, ns...) {
		x := xOf(float64(n))
		vline(img, x, top, top+ph, grid)
		vline(img, x, top+ph, top+ph+6, black)
		label := nLabel(n)
		text(img, x-textWidth(label, 1)/2, top+ph+20, label, black, 1)
	}
	// Targets.
	gray := color.RGBA{120, 120, 120, 255}
	for _, v := range []float64{targetChangeP50Ms, targetChangeP99Ms} {
		hline(img, left, left+pw, yOf(v), gray, true)
	}
	// Axes.
	hline(img, left, left+pw, top+ph, black, false)
	vline(img, left, top, top+ph, black)
	hline(img, left, left+pw, top, black, false)
	vline(img, left+pw, top, top+ph, black)
	// Series.
	for _, s := range ss {
		for i := 1; i < len(s.pts); i++ {
			line(img, xOf(s.pts[i-1][0]), yOf(s.pts[i-1][1]), xOf(s.pts[i][0]), yOf(s.pts[i][1]), s.col, s.dashed)
		}
		for _, p := range s.pts {
			marker(img, xOf(p[0]), yOf(p[1]), s.col, s.square)
		}
	}
	// Titles.
	title := "One-endpoint change latency, API write -> kernel commit"
	text(img, left+(pw-textWidth(title, 2))/2, 34, title, black, 2)
	xl := fmt.Sprintf("Services (N), %d endpoints each", r.Settings.Endpoints)
	text(img, left+(pw-textWidth(xl, 1))/2, H-22, xl, black, 1)
	text(img, 8, top-14, "latency (log scale)", black, 1)
	// Legend.
	lx, ly := left+pw+20, top+10
	for i, s := range ss {
		y := ly + i*26
		line(img, lx, y, lx+36, y, s.col, s.dashed)
		marker(img, lx+18, y, s.col, s.square)
		text(img, lx+46, y+5, s.name, black, 1)
	}
	for i, label := range []string{"target p50 <= 50 ms", "target p99 <= 200 ms"} {
		y := ly + (len(ss)+i)*26
		hline(img, lx, lx+36, y, gray, true)
		text(img, lx+46, y+5, label, gray, 1)
	}
	ly += 2 * 26
	notes := []string{"spaced changes,", "minSyncPeriod " + r.Settings.MinSyncPeriod,
		fmt.Sprintf("%d samples per point", r.Settings.ChangeSamples)}
	if r.Quick {
		notes = append(notes, "quick run")
	}
	for i, n := range notes {
		text(img, lx, ly+4*26+14+i*16, n, gray, 1)
	}
	return png.Encode(w, img)
}

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
