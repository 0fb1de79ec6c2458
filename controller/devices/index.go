package devices

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// IndexBucket is the KV bucket that finds device records by MAC and by
// serial without reading every record: PlanBoot asks by MAC at every
// netboot, GetDevice and device jobs by serial.
const IndexBucket = "imagefarm-device-index"

// The index holds one empty key per (MAC, device) and per (serial,
// device): "mac.<12 hex digits>.<device id>" and "serial.<sha256 of the
// serial, hex>.<device id>". A lookup lists the keys under its prefix and
// reads those records.
//
// Update writes the keys of a record's new MACs and serial before the
// record and removes the keys of what it no longer has after it, so the
// index always holds every record's keys; a controller stopped between the
// two leaves a key too many, which a lookup drops because the record it
// names does not have that MAC or serial (matching).

// macKey is the index key prefix of a normalized MAC.
func macKey(mac string) string { return "mac." + strings.ReplaceAll(mac, ":", "") }

// serialKey is the index key prefix of a serial: its hash, since a serial
// may hold characters no key may.
func serialKey(serial string) string {
	sum := sha256.Sum256([]byte(serial))
	return "serial." + hex.EncodeToString(sum[:])
}

// indexKeys are the index keys of d.
func indexKeys(d *imagefarmv1.Device) []string {
	if d == nil || !validID(d.GetId()) {
		return nil
	}
	var keys []string
	for _, m := range d.GetMacs() {
		if n, err := NormalizeMAC(m); err == nil {
			keys = append(keys, macKey(n)+"."+d.GetId())
		}
	}
	if d.GetSerial() != "" {
		keys = append(keys, serialKey(d.GetSerial())+"."+d.GetId())
	}
	return keys
}

// addKeys writes the keys of d that before (its previous record, nil
// when new) did not have.
func (s *Store) addKeys(ctx context.Context, before, d *imagefarmv1.Device) error {
	old := indexKeys(before)
	for _, k := range indexKeys(d) {
		if slices.Contains(old, k) {
			continue
		}
		if _, err := s.index.Put(ctx, k, nil); err != nil {
			return fmt.Errorf("index device %s: %w", d.GetId(), err)
		}
	}
	return nil
}

// dropKeys removes the keys of before that d (what replaced it) does not
// have. A failure leaves a key too many, which lookups drop.
func (s *Store) dropKeys(ctx context.Context, before, d *imagefarmv1.Device) error {
	keep := indexKeys(d)
	for _, k := range indexKeys(before) {
		if slices.Contains(keep, k) {
			continue
		}
		if err := s.index.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("unindex device %s: %w", d.GetId(), err)
		}
	}
	return nil
}

// lookup returns the records the index names under prefix that match.
func (s *Store) lookup(ctx context.Context, prefix string, match func(*imagefarmv1.Device) bool) ([]*imagefarmv1.Device, error) {
	lister, err := s.index.ListKeysFiltered(ctx, prefix+".*")
	if err != nil {
		return nil, fmt.Errorf("look up devices: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k[len(prefix)+1:])
	}
	var out []*imagefarmv1.Device
	for _, id := range ids {
		d, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if match(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// ByMAC returns the devices that have mac (in any form NormalizeMAC reads).
func (s *Store) ByMAC(ctx context.Context, mac string) ([]*imagefarmv1.Device, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	return s.lookup(ctx, macKey(n), func(d *imagefarmv1.Device) bool { return slices.Contains(d.GetMacs(), n) })
}

// BySerial returns the devices whose SMBIOS serial is serial.
func (s *Store) BySerial(ctx context.Context, serial string) ([]*imagefarmv1.Device, error) {
	if serial == "" {
		return nil, nil
	}
	return s.lookup(ctx, serialKey(serial), func(d *imagefarmv1.Device) bool { return d.GetSerial() == serial })
}

// reindex writes the index keys of every record: once when the store
// opens, for records written before the index existed.
func (s *Store) reindex(ctx context.Context) error {
	all, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, d := range all {
		if err := s.addKeys(ctx, nil, d); err != nil {
			return err
		}
	}
	return nil
}
