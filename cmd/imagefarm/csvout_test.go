package main

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"
)

// TestCSVCellsNeverRunAsFormulas: a device-supplied serial or model that a
// spreadsheet would run as a formula is printed as plain text, and ordinary
// cells are printed as they are.
func TestCSVCellsNeverRunAsFormulas(t *testing.T) {
	rows := []reportRow{{
		Finished: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), Node: "bench-1", Slot: "3",
		Serial: `=HYPERLINK("http://x","y")`, Model: "+cmd|' /C calc'!A0", Message: "@SUM(1)",
		Drive: "-2", Result: "DONE", Task: "t1",
	}}
	var out bytes.Buffer
	if err := printCSV(&out, reportColumns, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatalf("report is not CSV: %v\n%s", err, out.String())
	}
	if len(recs) != 2 {
		t.Fatalf("want header and one row, got %d records", len(recs))
	}
	got := map[string]string{}
	for i, c := range recs[0] {
		got[c] = recs[1][i]
	}
	want := map[string]string{
		"serial": `'=HYPERLINK("http://x","y")`, "model": "'+cmd|' /C calc'!A0", "message": "'@SUM(1)",
		"drive": "'-2", "node": "bench-1", "result": "DONE", "finished": "2026-12-08T00:00:00Z",
	}
	for col, w := range want {
		if got[col] != w {
			t.Errorf("column %s = %q, want %q", col, got[col], w)
		}
	}
}
