package controller_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/imagefarm/imagefarm/controller"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestAPICallsMetric: imagefarm_api_calls_total, scraped from /metrics
// with the Prometheus text parser, counts each call by method and the code
// its caller got.
func TestAPICallsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := farm.Start(t, farm.Options{Controller: func(c *controller.Config) { c.Metrics = reg }})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	const listJobs = "/imagefarm.v1.ImageFarmService/ListJobs"
	before := apiCalls(t, srv.URL)
	for range 3 {
		if _, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	anon := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, "")))
	if _, err := anon.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{}); err == nil {
		t.Fatal("ListJobs without a token succeeded")
	}
	after := apiCalls(t, srv.URL)
	for _, c := range []struct {
		code string
		n    float64
	}{{"OK", 3}, {"Unauthenticated", 1}} {
		k := listJobs + " " + c.code
		if got := after[k] - before[k]; got != c.n {
			t.Errorf("imagefarm_api_calls_total{%s} moved by %v, want %v", k, got, c.n)
		}
	}
}

// apiCalls scrapes url and returns imagefarm_api_calls_total by "method code".
func apiCalls(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for _, m := range fams["imagefarm_api_calls_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		out[l["method"]+" "+l["code"]] = m.GetCounter().GetValue()
	}
	return out
}
