package catalog

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/imagefarm/imagefarm/internal/dirlock"
	"github.com/imagefarm/imagefarm/internal/ident"
)

// Cache keeps compressed chunks on a node's local disk, so that a chunk is
// downloaded once for every job and drive on the node. It is bounded in
// size (least recently used chunks go first) and checked on every use: a
// chunk read from the cache is verified like one from the store, and a bad
// copy is dropped and fetched again.
type Cache struct {
	dir string
	max int64

	mu    sync.Mutex
	lock  *dirlock.Lock            // the folder is this process's alone
	lru   *list.List               // of *cacheEntry, most recently used first
	index map[string]*list.Element // chunk id -> element
	size  int64

	hits, misses, corrupt atomic.Int64
}

type cacheEntry struct {
	id   string
	size int64
}

// CacheStats counts what the cache did since it was opened.
type CacheStats struct {
	Hits    int64 // chunks served from the cache
	Misses  int64 // chunks downloaded into it
	Corrupt int64 // copies that failed their check and were dropped
	Bytes   int64
	Chunks  int
}

// CacheStateDir is the folder in a cache's folder that the cache leaves
// alone, for the node's own small files (the images it has accepted).
const CacheStateDir = "state"

// OpenCache opens (creating it if needed) the cache in dir, holding at most
// maxBytes of compressed chunks. The folder is this process's until Close:
// another process (an imager, imagefarm write) opening it is refused with
// a *dirlock.BusyError naming this one.
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < MaxChunkSize {
		return nil, fmt.Errorf("node cache %s: size %d is smaller than one chunk", dir, maxBytes)
	}
	lock, err := lockCache(dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{dir: dir, max: maxBytes, lock: lock, lru: list.New(), index: map[string]*list.Element{}}
	if err := c.load(); err != nil {
		lock.Release()
		return nil, fmt.Errorf("node cache %s: %w", dir, err)
	}
	return c, nil
}

func lockCache(dir string) (*dirlock.Lock, error) {
	return dirlock.Acquire(dir, "node cache", "--cache folder")
}

// Dir is the folder the cache lives in.
func (c *Cache) Dir() string { return c.dir }

// Close gives the cache's folder up for another process to open.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lock.Release()
}

// Recover makes sure the cache's folder is still there and still this
// process's, for a node whose cache was removed while it ran (an operator
// wiping the folder to free space): it then recreates the folder, takes its
// lock again, indexes what is on disk afresh and reports true. It fails
// when the folder cannot be made again, or when another process has taken
// it since.
func (c *Cache) Recover() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lock.Intact() {
		return false, nil
	}
	lock, err := lockCache(c.dir)
	if err != nil {
		return false, fmt.Errorf("node cache %s was removed while in use, and cannot be made again: %w", c.dir, err)
	}
	c.lock.Release()
	c.lock = lock
	c.lru.Init()
	clear(c.index)
	c.size = 0
	if err := c.load(); err != nil {
		return false, fmt.Errorf("node cache %s was removed while in use: %w", c.dir, err)
	}
	return true, nil
}

// load indexes the chunks already on disk, oldest first. Called at open or
// with c.mu held.
func (c *Cache) load() error {
	type found struct {
		id   string
		size int64
		mod  int64
	}
	var all []found
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p == filepath.Join(c.dir, CacheStateDir) {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() || p == filepath.Join(c.dir, dirlock.FileName) {
			return err
		}
		info, err := d.Info()
		if err != nil || ident.ChunkID(d.Name()) != nil {
			os.Remove(p) // a temporary file left by a crash, or junk
			return nil
		}
		all = append(all, found{d.Name(), info.Size(), info.ModTime().UnixNano()})
		return nil
	})
	slices.SortFunc(all, func(a, b found) int { return int(b.mod - a.mod) })
	for _, f := range all {
		c.index[f.id] = c.lru.PushBack(&cacheEntry{f.id, f.size})
		c.size += f.size
	}
	return err
}

func (c *Cache) path(id string) string { return filepath.Join(c.dir, id[:2], id) }

// has reports whether the cache holds chunk id (its copy is checked when
// read). A chunk indexed but no longer on disk (removed from under the
// node) is dropped from the index, so that a prefetch fetches it again
// rather than counting on it.
func (c *Cache) has(id string) bool {
	c.mu.Lock()
	_, ok := c.index[id]
	c.mu.Unlock()
	if ok {
		if _, err := os.Stat(c.path(id)); errors.Is(err, fs.ErrNotExist) {
			c.drop(id)
			return false
		}
	}
	return ok
}

// read returns the cached compressed chunk id into buf, or false.
func (c *Cache) read(id string, buf []byte) ([]byte, bool) {
	c.mu.Lock()
	el, ok := c.index[id]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	data, err := readFileInto(c.path(id), buf)
	if err != nil {
		c.drop(id)
		return nil, false
	}
	return data, true
}

func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if int64(cap(buf)) < fi.Size() {
		buf = make([]byte, fi.Size())
	}
	n, err := f.ReadAt(buf[:fi.Size()], 0)
	if n == int(fi.Size()) {
		err = nil
	}
	return buf[:n], err
}

// put stores a verified compressed chunk and evicts the least recently used
// chunks beyond the size bound. Failing to cache is not an error for the
// caller: the chunk was fetched and can be used; it will be fetched again.
func (c *Cache) put(id string, compressed []byte) {
	p := c.path(id)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".put-")
	if err != nil {
		return
	}
	_, err = tmp.Write(compressed)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[id]; ok {
		c.size -= el.Value.(*cacheEntry).size
		c.lru.Remove(el)
	}
	c.index[id] = c.lru.PushFront(&cacheEntry{id, int64(len(compressed))})
	c.size += int64(len(compressed))
	for c.size > c.max && c.lru.Len() > 1 {
		c.removeLocked(c.lru.Back())
	}
}

// drop removes a chunk, for instance one whose copy failed its check.
func (c *Cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[id]; ok {
		c.removeLocked(el)
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.index, e.id)
	c.size -= e.size
	os.Remove(c.path(e.id))
}

// Stats returns the cache's counters and contents.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Corrupt: c.corrupt.Load(), Bytes: c.size, Chunks: c.lru.Len()}
}
