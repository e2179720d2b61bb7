package report

import (
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// wellFormed fails the test unless s is well-formed XML.
func wellFormed(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
	}
}

func TestChartSVG(t *testing.T) {
	c := &Chart{
		Title:  "Failover <eth-a> & eth-b",
		XLabel: "time (s)",
		Events: []Event{{2, "eth-a down"}, {5, "eth-a up"}},
		Panels: []Panel{
			{YLabel: "max RTT (ms)", LogY: true, Series: []Series{
				{Name: "engarde", Points: []Point{{0, 0.2}, {1, 0.3}, {2, math.NaN()}, {3, 12}, {4, 0}, {5, 0.4}}},
				{Name: "direct", Points: []Point{{0, 0.1}, {1, 0.1}}},
			}},
			{YLabel: "delivered (pkt/s)", Series: []Series{
				{Name: "engarde", Points: []Point{{0, 10000}, {5, 9800}}, Markers: true},
			}},
		},
	}
	var b strings.Builder
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	wellFormed(t, s)
	for _, want := range []string{"Failover &lt;eth-a&gt; &amp; eth-b", "eth-a down", "max RTT (ms)", "delivered (pkt/s)", ">engarde<", ">direct<", "time (s)"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// The NaN and the zero (on a log axis) break the first line into
	// one segment of two points and two lone points, which draw no line.
	if n := strings.Count(s, "<polyline"); n != 3 {
		t.Errorf("%d polylines, want 3 (1 + 1 + 1)", n)
	}
	if n := strings.Count(s, "<circle"); n != 2 {
		t.Errorf("%d markers, want 2", n)
	}
}

func TestChartCategories(t *testing.T) {
	c := &Chart{
		XTicks: []Tick{{0, "p50"}, {1, "p99"}, {2, "p99.9"}},
		Panels: []Panel{{YLabel: "µs", LogY: true, Series: []Series{{Name: "a", Points: []Point{{0, 50}, {1, 90}, {2, 400}}}}}},
	}
	var b strings.Builder
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, b.String())
	for _, want := range []string{">p50<", ">p99.9<", ">100<"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestEmptyChart(t *testing.T) {
	var b strings.Builder
	if err := (&Chart{Panels: []Panel{{}}}).WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, b.String())
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 10, 5, []float64{0, 2, 4, 6, 8, 10}},
		{0, 0.7, 4, []float64{0, 0.2, 0.4, 0.6, 0.8}},
		{0, 12000, 5, []float64{0, 5000, 10000, 15000}},
		{3, 3, 5, []float64{3}},
	} {
		if got := niceTicks(tc.lo, tc.hi, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(%v, %v, %d) = %v, want %v", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}

func TestLogTicks(t *testing.T) {
	if got, want := logTicks(1, 3), []float64{10, 20, 50, 100, 200, 500, 1000}; !slices.Equal(got, want) {
		t.Errorf("logTicks(1, 3) = %v, want %v", got, want)
	}
	if got, want := logTicks(0, 5), []float64{1, 10, 100, 1000, 10000, 100000}; !slices.Equal(got, want) {
		t.Errorf("logTicks(0, 5) = %v, want %v", got, want)
	}
}
