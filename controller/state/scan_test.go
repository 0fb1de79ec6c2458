package state

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestScanSeesKeysRewrittenDuringIt rewrites the record the scan has just
// read and then the last record, while the scan runs. With a bucket that
// kept one revision, the last record's old message vanished before the
// scan reached it and nats.go's watcher ended the scan without it.
func TestScanSeesKeysRewrittenDuringIt(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	const n = 20000 // more than the watcher has buffered when the rewrites come
	for i := range n {
		data, _ := proto.Marshal(&imagefarmv1.Node{Id: fmt.Sprintf("n%05d", i)})
		if _, err := s.nodes.kv.Put(t.Context(), fmt.Sprintf("n%05d", i), data); err != nil {
			t.Fatal(err)
		}
	}
	first := true
	seen := map[string]bool{}
	err := s.nodes.scan(t.Context(), ">", func(node *imagefarmv1.Node) error {
		seen[node.GetId()] = true
		if first {
			first = false
			for _, id := range []string{node.GetId(), fmt.Sprintf("n%05d", n-1)} {
				if _, err := s.UpdateNode(t.Context(), id, func(x *imagefarmv1.Node) error { x.Version += "x"; return nil }); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil || len(seen) != n {
		t.Errorf("scan during rewrites saw %d of %d records (%v)", len(seen), n, err)
	}
}
