#include "core.h"

#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

uint64_t sl_hash64(const void *p, size_t n, uint64_t seed) { return XXH3_64bits_withSeed(p, n, seed); }

static _Thread_local uint64_t rs[4];
static _Thread_local bool seeded;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void seed_state(void)
{
    if (getrandom(rs, sizeof rs, 0) != (ssize_t)sizeof rs) {
        uint64_t t = sl_now_ns() ^ (uint64_t)(uintptr_t)&rs;
        for (int i = 0; i < 4; i++) {
            t += 0x9e3779b97f4a7c15ull; /* splitmix64 */
            uint64_t z = t;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            rs[i] = z ^ (z >> 31);
        }
    }
    if (!(rs[0] | rs[1] | rs[2] | rs[3]))
        rs[0] = 1;
    seeded = true;
}

uint64_t sl_rand_u64(void)
{
    if (SL_UNLIKELY(!seeded))
        seed_state();
    uint64_t r = rotl(rs[1] * 5, 7) * 9;
    uint64_t t = rs[1] << 17;
    rs[2] ^= rs[0];
    rs[3] ^= rs[1];
    rs[1] ^= rs[2];
    rs[0] ^= rs[3];
    rs[2] ^= t;
    rs[3] = rotl(rs[3], 45);
    return r;
}

double sl_rand_unit(void) { return (double)(sl_rand_u64() >> 11) * 0x1.0p-53; }

void sl_rand_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            r = sl_rand_u64(); /* eight bytes from each draw */
        unsigned v = (unsigned)(r & 0xff);
        r >>= 8;
        out[2 * i] = hex[v >> 4];
        out[2 * i + 1] = hex[v & 15];
    }
    out[2 * n] = 0;
}

int sl_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
