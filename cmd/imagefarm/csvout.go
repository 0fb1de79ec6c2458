package main

import (
	"encoding/csv"
	"io"
	"strings"
)

// csvRow is a report row that prints as one CSV record.
type csvRow interface{ csv() []string }

// printCSV prints a header and rows as CSV for a spreadsheet. A cell that a
// spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a
// carriage return) is prefixed with a quote: serials, models and labels come
// from devices and operators, and a production record must not run code when
// a customer opens it.
func printCSV[R csvRow](w io.Writer, header []string, rows []R) error {
	cw := csv.NewWriter(w)
	cw.Write(header)
	for _, r := range rows {
		cw.Write(inertCells(r.csv()))
	}
	cw.Flush()
	return cw.Error()
}

// inertCells returns cells with each formula-like cell made plain text.
func inertCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			c = "'" + c
		}
		out[i] = c
	}
	return out
}
