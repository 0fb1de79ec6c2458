package controller

import (
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
	b, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
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
