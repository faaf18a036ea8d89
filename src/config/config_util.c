/* Diagnostics, value parsers (durations, sizes), snapshot refcounting and
 * the reload holder. */
#include "config/config_int.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- diagnostics ---- */

bool sl_config_diag_addf(sl_config_diags *d, bool is_error, int line, int col, const char *fmt, ...)
{
    /* The last slot is kept for a note that the list was cut short, so that
     * a file with thousands of mistakes still gives a bounded answer. */
    if (d->n >= SL_CONFIG_MAX_DIAGS)
        return false;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        if (cap > SL_CONFIG_MAX_DIAGS)
            cap = SL_CONFIG_MAX_DIAGS;
        sl_config_diag *items = sl_realloc(d->items, cap * sizeof *items);
        if (!items)
            return false;
        d->items = items;
        d->cap = cap;
    }
    sl_config_diag *it = &d->items[d->n++];
    memset(it, 0, sizeof *it);
    if (d->n == SL_CONFIG_MAX_DIAGS) {
        it->is_error = true;
        snprintf(it->message, sizeof it->message,
                 "too many problems (more than %d); fix these and check again", SL_CONFIG_MAX_DIAGS - 1);
        return false;
    }
    it->is_error = is_error;
    it->line = line > 0 ? line : 0;
    it->col = col > 0 ? col : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof it->message, fmt, ap);
    va_end(ap);
    return true;
}

void sl_config_diags_free(sl_config_diags *d)
{
    if (!d)
        return;
    sl_free(d->items);
    d->items = NULL;
    d->n = d->cap = 0;
}

size_t sl_config_diags_errors(const sl_config_diags *d)
{
    size_t n = 0;
    for (size_t i = 0; d && i < d->n; i++)
        n += d->items[i].is_error;
    return n;
}

void sl_config_diag_format(const char *file, const sl_config_diag *d, char *out, size_t cap)
{
    if (!cap)
        return;
    const char *kind = d->is_error ? "error" : "warning";
    if (!file || !*file)
        file = "<config>";
    if (d->line > 0)
        snprintf(out, cap, "%s:%d:%d: %s: %s", file, d->line, d->col > 0 ? d->col : 1, kind, d->message);
    else
        snprintf(out, cap, "%s: %s: %s", file, kind, d->message);
}

/* ---- value parsers ---- */

/* Reads an unsigned decimal with an optional fraction ("12", "1.5").
 * Returns the number of bytes consumed, 0 if there is no digit first. */
static size_t read_decimal(const char *s, double *out)
{
    size_t i = 0;
    double v = 0;
    if (s[0] < '0' || s[0] > '9')
        return 0;
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        i++;
    }
    if (s[i] == '.') {
        size_t j = i + 1;
        double scale = 0.1;
        if (s[j] < '0' || s[j] > '9')
            return 0;   /* "1." is not a number we accept */
        while (s[j] >= '0' && s[j] <= '9') {
            v += (s[j] - '0') * scale;
            scale /= 10;
            j++;
        }
        i = j;
    }
    *out = v;
    return i;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Splits "  12.5 ms " into the number and the unit without surrounding blanks.
 * Returns 0, or SL_EPARSE when there is no leading number. */
static int split_number_unit(const char *s, double *v, const char **u, size_t *ul)
{
    if (!s)
        return SL_EPARSE;
    s = skip_spaces(s);
    size_t n = read_decimal(s, v);
    if (!n)
        return SL_EPARSE;
    *u = skip_spaces(s + n);
    *ul = strlen(*u);
    while (*ul && ((*u)[*ul - 1] == ' ' || (*u)[*ul - 1] == '\t'))
        (*ul)--;
    return 0;
}

int sl_config_parse_duration(const char *s, double *seconds_out)
{
    double v;
    const char *u;
    size_t ul;
    if (split_number_unit(s, &v, &u, &ul) != 0)
        return SL_EPARSE;
    double mult;
    if (ul == 0 || (ul == 1 && u[0] == 's'))
        mult = 1;
    else if (ul == 2 && !strncmp(u, "ms", 2))
        mult = 1e-3;
    else if (ul == 2 && !strncmp(u, "us", 2))
        mult = 1e-6;
    else if (ul == 1 && u[0] == 'm')
        mult = 60;
    else if (ul == 1 && u[0] == 'h')
        mult = 3600;
    else
        return SL_EPARSE;
    double r = v * mult;
    if (!isfinite(r))
        return SL_EPARSE;
    *seconds_out = r;
    return 0;
}

int sl_config_parse_size(const char *s, uint64_t *bytes_out)
{
    double v;
    const char *u;
    size_t ul;
    if (split_number_unit(s, &v, &u, &ul) != 0)
        return SL_EPARSE;
    static const struct { const char *unit; double mult; } units[] = {
        {"B", 1},
        {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
    };
    double mult = 0;
    if (ul == 0)
        mult = 1;
    for (size_t i = 0; !mult && i < SL_ARRAY_LEN(units); i++)
        if (strlen(units[i].unit) == ul && !strncasecmp(u, units[i].unit, ul))
            mult = units[i].mult;
    if (!mult)
        return SL_EPARSE;
    double r = floor(v * mult);
    if (!isfinite(r) || r > 9007199254740992.0)
        return SL_ERANGE;
    *bytes_out = (uint64_t)r;
    return 0;
}

/* ---- snapshots ---- */

cfg_impl *sl_config_new_impl(const char *path)
{
    cfg_impl *ci = sl_calloc(1, sizeof *ci);
    if (!ci)
        return NULL;
    ci->arena = sl_arena_create(4096);
    const char *p = ci->arena ? sl_arena_strndup(ci->arena, path ? path : "", path ? strlen(path) : 0) : NULL;
    if (!p) {
        sl_arena_destroy(ci->arena);
        sl_free(ci);
        return NULL;
    }
    atomic_init(&ci->refs, 1);
    sl_config *c = &ci->pub;
    c->path = p;
    c->server.host = "127.0.0.1";
    c->server.port = 8080;
    c->server.workers = 0;
    c->server.max_body_bytes = 8u << 20;
    c->server.max_connections = 4096;
    c->server.header_timeout_s = 10;
    c->server.body_timeout_s = 30;
    c->server.idle_timeout_s = 60;
    c->server.drain_timeout_s = 30;
    c->server.max_inflight = 1024;
    c->server.log_level = "info";
    c->server.access_log = true;
    c->router.routing_strategy = "latency";
    c->router.num_retries = 2;
    c->router.retry_backoff_ms = 50;
    c->router.queue_max = 100;
    c->router.queue_timeout_s = 10;
    c->router.eject_consecutive = 5;
    c->router.eject_base_s = 30;
    c->router.eject_max_s = 300;
    c->router.max_ejection_percent = 50;
    c->router.slow_start_window_s = 30;
    c->router.slow_start_floor = 0.1;
    c->router.slow_start_aggression = 2;
    c->router.slow_start_curve = "linear";
    c->router.retry_after_max_s = 60;
    c->router.latency_decay_s = 10;
    c->router.retry_budget_ratio = 0.2;
    c->router.retry_budget_min_per_s = 10;
    c->router.retry_budget_window_s = 10;
    c->router.health_check_interval_s = 5;
    c->router.health_check_timeout_s = 2;
    return ci;
}

int sl_config_default(sl_config **out)
{
    cfg_impl *ci = sl_config_new_impl("");
    *out = ci ? &ci->pub : NULL;
    return ci ? 0 : SL_ENOMEM;
}

sl_config *sl_config_retain(sl_config *c)
{
    if (c)
        atomic_fetch_add_explicit(&((cfg_impl *)c)->refs, 1, memory_order_relaxed);
    return c;
}

void sl_config_release(sl_config *c)
{
    if (!c)
        return;
    cfg_impl *ci = (cfg_impl *)c;
    /* acq_rel: the thread that frees must see every other user's last reads done */
    if (atomic_fetch_sub_explicit(&ci->refs, 1, memory_order_acq_rel) != 1)
        return;
    sl_arena_destroy(ci->arena);
    sl_free(ci);
}

const sl_fallback_conf *sl_config_find_fallback(const sl_config *c, const char *model_name)
{
    for (size_t i = 0; c && model_name && i < c->router.n_fallbacks; i++)
        if (!strcmp(c->router.fallbacks[i].model, model_name))
            return &c->router.fallbacks[i];
    return NULL;
}

/* ---- holder ----
 * A mutex around "read the pointer and take a reference" is what makes get
 * safe against a concurrent swap releasing the same snapshot: the holder's
 * own reference cannot be dropped while a reader is between the two steps.
 * The critical section is a pointer load and an atomic add, so contention
 * costs little next to a request. */
struct sl_config_holder {
    pthread_mutex_t mu;
    sl_config *cur;
};

int sl_config_holder_create(sl_config *initial, sl_config_holder **out)
{
    *out = NULL;
    sl_config_holder *h = sl_calloc(1, sizeof *h);
    if (!h)
        return SL_ENOMEM;
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        sl_free(h);
        return SL_ENOMEM;
    }
    h->cur = initial;
    *out = h;
    return 0;
}

sl_config *sl_config_holder_get(sl_config_holder *h)
{
    pthread_mutex_lock(&h->mu);
    sl_config *c = sl_config_retain(h->cur);
    pthread_mutex_unlock(&h->mu);
    return c;
}

void sl_config_holder_swap(sl_config_holder *h, sl_config *next)
{
    pthread_mutex_lock(&h->mu);
    sl_config *old = h->cur;
    h->cur = next;
    pthread_mutex_unlock(&h->mu);
    /* outside the lock: freeing a large snapshot must not stall readers */
    sl_config_release(old);
}

void sl_config_holder_destroy(sl_config_holder *h)
{
    if (!h)
        return;
    sl_config_release(h->cur);
    pthread_mutex_destroy(&h->mu);
    sl_free(h);
}
