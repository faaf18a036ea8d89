/*
 * engine/kv: the paged key/value cache of the serving engine and its prefix
 * index.
 *
 * One byte budget is carved, once, into fixed-size blocks of block_tokens
 * positions. A block holds the keys and the values of those positions for
 * every layer (elements of f32 or f16, chosen at creation), laid out
 * block-major so that a block is one contiguous
 * piece of memory:
 *
 *   block b: [layer 0 K: block_tokens x kv_dim][layer 0 V] [layer 1 K] ...
 *
 * A sequence owns a block table (its own array of block ids, position p lives
 * in table[p / block_tokens] at row p % block_tokens); this module only hands
 * blocks out and takes them back. Blocks are refcounted so that several
 * sequences can share the blocks of a common prefix.
 *
 * Prefix index: a FULL block whose keys and values are computed can be
 * published under a chain hash, h = hash(parent_h, the block's tokens), where
 * parent_h is the chain hash of the block before it (0 for the first). A
 * lookup with the same chain hash and tokens returns that block, so a new
 * sequence whose prompt starts with the same tokens attaches to the block
 * (refcount + 1) instead of computing it again. Published blocks are never
 * written again (their positions are all filled), so sharing needs no
 * copy-on-write. A published block whose refcount drops to 0 stays indexed
 * ("cached") on an LRU list and is evicted, oldest first, only when a fresh
 * block is needed and the free list is empty.
 *
 * Not thread-safe: the scheduler's engine thread is the only user.
 */
#ifndef SL_ENGINE_KV_H
#define SL_ENGINE_KV_H

#include "core/core.h"

#define SL_KV_DEFAULT_BLOCK_TOKENS 16
#define SL_KV_MAX_BLOCK_TOKENS 4096

typedef struct sl_kv sl_kv;

typedef struct sl_kv_stats {
    int total;  /* blocks in the cache */
    int used;   /* blocks referenced by at least one sequence */
    int cached; /* unreferenced blocks still indexed (reusable prefixes) */
    int free;   /* blocks holding nothing */
    int64_t evictions; /* cached blocks reclaimed for fresh use */
} sl_kv_stats;

/* Creates a cache for n_layer layers of kv_dim elements of elem_bytes (4:
 * f32, 2: f16) per position, with as many blocks of block_tokens positions
 * as fit in budget_bytes (at least 1). Returns 0 and *out (free with
 * sl_kv_destroy), SL_EINVAL (a size out of range, elem_bytes not 2 or 4, or
 * a budget below one block) or SL_ENOMEM. */
int sl_kv_create(int n_layer, int kv_dim, int elem_bytes, int block_tokens, int64_t budget_bytes,
                 sl_kv **out);
/* Frees the cache. NULL is a no-op. */
void sl_kv_destroy(sl_kv *kv);

/* Returns the positions per block. */
int sl_kv_block_tokens(const sl_kv *kv);
/* Returns the number of blocks. */
int sl_kv_n_blocks(const sl_kv *kv);
/* Bytes one block takes. */
size_t sl_kv_block_bytes(const sl_kv *kv);
/* Fills the layout of the storage: the keys of (block b, layer l) are the
 * block_tokens x kv_dim elements at kbase + b * block_stride + l * layer_stride,
 * values at vbase with the same offsets (the model orders them head-major
 * within that span). Strides count elements, not bytes. */
void sl_kv_layout(sl_kv *kv, void **kbase, void **vbase, size_t *block_stride,
                  size_t *layer_stride);

/* Takes a fresh block with refcount 1: from the free list, else by evicting
 * the least recently released cached block (dropping it from the index).
 * Returns 0 and *block, or SL_EFULL when every block is referenced. */
int sl_kv_alloc(sl_kv *kv, int *block);
/* Adds a reference to a block that is referenced or cached (a cached block
 * leaves the LRU list). */
void sl_kv_ref(sl_kv *kv, int block);
/* Drops a reference. At 0 the block goes to the LRU tail when it is indexed,
 * else to the free list. */
void sl_kv_unref(sl_kv *kv, int block);
/* Returns a block's refcount. */
int sl_kv_refcount(const sl_kv *kv, int block);

/* Returns the chain hash of a block of tokens[0..n) after the block whose
 * chain hash is parent (0 for the first block of a sequence). */
uint64_t sl_kv_chain_hash(uint64_t parent, const int32_t *tokens, int n);
/* Looks up the block published under chain hash h with exactly these
 * block_tokens tokens and parent hash. Returns the block id with a new
 * reference taken (as sl_kv_ref), or -1. Counts as a use for the LRU order. */
int sl_kv_lookup(sl_kv *kv, uint64_t h, uint64_t parent, const int32_t *tokens);
/* Publishes a full, computed, referenced block under chain hash h (tokens:
 * its block_tokens tokens). Returns true if it is now indexed, false when an
 * equal block is already published (this one then stays private and is
 * freed normally) or it already was. */
bool sl_kv_publish(sl_kv *kv, int block, uint64_t h, uint64_t parent, const int32_t *tokens);

/* Fills *st. */
void sl_kv_stats_get(const sl_kv *kv, sl_kv_stats *st);

#endif
