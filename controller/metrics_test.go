package controller_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/imagefarm/imagefarm/controller"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
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

// TestTaskMetrics: a job of two drives moves imagefarm_tasks_ended_total
// {state="DONE"} by 2 and the written and verified bytes by the image's
// size times two, and SubmitJob's OK count by one.
func TestTaskMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true,
		Controller: func(c *controller.Config) { c.Metrics = reg }})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	before := scrape(t, srv.URL)
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1", "n1/d2"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		a := im.Assignment()
		im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
			TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE, VerifiedDigest: f.Digest,
			BytesWritten: uint64(len(farm.Image))}}})
	}
	waitJob(t, f, sub.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	after := scrape(t, srv.URL)
	size := float64(len(farm.Image))
	for k, want := range map[string]float64{
		`imagefarm_tasks_ended_total{state="DONE"}`: 2,
		`imagefarm_written_bytes_total`:             2 * size,
		`imagefarm_verified_bytes_total`:            2 * size,
		`imagefarm_api_calls_total{code="OK",method="/imagefarm.v1.ImageFarmService/SubmitJob"}`: 1,
	} {
		if got := after[k] - before[k]; got != want {
			t.Errorf("%s moved by %v, want %v", k, got, want)
		}
	}
}

// scrape scrapes url and returns every counter by its name and labels, as
// the text format writes them (labels sorted by name).
func scrape(t *testing.T, url string) map[string]float64 {
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
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			var ls []string
			for _, p := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
			}
			slices.Sort(ls)
			k := name
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			out[k] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestNodesLostMetric: a node silent past the heartbeat TTL moves
// imagefarm_nodes_lost_total by one.
func TestNodesLostMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := farm.Start(t, farm.Options{HeartbeatTTL: time.Second, Controller: func(c *controller.Config) { c.Metrics = reg }})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	f.Connect(t, "n1", usbDrive("a")) // and never beats
	testenv.Eventually(t, 20*time.Second, "imagefarm_nodes_lost_total 1", func() bool {
		return scrape(t, srv.URL)["imagefarm_nodes_lost_total"] == 1
	})
}
