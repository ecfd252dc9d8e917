package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tcplab/tcplab/benchgrid"
)

// Marks in the verdict matrix.
const (
	MarkBest   = "★" // the best of its row, ahead by more than the noise
	MarkTied   = "≈" // tied with the best: within the noise, or client-bound
	MarkClient = "†" // the load generator saturated: the figure may be the client's limit
)

// Cell classes in the verdict matrix.
const (
	classBest    = "best"
	classTied    = "tied"
	classRanked  = "ranked"
	classOut     = "out"     // ran, but out of the ranking (under the threshold, failed)
	classSkipped = "skipped" // could not run here
	classNone    = "none"    // not run in this workload
)

// MatrixCell is one model's entry in a verdict row.
type MatrixCell struct {
	// Text is the figure with its unit ("234k msgs/s"), or what stands
	// instead ("out", "skipped").
	Text string
	// Mark is MarkBest, MarkTied or "".
	Mark string
	// Class is how to show it: best, tied, ranked, out, skipped, none.
	Class string
	// Note says more: the figure beside the key one, or why it is out;
	// Short is its gist in a few words, for the matrix itself.
	Note, Short string
}

// MatrixRow is one workload's row.
type MatrixRow struct {
	Verdict Verdict
	Cells   []MatrixCell // one per model of the run, in its order
}

// Matrix lays the verdicts out with one column per model of res.
func Matrix(res *benchgrid.Results, verdicts []Verdict) []MatrixRow {
	skipped := map[[2]string]string{}
	for _, c := range res.Cells {
		if c.Status == benchgrid.StatusSkipped {
			skipped[[2]string{c.Workload, c.Model}] = c.Cause
		}
	}
	var rows []MatrixRow
	for _, v := range verdicts {
		row := MatrixRow{Verdict: v}
		for _, m := range res.Meta.Models {
			var mc MatrixCell
			if x, ok := v.Values[m]; ok {
				mc = MatrixCell{Text: v.Format(x), Class: classRanked, Note: v.Beside[m], Short: v.Beside[m]}
				if slices.Contains(v.ClientBound, m) {
					mc.Text += MarkClient
					mc.Note = "client-bound: the load generator saturated; " + mc.Note
				}
				switch {
				case m == v.Best && v.Call == CallWinner:
					mc.Mark, mc.Class = MarkBest, classBest
				case slices.Contains(v.Tied, m):
					mc.Mark, mc.Class = MarkTied, classTied
				}
			} else if cause, ok := skipped[[2]string{v.Workload, m}]; ok {
				mc = MatrixCell{Text: "skipped", Class: classSkipped, Note: cause, Short: "cannot run here"}
			} else if why, ok := v.Out[m]; ok {
				mc = MatrixCell{Text: "out", Class: classOut, Note: why, Short: v.OutShort[m]}
			} else {
				mc = MatrixCell{Text: "–", Class: classNone, Note: "not run"}
			}
			row.Cells = append(row.Cells, mc)
		}
		rows = append(rows, row)
	}
	return rows
}

// MatrixLegend explains the marks, for the terminal and summary.md.
func MatrixLegend() string {
	return fmt.Sprintf("%s best of its row; %s tied with the best (within the run-to-run noise, or client-bound); "+
		"%s the load generator saturated (client-bound: the server may do more); "+
		"out: served under %.0f%% of its clients or failed (see the report)", MarkBest, MarkTied, MarkClient, 100*SuccessThreshold)
}

// WriteMatrix prints the verdict matrix as aligned text, then one
// sentence per workload.
func WriteMatrix(w io.Writer, res *benchgrid.Results, verdicts []Verdict) {
	rows := Matrix(res, verdicts)
	table := [][]string{append([]string{"workload", "key figure"}, res.Meta.Models...)}
	for _, r := range rows {
		line := []string{r.Verdict.Workload, r.Verdict.Figure}
		for _, c := range r.Cells {
			line = append(line, strings.TrimSpace(c.Mark+" "+c.Text))
		}
		table = append(table, line)
	}
	widths := make([]int, len(table[0]))
	for _, line := range table {
		for i, s := range line {
			widths[i] = max(widths[i], utf8.RuneCountInString(s))
		}
	}
	for _, line := range table {
		var b strings.Builder
		for i, s := range line {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(s + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(s)))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(w, MatrixLegend())
	for _, r := range rows {
		fmt.Fprintln(w, "- "+r.Verdict.Why)
	}
}

// writeMatrixMarkdown writes the verdict matrix as a Markdown table, then
// one sentence per workload.
func writeMatrixMarkdown(w io.Writer, res *benchgrid.Results, verdicts []Verdict) {
	rows := Matrix(res, verdicts)
	fmt.Fprintf(w, "| workload | key figure | %s |\n|---|---|%s\n", strings.Join(res.Meta.Models, " | "), strings.Repeat("---|", len(res.Meta.Models)))
	for _, r := range rows {
		var cells []string
		for _, c := range r.Cells {
			text := c.Text
			switch c.Class {
			case classBest:
				text = "**" + c.Mark + " " + text + "**"
			case classTied:
				text = c.Mark + " " + text
			}
			cells = append(cells, text)
		}
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", r.Verdict.Workload, r.Verdict.Figure, strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "\n%s.\n\n", MatrixLegend())
	for _, r := range rows {
		fmt.Fprintf(w, "- %s\n", r.Verdict.Why)
	}
}
