package report

import (
	"encoding/json"
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, nan},
		{"only NaN", []float64{nan}, nan},
		{"one", []float64{3}, 3},
		{"odd, unsorted", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"NaN ignored", []float64{nan, 1, 9, 5}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Median(tc.in)
			if !(got == tc.want || math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestMedianKeepsInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("Median reordered its input: %v", in)
	}
}

func TestRatios(t *testing.T) {
	got := Ratios([]float64{8, 6, 1, math.NaN(), 7}, []float64{10, 3, 0, 2})
	want := []float64{0.8, 2, math.NaN(), math.NaN()}
	if len(got) != len(want) {
		t.Fatalf("Ratios = %v, want %v", got, want)
	}
	for i := range want {
		if !(got[i] == want[i] || math.IsNaN(got[i]) && math.IsNaN(want[i])) {
			t.Errorf("Ratios[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestValueJSON(t *testing.T) {
	b, err := json.Marshal(struct{ A, B Value }{1.5, NA})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"A":1.5,"B":null}` {
		t.Errorf("got %s", b)
	}
	var back struct{ A, B Value }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.A != 1.5 || back.B.OK() {
		t.Errorf("round trip gave %v, %v", back.A, back.B)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{F(1.234, 1), "1.2"},
		{F(math.NaN(), 1), "n/a"},
		{Pct(0.756), "76%"},
		{Pct(math.Inf(1)), "n/a"},
		{FormatNum(1500), "1.5k"},
		{FormatNum(2e6), "2M"},
		{FormatNum(0.5), "0.5"},
		{FormatNum(20), "20"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
