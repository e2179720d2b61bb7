package report

import (
	"strings"
	"testing"
)

func sampleTable() *Table {
	t := &Table{Title: "Latency", Columns: []string{"path", "p50 µs", "p99 µs"}, Notes: []string{"Median of 3 runs."}}
	t.Add("direct", "52", "110")
	t.Add("engarde/mmsg", "61.5", "140")
	t.Add("a|b") // short row, with a pipe
	return t
}

func textTable() *Table {
	t := &Table{Columns: []string{"target", "want", "n", "got", ""}}
	t.Add("throughput", "≥ 75%", "68%", "68% (3 pairs)", "miss")
	t.Add("p99 at 2000 pkt/s", "≤ 170 µs", "n/a", "120 µs", "n/a")
	return t
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := sampleTable().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "Latency\n" +
		"  path          p50 µs  p99 µs\n" +
		"  ------------  ------  ------\n" +
		"  direct            52     110\n" +
		"  engarde/mmsg    61.5     140\n" +
		"  a|b\n" +
		"  Median of 3 runs.\n\n"
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTextAlignsTextLeft(t *testing.T) {
	var b strings.Builder
	if err := textTable().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "  target             want        n  got\n" +
		"  -----------------  --------  ---  -------------  ----\n" +
		"  throughput         ≥ 75%     68%  68% (3 pairs)  miss\n" +
		"  p99 at 2000 pkt/s  ≤ 170 µs  n/a  120 µs         n/a\n\n"
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b strings.Builder
	if err := sampleTable().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "### Latency\n\n" +
		"| path | p50 µs | p99 µs |\n" +
		"|---|---:|---:|\n" +
		"| direct | 52 | 110 |\n" +
		"| engarde/mmsg | 61.5 | 140 |\n" +
		"| a\\|b |  |  |\n\n" +
		"Median of 3 runs.\n\n"
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
