package state

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/imagefarm/imagefarm/controller/page"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// JobFilter selects and pages jobs; set fields must all match.
type JobFilter struct {
	// States keeps jobs in one of these states; empty for any state.
	States []imagefarmv1.JobState
	// Image keeps jobs for an image: a name matches every version of it, a
	// ref or a manifest digest matches exactly.
	Image string
	// NodeID keeps jobs with a task on this node.
	NodeID string
	// PageSize is the most jobs to return: 0 for page.DefaultSize, at
	// most page.MaxSize; a negative one is page.ErrInvalidSize.
	PageSize int
	// PageToken is the token a previous call returned, to get the next
	// page; one it did not make is page.ErrInvalidToken.
	PageToken string
}

// ListJobs returns one page of the jobs f selects, newest first, without
// their tasks, and the token of the next page ("" on the last one). Pages
// are cut by creation time and id, not by offset, so jobs submitted while a
// client pages do not shift or repeat what it sees. Every job's revision is
// the last event before the listing; task counts are as last stored.
func (s *Store) ListJobs(ctx context.Context, f JobFilter) ([]*imagefarmv1.Job, string, error) {
	req, err := page.Parse(f.PageSize, f.PageToken, checkListKey)
	if err != nil {
		return nil, "", err
	}
	rev, err := s.LastRevision(ctx)
	if err != nil {
		return nil, "", err
	}
	onNode, err := s.jobsOnNode(ctx, f.NodeID)
	if err != nil {
		return nil, "", err
	}
	var jobs []*imagefarmv1.Job
	err = s.jobs.scan(ctx, ">", func(j *imagefarmv1.Job) error {
		if f.matches(j, onNode) {
			j.Revision = rev
			jobs = append(jobs, j)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(jobs, newerFirst)
	jobs, next := page.Cut(jobs, req, page.Descending, listKey)
	return jobs, next, nil
}

// jobsOnNode returns the ids of jobs with a task on nodeID, or nil when
// nodeID is "" (no filter). It reads every task: tasks are keyed by job,
// not node, and a full pass of the bucket is one stream read.
func (s *Store) jobsOnNode(ctx context.Context, nodeID string) (map[string]bool, error) {
	if nodeID == "" {
		return nil, nil
	}
	if _, err := nodeKey(nodeID); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	err := s.tasks.scan(ctx, ">", func(t *imagefarmv1.Task) error {
		if t.GetNodeId() == nodeID {
			ids[t.GetJobId()] = true
		}
		return nil
	})
	return ids, err
}

func (f JobFilter) matches(j *imagefarmv1.Job, onNode map[string]bool) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, j.GetState())) &&
		(onNode == nil || onNode[j.GetId()]) &&
		imageMatches(f.Image, j)
}

// imageMatches reports whether filter, an image name, ref or digest,
// selects job j.
func imageMatches(filter string, j *imagefarmv1.Job) bool {
	if filter == "" || filter == j.GetImageRef() || filter == j.GetManifestDigest() {
		return true
	}
	if strings.ContainsAny(filter, ":@") { // a ref or digest, and not this one
		return false
	}
	ref, err := catalog.ParseRef(j.GetImageRef())
	return err == nil && ref.Name == filter
}

// newerFirst orders jobs newest first, ties broken by id descending: the
// order of their listKeys, descending.
func newerFirst(a, b *imagefarmv1.Job) int {
	return cmp.Or(cmp.Compare(b.GetCreateTime().AsTime().UnixNano(), a.GetCreateTime().AsTime().UnixNano()),
		cmp.Compare(b.GetId(), a.GetId()))
}

// listKey is a job's place in ListJobs' order (creation time, id) as a
// string that sorts the same way: the nanoseconds are zero-padded, and
// their sign bit flipped so that a time before 1970 sorts first too.
func listKey(j *imagefarmv1.Job) string {
	return fmt.Sprintf("%020d/%s", uint64(j.GetCreateTime().AsTime().UnixNano())^1<<63, j.GetId())
}

// checkListKey refuses a page token's key that listKey cannot have made.
func checkListKey(k string) error {
	nanos, id, ok := strings.Cut(k, "/")
	if _, err := strconv.ParseUint(nanos, 10, 64); !ok || len(nanos) != 20 || err != nil {
		return errors.New("not a job listing's key")
	}
	return ident.JobID(id)
}
