package docket

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"reflect"
	"sync"
	"time"
)

// Cache stores the encoded results of Cached steps across executions. Keys
// are derived from the graph name, the step name and a hash of the step's
// encoded inputs. Implementations must be safe for concurrent use; the
// durable stores implement it too.
type Cache interface {
	// Get returns the value stored under key, if present and not expired.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// MemoryCache is an in-process Cache. Its zero value is not usable; make one
// with NewMemoryCache.
type MemoryCache struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	now     func() time.Time
	sweepAt int
}

type memoryEntry struct {
	value   []byte
	expires time.Time
}

// NewMemoryCache returns an empty in-memory cache.
func NewMemoryCache() *MemoryCache {
	return &MemoryCache{entries: map[string]memoryEntry{}, now: time.Now, sweepAt: 1024}
}

// Get implements Cache.
func (c *MemoryCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false, nil
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, key)
		return nil, false, nil
	}
	return e.value, true, nil
}

// Set implements Cache. Expired entries are swept whenever the cache has
// doubled in size since the last sweep, so it never holds much dead weight.
func (c *MemoryCache) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.entries[key] = memoryEntry{value: value, expires: now.Add(ttl)}
	if len(c.entries) >= c.sweepAt {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		c.sweepAt = max(1024, 2*len(c.entries))
	}
	return nil
}

// Len reports how many entries the cache holds, expired ones included.
func (c *MemoryCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheKey hashes the step's encoded inputs. It reports false when an input
// cannot be encoded, in which case the step simply runs uncached.
func (r *run) cacheKey(f *frame) (string, bool) {
	h := sha256.New()
	var n [8]byte
	for _, si := range f.ps.in {
		b, err := r.ix.codec.Marshal(r.vals[si])
		if err != nil {
			Logger(f).Warn("docket: step input cannot be encoded for the cache; running uncached", "error", err)
			return "", false
		}
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return r.ix.g.name + "/" + f.ps.st.name + "/" + r.ix.codec.Name() + "/" + hex.EncodeToString(h.Sum(nil)), true
}

func (r *run) cacheGet(f *frame) (key string, out any, hit bool) {
	if f.ps.st.cfg.cacheTTL <= 0 {
		return "", nil, false
	}
	key, ok := r.cacheKey(f)
	if !ok {
		return "", nil, false
	}
	data, hit, err := r.cacheImpl().Get(f, key)
	if err != nil {
		Logger(f).Warn("docket: cache lookup failed; running the step", "error", err)
		hit = false
	}
	if hit {
		ptr := reflect.New(f.ps.st.out)
		if err := r.ix.codec.Unmarshal(data, ptr.Interface()); err != nil {
			Logger(f).Warn("docket: cached value cannot be decoded; running the step", "error", err)
			hit = false
		} else {
			out = ptr.Elem().Interface()
		}
	}
	if obs := r.ix.g.cfg.observer; obs != nil {
		e := r.stepEvent(f)
		e.CacheHit = hit
		obs.CacheChecked(f, e)
	}
	return key, out, hit
}

func (r *run) cachePut(f *frame, key string, out any) {
	if key == "" {
		return
	}
	data, err := r.ix.codec.Marshal(out)
	if err == nil {
		err = r.cacheImpl().Set(f, key, data, f.ps.st.cfg.cacheTTL)
	}
	if err != nil {
		Logger(f).Warn("docket: step result not cached", "error", err)
	}
}

func (r *run) cacheImpl() Cache {
	if r.cache != nil {
		return r.cache
	}
	return r.ix.cache
}
