package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// printJSON writes v as indented JSON, the --json form of every listing.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; call flush when done.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// notedTable writes aligned columns, and under a row, a note that takes
// no part in the alignment: one long reason (a refusal, why a job waits)
// does not push every row's columns out of the screen.
type notedTable struct {
	w     io.Writer
	buf   bytes.Buffer
	tw    *tabwriter.Writer
	rows  int
	notes map[int][]string // by row, the header being row 0
}

func newNotedTable(w io.Writer) *notedTable {
	t := &notedTable{w: w, notes: map[int][]string{}}
	t.tw = table(&t.buf)
	return t
}

// row adds a row of cells; tabs and line breaks in them become spaces.
func (t *notedTable) row(cells ...string) {
	for i, c := range cells {
		cells[i] = oneLine(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
	t.rows++
}

// rowf adds a row formatted by format, whose tabs separate the cells:
// each argument is made one line first, so that what a node, a drive or
// a user reported can neither add a cell nor a line nor rewrite the
// terminal.
func (t *notedTable) rowf(format string, args ...any) {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = oneLine(v)
		case fmt.Stringer:
			args[i] = oneLine(v.String())
		}
	}
	fmt.Fprintln(t.tw, fmt.Sprintf(format, args...))
	t.rows++
}

// note adds a note under the last row.
func (t *notedTable) note(format string, args ...any) {
	t.notes[t.rows-1] = append(t.notes[t.rows-1], oneLine(fmt.Sprintf(format, args...)))
}

// flush writes the table, each note under its row.
func (t *notedTable) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(t.buf.String(), "\n")
	for i, line := range lines {
		if _, err := io.WriteString(t.w, line); err != nil {
			return err
		}
		for _, n := range t.notes[i] {
			if _, err := fmt.Fprintf(t.w, "    %s\n", n); err != nil {
				return err
			}
		}
	}
	return nil
}

// oneLine keeps a cell on its line and in its column, and the terminal as
// it was, whatever a node or a drive reported: control characters (tabs,
// line breaks, escape sequences) become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func bytesIEC(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// progressBar shows one byte-counting bar on stderr when stderr is a
// terminal. Add is safe from several goroutines; Done ends the bar.
type progressBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// progressOutput is stderr when it is a terminal; logs and pipes get the
// final summary only.
func progressOutput() io.Writer {
	if fi, err := os.Stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return io.Discard
	}
	return os.Stderr
}

func newProgressBar(name string, total int64) *progressBar {
	p := mpb.New(mpb.WithOutput(progressOutput()), mpb.WithWidth(40))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	return &progressBar{p: p, bar: bar}
}

func (b *progressBar) Add(n int64) { b.bar.IncrInt64(n) }

// Done completes the bar on success or drops it on failure.
func (b *progressBar) Done(err error) {
	if err != nil || !b.bar.Completed() {
		b.bar.Abort(err != nil)
	}
	b.p.Wait()
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
