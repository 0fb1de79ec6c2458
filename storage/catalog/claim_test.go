package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// keys lists the store's keys under prefix, sorted.
func keys(t *testing.T, c *catalog.Catalog, prefix string) []string {
	t.Helper()
	var out []string
	err := c.Store().List(t.Context(), prefix, func(oi storage.ObjectInfo) error { out = append(out, oi.Key); return nil })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestNameIsAVersionOrAChannel: on each store, a version named like a
// channel of the same image is refused before a byte is uploaded, and a
// channel named like a version is refused, in both orders, even once the
// first one is removed, and for refs written before names were claimed.
// The catalog is unchanged by every refusal.
func TestNameIsAVersionOrAChannel(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			v1 := push(t, c, "y:1", []byte("version one"), catalog.PushOptions{})
			if err := c.SetChannel(ctx, "y", "stable", v1.Digest); err != nil {
				t.Fatal(err)
			}
			before := keys(t, c, "")

			// A version over a channel: refused before the upload.
			_, err := c.Push(ctx, strings.NewReader("small"), 5, catalog.PushOptions{Name: "y", Version: "stable"})
			if !errors.Is(err, catalog.ErrNameTaken) || !strings.Contains(err.Error(), "y:stable is a channel") {
				t.Errorf("push y:stable over the channel = %v, want ErrNameTaken saying y:stable is a channel", err)
			}
			// A channel over a version.
			if err := c.SetChannel(ctx, "y", "1", v1.Digest); !errors.Is(err, catalog.ErrNameTaken) || !strings.Contains(err.Error(), "y:1 is a version") {
				t.Errorf("SetChannel(y:1) over the version = %v, want ErrNameTaken saying y:1 is a version", err)
			}
			// A push whose --channel is a version's name: refused before the upload.
			_, err = c.Push(ctx, strings.NewReader("two"), 3, catalog.PushOptions{Name: "y", Version: "2", Channels: []string{"1"}})
			if !errors.Is(err, catalog.ErrNameTaken) {
				t.Errorf("push y:2 --channel 1 = %v, want ErrNameTaken", err)
			}
			if after := keys(t, c, ""); !slices.Equal(after, before) {
				t.Errorf("refused changes changed the store:\nbefore %q\nafter  %q", before, after)
			}
			if d := resolve(t, c, "y:stable"); d != v1.Digest {
				t.Errorf("y:stable = %s, want %s", d, v1.Digest)
			}

			// Removing the channel does not free its name for a version.
			if _, err := c.Remove(ctx, catalog.Ref{Name: "y", Tag: "stable"}); err != nil {
				t.Fatal(err)
			}
			_, err = c.Push(ctx, strings.NewReader("small"), 5, catalog.PushOptions{Name: "y", Version: "stable"})
			if !errors.Is(err, catalog.ErrNameTaken) || !strings.Contains(err.Error(), "y:stable was a channel") {
				t.Errorf("push y:stable after the channel was removed = %v, want ErrNameTaken saying y:stable was a channel", err)
			}
			// but a removed version may be pushed again, and a channel set again.
			if _, err := c.Remove(ctx, catalog.Ref{Name: "y", Tag: "1"}); err != nil {
				t.Fatal(err)
			}
			again := push(t, c, "y:1", []byte("version one again"), catalog.PushOptions{Channels: []string{"stable"}})
			if d := resolve(t, c, "y:stable"); d != again.Digest {
				t.Errorf("y:stable after the push again = %s, want %s", d, again.Digest)
			}
			images, err := c.List(ctx, "y")
			if err != nil || len(images) != 1 || images[0].Version != "1" || !slices.Equal(images[0].Channels, []string{"stable"}) {
				t.Errorf("List(y) = %+v, %v; want y:1 with the channel stable", images, err)
			}
		})
	}
}

// TestRefsWrittenBeforeClaimsCount: a version or a channel written before
// names were claimed (no claim object) keeps its name from the other kind,
// and gc and List read a catalog with claims in it.
func TestRefsWrittenBeforeClaimsCount(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			d := push(t, c, "old:1", []byte("old image"), catalog.PushOptions{}).Digest
			for _, key := range []string{"refs/old/versions/v0", "refs/old/channels/beta"} {
				ref := d + "\n"
				if err := c.Store().Put(ctx, key, strings.NewReader(ref), int64(len(ref))); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.SetChannel(ctx, "old", "v0", d); !errors.Is(err, catalog.ErrNameTaken) {
				t.Errorf("SetChannel(old:v0) over an unclaimed version = %v, want ErrNameTaken", err)
			}
			_, err := c.Push(ctx, strings.NewReader("x"), 1, catalog.PushOptions{Name: "old", Version: "beta"})
			if !errors.Is(err, catalog.ErrNameTaken) {
				t.Errorf("push old:beta over an unclaimed channel = %v, want ErrNameTaken", err)
			}
			if err := c.SetChannel(ctx, "old", "beta", d); err != nil {
				t.Errorf("moving the unclaimed channel old:beta = %v", err)
			}
			if images, err := c.List(ctx, ""); err != nil || len(images) != 1 || len(images[0].Channels) != 1 {
				t.Errorf("List = %+v, %v; want old:1 with its refs", images, err)
			}
			if _, err := c.GC(ctx, 0, false); err != nil {
				t.Errorf("GC of a catalog with claims = %v", err)
			}
		})
	}
}

// noRefs is a RefWriter that writes nothing: a push through it stores the
// chunks and the manifest only.
type noRefs struct{}

func (noRefs) AddSignature(context.Context, string, catalog.PublicKey, []byte) error { return nil }
func (noRefs) CreateVersion(context.Context, string, string, string) error           { return nil }
func (noRefs) SetChannel(context.Context, string, string, string) error              { return nil }

// TestVersionAndChannelRaceForOneName: two catalogs on one store (two
// processes) race, many times, to make one name a version and a channel:
// each time exactly one kind wins, the losers get ErrNameTaken, and the
// name resolves to the winner's image with only the winner's ref stored.
func TestVersionAndChannelRaceForOneName(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			other, err := catalog.New(c.Store(), catalog.Options{})
			if err != nil {
				t.Fatal(err)
			}
			base := push(t, c, "race:base", []byte("base"), catalog.PushOptions{}).Digest
			wins := map[string]int{}
			for round := range 20 {
				tag := fmt.Sprintf("r%d", round)
				data := []byte("version " + tag)
				res, err := c.Push(ctx, bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: "race", Version: tag, Refs: noRefs{}})
				if err != nil {
					t.Fatal(err)
				}
				errs := make([]error, 4)
				var start, wg sync.WaitGroup
				start.Add(1)
				for i := range errs {
					wg.Go(func() {
						start.Wait()
						cat := []*catalog.Catalog{c, other}[i%2]
						if i < 2 {
							errs[i] = cat.CreateVersion(ctx, "race", tag, res.Digest)
						} else {
							errs[i] = cat.SetChannel(ctx, "race", tag, base)
						}
					})
				}
				start.Done()
				wg.Wait()
				version, channel := errs[:2], errs[2:]
				refs := keys(t, c, "refs/race/")
				switch {
				case errors.Is(channel[0], catalog.ErrNameTaken) && errors.Is(channel[1], catalog.ErrNameTaken):
					wins["version"]++
					if n := countNil(version); n != 1 || !slices.ContainsFunc(version, func(e error) bool { return errors.Is(e, catalog.ErrVersionExists) }) {
						t.Errorf("round %d: the version won, but its creators got %v; want one to win and one ErrVersionExists", round, version)
					}
					if d := resolve(t, c, "race:"+tag); d != res.Digest {
						t.Errorf("round %d: race:%s = %s, want the version %s", round, tag, d, res.Digest)
					}
					if slices.Contains(refs, "refs/race/channels/"+tag) {
						t.Errorf("round %d: the version won, but a channel %s is stored", round, tag)
					}
				case countNil(channel) == 2 && errors.Is(version[0], catalog.ErrNameTaken) && errors.Is(version[1], catalog.ErrNameTaken):
					wins["channel"]++
					if d := resolve(t, c, "race:"+tag); d != base {
						t.Errorf("round %d: race:%s = %s, want the channel's %s", round, tag, d, base)
					}
					if slices.Contains(refs, "refs/race/versions/"+tag) {
						t.Errorf("round %d: the channel won, but a version %s is stored", round, tag)
					}
				default:
					t.Errorf("round %d: versions got %v, channels %v; want one kind to win and the other refused with ErrNameTaken", round, version, channel)
				}
			}
			t.Logf("won: %v", wins)
		})
	}
}

func countNil(errs []error) int {
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	return n
}
