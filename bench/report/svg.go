package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Chart is a line chart drawn as a standalone SVG file: one or more panels
// stacked over one x axis, each with its own y axis and legend, and
// vertical event markers across every panel.
type Chart struct {
	// Title is printed above the chart.
	Title string
	// XLabel names the x axis, under the bottom panel.
	XLabel string
	// XTicks, when set, replace the automatic x ticks: categories drawn at
	// the given positions.
	XTicks []Tick
	// Panels are drawn top to bottom.
	Panels []Panel
	// Events are vertical markers across every panel, labelled in the
	// top one.
	Events []Event
	// Width is the width in pixels (900 when 0).
	Width int
}

// Panel is one plot area of a Chart.
type Panel struct {
	// YLabel names the y axis, units included.
	YLabel string
	// LogY draws the y axis on a logarithmic scale; points at or below
	// zero are left out.
	LogY bool
	// Height is the plot area's height in pixels (220 when 0).
	Height int
	// Series are the lines, in legend order.
	Series []Series
}

// Series is one line of a Panel.
type Series struct {
	// Name is shown in the legend.
	Name string
	// Points are joined in order; a NaN y value breaks the line.
	Points []Point
	// Markers draws a dot on every point, for lines with few points.
	Markers bool
}

// Point is a point of a Series.
type Point struct{ X, Y float64 }

// Event is a vertical marker at X, such as a link going down.
type Event struct {
	X     float64
	Label string
}

// Tick is a labelled position on the x axis.
type Tick struct {
	X     float64
	Label string
}

// palette holds colours that stay apart for people with the common forms
// of colour blindness (Okabe and Ito's).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// Layout of a chart, in pixels.
const (
	marginLeft   = 76
	marginRight  = 16
	legendWidth  = 190
	titleHeight  = 40
	panelGap     = 34
	xAxisHeight  = 52
	defaultWidth = 900
	defaultPanel = 220
)

// WriteSVG draws the chart.
func (c *Chart) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	width := c.Width
	if width == 0 {
		width = defaultWidth
	}
	height := titleHeight + xAxisHeight
	for i, p := range c.Panels {
		height += p.height()
		if i > 0 {
			height += panelGap
		}
	}
	plotW := float64(width - marginLeft - marginRight - legendWidth)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.Title))

	x0, x1 := c.xRange()
	sx := func(x float64) float64 { return marginLeft + (x-x0)/(x1-x0)*plotW }
	xticks := c.XTicks
	if xticks == nil {
		for _, v := range niceTicks(x0, x1, 8) {
			xticks = append(xticks, Tick{v, FormatNum(v)})
		}
	}

	top := titleHeight
	for i, p := range c.Panels {
		ph := p.height()
		c.drawPanel(bw, &p, i, float64(top), float64(ph), plotW, x0, x1, sx, xticks, i == len(c.Panels)-1)
		top += ph + panelGap
	}
	if c.XLabel != "" {
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", marginLeft+plotW/2, height-10, esc(c.XLabel))
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func (p *Panel) height() int {
	if p.Height == 0 {
		return defaultPanel
	}
	return p.Height
}

// xRange returns the x extent of every point, event and tick.
func (c *Chart) xRange() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	see := func(x float64) {
		if !math.IsNaN(x) {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	for _, p := range c.Panels {
		for _, s := range p.Series {
			for _, pt := range s.Points {
				see(pt.X)
			}
		}
	}
	for _, e := range c.Events {
		see(e.X)
	}
	for _, t := range c.XTicks {
		see(t.X)
	}
	switch {
	case math.IsInf(lo, 0):
		return 0, 1
	case c.XTicks != nil:
		// Categories: half a step of room on each side.
		pad := math.Max((hi-lo)/float64(2*max(len(c.XTicks)-1, 1)), 0.5)
		return lo - pad, hi + pad
	case lo == hi:
		return lo - 1, hi + 1
	}
	return lo, hi
}

// yScale maps a panel's values to pixels.
type yScale struct {
	log      bool
	lo, hi   float64 // in log10 units when log
	top, h   float64
	tickVals []float64
}

func (p *Panel) scale(top, h float64) yScale {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if math.IsNaN(pt.Y) || math.IsInf(pt.Y, 0) || (p.LogY && pt.Y <= 0) {
				continue
			}
			lo, hi = math.Min(lo, pt.Y), math.Max(hi, pt.Y)
		}
	}
	ys := yScale{log: p.LogY, top: top, h: h}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	if p.LogY {
		ys.lo, ys.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if ys.hi == ys.lo {
			ys.hi++
		}
		ys.tickVals = logTicks(ys.lo, ys.hi)
		return ys
	}
	lo = math.Min(lo, 0) // linear axes start at zero: the height of a line means something
	if hi == lo {
		hi = lo + 1
	}
	ys.tickVals = niceTicks(lo, hi, 5)
	ys.lo, ys.hi = lo, math.Max(hi, ys.tickVals[len(ys.tickVals)-1])
	return ys
}

// y returns the pixel of value v, or NaN when it cannot be drawn.
func (s *yScale) y(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return math.NaN()
	}
	if s.log {
		if v <= 0 {
			return math.NaN()
		}
		v = math.Log10(v)
	}
	return s.top + s.h - (v-s.lo)/(s.hi-s.lo)*s.h
}

func (c *Chart) drawPanel(w io.Writer, p *Panel, idx int, top, h, plotW float64, x0, x1 float64, sx func(float64) float64, xticks []Tick, bottom bool) {
	ys := p.scale(top, h)
	left, right := float64(marginLeft), marginLeft+plotW
	// Grid and y ticks.
	for _, v := range ys.tickVals {
		y := ys.y(v)
		if math.IsNaN(y) || y < top-0.5 || y > top+h+0.5 {
			continue
		}
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, y, right, y)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y, FormatNum(v))
	}
	for _, t := range xticks {
		if t.X < x0-1e-9 || t.X > x1+1e-9 {
			continue
		}
		x := sx(t.X)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", x, top, x, top+h)
		if bottom {
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+h+18, esc(t.Label))
		}
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", left, top, plotW, h)
	fmt.Fprintf(w, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+h/2, esc(p.YLabel))
	// Events.
	for _, e := range c.Events {
		x := sx(e.X)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`+"\n", x, top, x, top+h)
		if idx == 0 {
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="11" fill="#555">%s</text>`+"\n", x+3, top+12, esc(e.Label))
		}
	}
	// Lines, clipped to the plot area.
	clip := fmt.Sprintf("clip%d", idx)
	fmt.Fprintf(w, `<clipPath id="%s"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath>`+"\n", clip, left, top-4, plotW, h+8)
	for i, s := range p.Series {
		color := palette[i%len(palette)]
		fmt.Fprintf(w, `<g clip-path="url(#%s)" stroke="%s" fill="%s">`+"\n", clip, color, color)
		var seg []string
		flush := func() {
			if len(seg) > 1 {
				fmt.Fprintf(w, `<polyline fill="none" stroke-width="1.8" points="%s"/>`+"\n", strings.Join(seg, " "))
			}
			seg = seg[:0]
		}
		for _, pt := range s.Points {
			y := ys.y(pt.Y)
			if math.IsNaN(y) || math.IsNaN(pt.X) {
				flush()
				continue
			}
			x := sx(pt.X)
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", x, y))
			if s.Markers {
				fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3"/>`+"\n", x, y)
			}
		}
		flush()
		fmt.Fprintln(w, "</g>")
		// Legend, to the right of the plot.
		ly := top + 10 + float64(i)*18
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", right+12, ly, right+34, ly, color)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", right+40, ly, esc(s.Name))
	}
}

// niceTicks returns about n round values (1, 2 or 5 times a power of ten
// apart) covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) || n < 1 {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	// Multiples of step, computed as k*m/10^j when step is a fraction,
	// because k*0.1 is not the float nearest to k/10 (3*0.2 is not 0.6).
	at := func(k float64) float64 {
		if step < 1 {
			inv := math.Round(1 / mag)
			return k * math.Round(step*inv) / inv
		}
		return k * step
	}
	var out []float64
	for k := math.Floor(lo / step); ; k++ {
		v := at(k)
		out = append(out, v)
		if v >= hi {
			return out
		}
	}
}

// logTicks returns 1, 2 and 5 times each power of ten from 10^lo to 10^hi
// (exponents), or only the powers when there are more than three decades.
func logTicks(lo, hi float64) []float64 {
	var out []float64
	for e := lo; e <= hi; e++ {
		p := math.Pow(10, e)
		out = append(out, p)
		if hi-lo <= 3 && e < hi {
			out = append(out, 2*p, 5*p)
		}
	}
	return out
}

// FormatNum formats a tick value compactly: 0.5, 20, 1.5k, 2M.
func FormatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// esc escapes text for XML.
func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
