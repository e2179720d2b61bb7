package report

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// Median returns the median of xs, ignoring NaNs: the middle value, or the
// mean of the two middle values. It returns NaN when there is no value.
func Median(xs []float64) float64 {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Ratios pairs a[i] with b[i] and returns a[i]/b[i] for every pair, NaN
// where b[i] is zero or either is NaN. Extra values of the longer slice
// have no partner and are left out.
func Ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = math.NaN()
		if b[i] != 0 && !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// Value is a measurement that may be missing (NaN). It encodes to JSON as
// a number, or null when missing, where a float64 NaN would make
// encoding/json fail.
type Value float64

// NA is the missing Value.
var NA = Value(math.NaN())

// OK reports whether the value is present.
func (v Value) OK() bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// MarshalJSON encodes the value, or null when it is missing.
func (v Value) MarshalJSON() ([]byte, error) {
	if !v.OK() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(v), 'g', -1, 64), nil
}

// UnmarshalJSON decodes a number, or null as missing.
func (v *Value) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = NA
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*v = Value(f)
	return nil
}

// F formats x with prec decimals, or "n/a" when it is missing.
func F(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// Pct formats a ratio as a percentage with no decimals ("75%"), or "n/a".
func Pct(ratio float64) string {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(100*ratio, 'f', 0, 64) + "%"
}
