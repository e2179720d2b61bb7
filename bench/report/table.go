// Package report renders benchmark results for people: tables for a
// terminal and for Markdown, line charts as standalone SVG, and the few
// statistics the benchmark needs (medians, paired ratios). It depends on the
// standard library only.
package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Table is a titled table of text cells. Columns of numbers are aligned
// right, others (and the first, a label) left.
type Table struct {
	// Title names the table; it is printed above it.
	Title string
	// Columns are the column headings.
	Columns []string
	// Rows are the cells, one slice per row; a row shorter than Columns is
	// padded with empty cells.
	Rows [][]string
	// Notes are sentences printed under the table.
	Notes []string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// row returns row i padded to the number of columns.
func (t *Table) row(i int) []string {
	r := t.Rows[i]
	for len(r) < len(t.Columns) {
		r = append(r, "")
	}
	return r
}

// WriteText prints the table for a terminal: the title, the columns
// under a rule (numbers aligned right, text left), then the notes.
func (t *Table) WriteText(w io.Writer) error {
	if t.Title != "" {
		fmt.Fprintf(w, "%s\n", t.Title)
	}
	right := t.numeric()
	width := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		width[i] = utf8.RuneCountInString(c)
	}
	for i := range t.Rows {
		for j, c := range t.row(i) {
			if j < len(width) {
				width[j] = max(width[j], utf8.RuneCountInString(c))
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for j, c := range cells[:len(width)] {
			pad := strings.Repeat(" ", width[j]-utf8.RuneCountInString(c))
			b.WriteString("  ")
			if right[j] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.Columns)
	rule := make([]string, len(t.Columns))
	for j := range rule {
		rule[j] = strings.Repeat("-", width[j])
	}
	line(rule)
	for i := range t.Rows {
		line(t.row(i))
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	_, err := fmt.Fprintln(w)
	return err
}

// numeric reports for each column but the first whether it holds numbers
// (every cell is empty, "n/a", or a number with an optional "%"): those
// are aligned right.
func (t *Table) numeric() []bool {
	out := make([]bool, len(t.Columns))
	for j := range out {
		out[j] = j > 0
		for i := range t.Rows {
			c := t.row(i)[j]
			if c == "" || c == "n/a" {
				continue
			}
			if _, err := strconv.ParseFloat(strings.TrimSuffix(c, "%"), 64); err != nil {
				out[j] = false
				break
			}
		}
	}
	return out
}

// WriteMarkdown writes the table as a Markdown section: the title as a
// level-3 heading, a pipe table with right-aligned number columns, then the
// notes as a paragraph each.
func (t *Table) WriteMarkdown(w io.Writer) error {
	if t.Title != "" {
		fmt.Fprintf(w, "### %s\n\n", t.Title)
	}
	cells := func(cs []string) string {
		esc := make([]string, len(cs))
		for i, c := range cs {
			esc[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		return "| " + strings.Join(esc, " | ") + " |\n"
	}
	io.WriteString(w, cells(t.Columns))
	align := make([]string, len(t.Columns))
	for i, right := range t.numeric() {
		align[i] = "---"
		if right {
			align[i] = "---:"
		}
	}
	io.WriteString(w, "|"+strings.Join(align, "|")+"|\n")
	for i := range t.Rows {
		io.WriteString(w, cells(t.row(i)))
	}
	io.WriteString(w, "\n")
	for _, n := range t.Notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
	return nil
}
