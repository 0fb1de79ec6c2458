package controller

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// TestAlertRulesNameRegisteredMetrics: deploy/prometheus/alerts.yml parses,
// and every imagefarm_ metric its expressions name is one the controller
// registers, so a renamed metric breaks this test rather than the alerts.
func TestAlertRulesNameRegisteredMetrics(t *testing.T) {
	names := registeredNames(t)
	b, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	checkRules(t, names, b)
}

// registeredNames are the names of every metric the controller registers.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	m, err := newAPIMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range m.collectors() {
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			names[fq.FindStringSubmatch(d.String())[1]] = true
		}
	}
	return names
}

// checkRules checks the alert rules file b against names.
func checkRules(t *testing.T, names map[string]bool, b []byte) {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	metric := regexp.MustCompile(`imagefarm_[a-z_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			used := metric.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("alert %s: expression %q names no imagefarm_ metric", r.Alert, r.Expr)
			}
			for _, u := range used {
				if !names[u] {
					t.Errorf("alert %s names %s, which the controller does not register (it has %v)", r.Alert, u, names)
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("alerts.yml has %d rules, want node lost, task failure rate and storage errors", n)
	}
}

// TestGrafanaDashboardNamesRegisteredMetrics: deploy/grafana/imagefarm.json
// is JSON, and every imagefarm_ metric its panels query is registered.
func TestGrafanaDashboardNamesRegisteredMetrics(t *testing.T) {
	names := registeredNames(t)
	b, err := os.ReadFile("../deploy/grafana/imagefarm.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("imagefarm.json: %v", err)
	}
	metric := regexp.MustCompile(`imagefarm_[a-z_]+`)
	seen := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, u := range metric.FindAllString(tg.Expr, -1) {
				seen[u] = true
				if !names[u] {
					t.Errorf("panel %q queries %s, which the controller does not register", p.Title, u)
				}
			}
		}
	}
	for n := range names {
		if !seen[n] {
			t.Errorf("no panel shows %s: add one", n)
		}
	}
}
