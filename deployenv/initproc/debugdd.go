package initproc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DDPrefix starts the console line that carries the DD result.
const DDPrefix = "IMAGEFARM-DD "

// DD is the outcome of imagefarm.debug.dd=URL, a benchmark's baseline
// and nothing else: the raw image at URL (plain HTTP) copied onto the
// disk the plan names (imagefarm.disk_serial and _size, checked internal
// as for a deploy) as `dd bs=4M oflag=direct` would, then read back as
// `dd bs=4M iflag=direct | sha256sum` would, with no catalog, no
// signature and no chunk checked: what the deploy's write and
// read-back verify are measured against in the same VM
// (tests/bench/netboot.sh). It runs after the deploy, if any.
type DD struct {
	URL   string `json:"url"`
	Disk  string `json:"disk,omitempty"`
	Bytes int64  `json:"bytes"`
	// WriteSeconds is the fetch and the write, to the disk's flush;
	// ReadSeconds the read back.
	WriteSeconds float64 `json:"write_seconds"`
	ReadSeconds  float64 `json:"read_seconds"`
	SHA256       string  `json:"sha256,omitempty"`
	Error        string  `json:"error,omitempty"`
}

// ddBlock is the copy's block size, dd's bs=4M. It is a multiple of
// every disk's logical block, as O_DIRECT wants.
const ddBlock = 4 << 20

// debugDD copies url onto target and reads it back.
func debugDD(ctx context.Context, url string, target *Disk) DD {
	d := DD{URL: url}
	if target == nil {
		d.Error = "imagefarm.debug.dd: no disk: it writes only the disk imagefarm.disk_serial and imagefarm.disk_size name"
		return d
	}
	d.Disk = target.Path
	buf, err := unix.Mmap(-1, 0, ddBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // page-aligned, for O_DIRECT
	if err != nil {
		d.Error = fmt.Sprintf("imagefarm.debug.dd: buffer: %v", err)
		return d
	}
	defer unix.Munmap(buf)
	start := time.Now()
	d.Bytes, err = ddWrite(ctx, url, target.Path, buf)
	d.WriteSeconds = time.Since(start).Seconds()
	if err != nil {
		d.Error = "imagefarm.debug.dd: " + err.Error()
		return d
	}
	start = time.Now()
	d.SHA256, err = ddRead(target.Path, d.Bytes, buf)
	d.ReadSeconds = time.Since(start).Seconds()
	if err != nil {
		d.Error = "imagefarm.debug.dd: " + err.Error()
	}
	return d
}

// ddWrite copies url's body onto path with O_DIRECT, block by block,
// and flushes the disk.
func ddWrite(ctx context.Context, url, path string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT|unix.O_EXCL, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for {
		m, err := io.ReadFull(resp.Body, buf)
		if m > 0 {
			if m%4096 != 0 {
				return n, fmt.Errorf("%s: the image's size is not a multiple of 4096 bytes, which O_DIRECT writes need", url)
			}
			if _, err := f.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("write %s: %w", path, err)
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("GET %s: %w", url, err)
		}
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("flush %s: %w", path, err)
	}
	return n, nil
}

// ddRead reads n bytes of path back with O_DIRECT and returns their
// SHA-256.
func ddRead(path string, n int64, buf []byte) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.LimitReader(f, n), buf); err != nil {
		return "", fmt.Errorf("read back %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkDebugDD checks imagefarm.debug.dd's URL: plain HTTP only.
func checkDebugDD(url string) error {
	if !strings.HasPrefix(url, "http://") {
		return fmt.Errorf("imagefarm.debug.dd=%q: want an http:// URL of a raw image (a benchmark's baseline), or leave it out", url)
	}
	return nil
}
