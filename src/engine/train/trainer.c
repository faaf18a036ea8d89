/* engine/train: the training loop.
 *
 * corpus file -> BPE vocabulary -> token ids (the engine's own tokenizer, so
 * training sees exactly what serving will) -> the last 5% held out for
 * validation -> steps of: a batch of random windows, forward + backward,
 * AdamW -> checkpoints -> the GGUF file.
 *
 * Everything that decides the next step lives in the checkpoint: parameters,
 * both Adam moments, the step, and the data loader's random state; the
 * vocabulary is re-learned from the corpus (deterministic) and checked
 * against the hash stored in the checkpoint. So a resumed run continues
 * bitwise as the uninterrupted one would have. */
#include "engine/train/train.h"
#include "engine/tokenizer/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CORPUS ((size_t)512 << 20)
#define CKPT_MAGIC 0x4b43534cu /* "LSCK" little-endian */
#define CKPT_VERSION 1u
#define VAL_BATCHES 8

void sl_train_opts_default(sl_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->hp = (sl_train_hparams){.dim = 128, .n_layer = 4, .n_head = 4, .n_head_kv = 4,
                               .n_ff = 384, .n_vocab = 1024, .n_ctx = 128, .norm_eps = 1e-5f,
                               .rope_base = 10000.0f};
    o->batch = 16;
    o->steps = 600;
    o->lr = 3e-3f;
    o->seed = 1;
    o->threads = 0;
    o->ckpt_every = 100;
    o->eval_every = 100;
    o->name = "sluice-demo";
}

static uint64_t data_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int read_file(const char *path, sl_buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SL_EIO;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = sl_buf_append(out, chunk, n);
    if (!rc && ferror(f))
        rc = SL_EIO;
    fclose(f);
    if (rc)
        snprintf(err, errlen, "%s: %s", path,
                 rc == SL_ETOOBIG ? "larger than the 512 MiB limit" : sl_strerror(rc));
    return rc;
}

static uint64_t vocab_hash(const sl_train_vocab *v)
{
    uint64_t h = (uint64_t)v->n_tokens;
    for (int i = 0; i < v->n_merges; i++)
        h = sl_hash64(v->merges[i], strlen(v->merges[i]), h);
    return h;
}

void sl_train_assistant_mask(const int32_t *ids, size_t n, int32_t im_start, int32_t im_end,
                             const int32_t *hdr, size_t n_hdr, uint8_t *mask)
{
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        mask[i] = 0;
        if (in && ids[i] != im_start) { /* an unclosed message ends at the next im_start */
            mask[i] = 1;
            in = ids[i] != im_end;
            continue;
        }
        in = false;
        if (ids[i] == im_start && n_hdr > 0 && i + n_hdr < n &&
            !memcmp(ids + i + 1, hdr, n_hdr * sizeof *hdr)) {
            memset(mask + i + 1, 0, n_hdr);
            i += n_hdr;
            in = true;
        }
    }
}

/* ---- checkpoints ---- */
typedef struct ckpt_head {
    uint32_t magic, version;
    int32_t hp[7]; /* dim, layers, heads, kv heads, ff, vocab, ctx */
    float eps, rope_base;
    int32_t batch, steps;
    uint64_t seed, vocab_hash, n_params;
    int32_t step, flags; /* flags: CKPT_MASKED, CKPT_DOC_START */
    uint64_t rng;
} ckpt_head;

#define CKPT_MASKED 1
#define CKPT_DOC_START 2

static void fill_head(ckpt_head *h, const sl_train_opts *o, const sl_train_hparams *hp,
                      uint64_t vh, int step, uint64_t rng)
{
    memset(h, 0, sizeof *h);
    h->magic = CKPT_MAGIC;
    h->version = CKPT_VERSION;
    int32_t v[7] = {hp->dim, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab,
                    hp->n_ctx};
    memcpy(h->hp, v, sizeof v);
    h->eps = hp->norm_eps;
    h->rope_base = hp->rope_base;
    h->batch = o->batch;
    h->steps = o->steps;
    h->seed = o->seed;
    h->vocab_hash = vh;
    h->n_params = sl_train_n_params(hp);
    h->step = step;
    h->flags = (o->mask_assistant ? CKPT_MASKED : 0) | (o->doc_start ? CKPT_DOC_START : 0);
    h->rng = rng;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return SL_EIO;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Layout: head, params, m1, m2 (floats), then a hash of everything before. */
static int ckpt_save(const char *path, const ckpt_head *h, const float *p, const float *m1,
                     const float *m2, char *err, size_t errlen)
{
    size_t np = (size_t)h->n_params, plen = strlen(path);
    char *tmp = sl_malloc(plen + 5);
    if (!tmp)
        return SL_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "checkpoint %s: %s", tmp, strerror(errno));
        sl_free(tmp);
        return SL_EIO;
    }
    uint64_t hash = sl_hash64(h, sizeof *h, 1);
    hash = sl_hash64(p, np * 4, hash);
    hash = sl_hash64(m1, np * 4, hash);
    hash = sl_hash64(m2, np * 4, hash);
    int rc = write_all(fd, h, sizeof *h);
    if (!rc)
        rc = write_all(fd, p, np * 4);
    if (!rc)
        rc = write_all(fd, m1, np * 4);
    if (!rc)
        rc = write_all(fd, m2, np * 4);
    if (!rc)
        rc = write_all(fd, &hash, sizeof hash);
    if (!rc && fsync(fd))
        rc = SL_EIO;
    if (close(fd) && !rc)
        rc = SL_EIO;
    if (!rc && rename(tmp, path))
        rc = SL_EIO;
    if (rc) {
        snprintf(err, errlen, "checkpoint %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    sl_free(tmp);
    return rc;
}

/* Loads a checkpoint that must match want (everything but step and rng). */
static int ckpt_load(const char *path, const ckpt_head *want, float *p, float *m1, float *m2,
                     int *step, uint64_t *rng, char *err, size_t errlen)
{
    size_t np = (size_t)want->n_params;
    sl_buf b;
    sl_buf_init(&b, sizeof(ckpt_head) + np * 12 + 8);
    int rc = read_file(path, &b, err, errlen);
    if (rc) {
        sl_buf_free(&b);
        return rc;
    }
    ckpt_head h;
    if (b.len != sizeof h + np * 12 + 8) {
        snprintf(err, errlen, "checkpoint %s: %zu bytes, expected %zu for this model", path,
                 b.len, sizeof h + np * 12 + 8);
        rc = SL_ECORRUPT;
        goto out;
    }
    memcpy(&h, b.data, sizeof h);
    uint64_t hash, stored;
    /* the hash was chained over the parts; recompute it the same way */
    hash = sl_hash64(b.data, sizeof h, 1);
    hash = sl_hash64(b.data + sizeof h, np * 4, hash);
    hash = sl_hash64(b.data + sizeof h + np * 4, np * 4, hash);
    hash = sl_hash64(b.data + sizeof h + np * 8, np * 4, hash);
    memcpy(&stored, b.data + b.len - 8, 8);
    if (h.magic != CKPT_MAGIC || h.version != CKPT_VERSION || hash != stored) {
        snprintf(err, errlen, "checkpoint %s: not a checkpoint or damaged (bad magic or hash)",
                 path);
        rc = SL_ECORRUPT;
        goto out;
    }
    ckpt_head cmp = h;
    cmp.step = want->step;
    cmp.rng = want->rng;
    if (memcmp(&cmp, want, sizeof cmp)) {
        snprintf(err, errlen,
                 "checkpoint %s was made with other settings (model shape, batch, steps, seed "
                 "or corpus differ)",
                 path);
        rc = SL_EINVAL;
        goto out;
    }
    if (h.step < 0 || h.step > want->steps) {
        snprintf(err, errlen, "checkpoint %s: step %d out of range", path, h.step);
        rc = SL_ECORRUPT;
        goto out;
    }
    memcpy(p, b.data + sizeof h, np * 4);
    memcpy(m1, b.data + sizeof h + np * 4, np * 4);
    memcpy(m2, b.data + sizeof h + np * 8, np * 4);
    *step = h.step;
    *rng = h.rng;
out:
    sl_buf_free(&b);
    return rc;
}

/* Mean loss over VAL_BATCHES batches of evenly spaced windows of val (with
 * its mask vmask, or NULL). */
static int val_loss(sl_train_model *m, const int32_t *val, const uint8_t *vmask, size_t n_val,
                    int batch, int32_t *buf, uint8_t *mbuf, double *out)
{
    const int T = sl_train_model_hparams(m)->n_ctx;
    size_t span = n_val - (size_t)T - 1, k = 0, total = (size_t)VAL_BATCHES * (size_t)batch;
    double sum = 0;
    for (int vb = 0; vb < VAL_BATCHES; vb++) {
        for (int b = 0; b < batch; b++, k++) {
            size_t off = total > 1 ? span * k / (total - 1) : 0;
            memcpy(buf + (size_t)b * (T + 1), val + off, sizeof(int32_t) * (size_t)(T + 1));
            if (vmask)
                memcpy(mbuf + (size_t)b * (T + 1), vmask + off, (size_t)(T + 1));
        }
        double l;
        int rc = sl_train_model_run_masked(m, buf, vmask ? mbuf : NULL, batch, false, &l);
        if (rc)
            return rc;
        sum += l;
    }
    *out = sum / VAL_BATCHES;
    return 0;
}

/* Tokenizes the corpus in pieces of about 64 KiB that end just after an
 * end-of-text token: special tokens already cut the pre-tokenizer's pieces,
 * so the ids are those of the whole text, and each call stays short. */
static int encode_chunks(const sl_tokenizer *tok, const sl_buf *text, int32_t **ids, size_t *n)
{
    static const char eot[] = SL_TRAIN_TOK_ENDOFTEXT;
    size_t at = 0, cap = 0, len = 0;
    int32_t *all = NULL;
    int rc = 0;
    while (at < text->len && !rc) {
        size_t end = text->len;
        if (text->len - at > 65536) {
            const char *e = memmem(text->data + at + 65536, text->len - at - 65536, eot,
                                   sizeof eot - 1);
            if (e)
                end = (size_t)(e - text->data) + sizeof eot - 1;
        }
        int32_t *part = NULL;
        size_t np = 0;
        if ((rc = sl_tok_encode(tok, text->data + at, end - at, false, true, &part, &np)))
            break;
        if (len + np > cap) {
            size_t nc = (len + np) * 2;
            int32_t *g = sl_realloc(all, nc * sizeof *g);
            if (!g) {
                sl_free(part);
                rc = SL_ENOMEM;
                break;
            }
            all = g, cap = nc;
        }
        memcpy(all + len, part, np * sizeof *part);
        len += np;
        sl_free(part);
        at = end;
    }
    if (rc) {
        sl_free(all);
        return rc;
    }
    *ids = all;
    *n = len;
    return 0;
}

static void phase(sl_train_progress_fn fn, void *user, const char *what)
{
    if (!fn)
        return;
    sl_train_progress p = {.phase = what, .val_loss = -1};
    fn(user, &p);
}

int sl_train_run(const sl_train_opts *o, sl_train_progress_fn progress, void *user,
                 double *final_loss, char *err, size_t errlen)
{
    sl_buf corpus;
    sl_buf_init(&corpus, MAX_CORPUS);
    sl_train_vocab v = {0};
    sl_tokenizer *tok = NULL;
    int32_t *ids = NULL, *batch_buf = NULL, *hdr = NULL;
    uint8_t *mask = NULL, *mask_buf = NULL;
    size_t *starts = NULL, n_starts = 0;
    size_t n_ids = 0;
    sl_pool *pool = NULL;
    sl_train_model *m = NULL;
    float *m1 = NULL, *m2 = NULL;
    int rc;
    sl_train_hparams hp = o->hp;

    if (o->steps < 1 || o->batch < 1 || o->batch > 4096 || !(o->lr > 0) ||
        (o->ckpt_path && o->ckpt_every < 1)) {
        snprintf(err, errlen, "steps, batch, lr and ckpt-every must be positive");
        return SL_EINVAL;
    }
    if (hp.n_vocab < SL_TRAIN_MIN_VOCAB / 2 || hp.n_vocab > SL_TRAIN_MAX_VOCAB) {
        snprintf(err, errlen, "vocab must be in %d..%d", SL_TRAIN_MIN_VOCAB / 2,
                 SL_TRAIN_MAX_VOCAB);
        return SL_EINVAL;
    }
    if ((rc = sl_train_hparams_check(&hp, err, errlen)))
        return rc;
    if ((rc = read_file(o->corpus_path, &corpus, err, errlen)))
        goto out;

    phase(progress, user, "learning the tokenizer");
    if ((rc = sl_train_bpe(corpus.data, corpus.len, hp.n_vocab, &v, err, errlen)))
        goto out;
    hp.n_vocab = v.n_tokens;
    sl_tok_vocab tv = {.kind = SL_TOK_BPE, .pre = "default", .n_tokens = (size_t)v.n_tokens,
                       .tokens = (const char *const *)v.tokens, .types = v.types,
                       .n_merges = (size_t)v.n_merges, .merges = (const char *const *)v.merges,
                       .bos_id = v.bos_id, .eos_id = v.eos_id, .eot_id = v.eot_id,
                       .unk_id = -1, .pad_id = -1};
    if ((rc = sl_tok_create(&tv, &tok, err, errlen)))
        goto out;
    phase(progress, user, "tokenizing the corpus");
    if ((rc = encode_chunks(tok, &corpus, &ids, &n_ids))) {
        snprintf(err, errlen, "tokenizing %s: %s", o->corpus_path, sl_strerror(rc));
        goto out;
    }
    const size_t T = (size_t)hp.n_ctx;
    size_t n_val = n_ids / 20;
    if (n_val < T + 2)
        n_val = T + 2;
    if (n_ids < n_val + T + 2) {
        snprintf(err, errlen, "corpus %s: %zu tokens, too few for sequences of %zu", o->corpus_path,
                 n_ids, T);
        rc = SL_EINVAL;
        goto out;
    }
    const size_t n_train = n_ids - n_val;
    const int32_t *val = ids + n_train;
    if (o->mask_assistant) {
        size_t n_hdr = 0;
        mask = sl_malloc(n_ids);
        rc = mask ? sl_tok_encode(tok, "assistant\n", 10, false, false, &hdr, &n_hdr) : SL_ENOMEM;
        if (rc) {
            snprintf(err, errlen, "masking: %s", sl_strerror(rc));
            goto out;
        }
        /* the specials are the last three ids: end-of-text, im_start, im_end */
        sl_train_assistant_mask(ids, n_ids, v.n_tokens - 2, v.n_tokens - 1, hdr, n_hdr, mask);
    }
    if (o->doc_start) {
        /* offsets of the documents that start early enough for a whole window */
        starts = sl_malloc((n_train / 2 + 1) * sizeof *starts);
        if (!starts) {
            rc = SL_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        for (size_t i = 0; i + T + 1 <= n_train; i++)
            if ((i == 0 || ids[i - 1] == v.n_tokens - 3) && n_starts < n_train / 2 + 1)
                starts[n_starts++] = i;
        if (!n_starts) {
            rc = SL_EINVAL;
            snprintf(err, errlen, "corpus %s: no document starts", o->corpus_path);
            goto out;
        }
    }

    if ((rc = sl_pool_create(o->threads, &pool)) ||
        (rc = sl_train_model_create(&hp, o->batch, pool, &m))) {
        snprintf(err, errlen, "creating the model: %s", sl_strerror(rc));
        goto out;
    }
    const size_t np = sl_train_n_params(&hp);
    m1 = sl_calloc(np, sizeof(float));
    m2 = sl_calloc(np, sizeof(float));
    batch_buf = sl_calloc((size_t)o->batch * (T + 1), sizeof(int32_t));
    mask_buf = sl_calloc((size_t)o->batch * (T + 1), 1);
    if (!m1 || !m2 || !batch_buf || !mask_buf) {
        rc = SL_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    sl_train_model_init(m, o->seed);
    sl_train_optim opt;
    sl_train_optim_default(&opt, o->steps);
    opt.lr = o->lr;
    opt.min_lr = o->lr / 10;

    uint64_t vh = vocab_hash(&v), rng = o->seed * 0xD1B54A32D192ED03ull + 1;
    int step = 0;
    if (o->ckpt_path && o->resume && access(o->ckpt_path, F_OK) == 0) {
        ckpt_head want;
        fill_head(&want, o, &hp, vh, 0, 0);
        if ((rc = ckpt_load(o->ckpt_path, &want, sl_train_model_params(m), m1, m2, &step, &rng,
                            err, errlen)))
            goto out;
        phase(progress, user, "resumed from the checkpoint");
    }

    double loss = NAN, vloss = -1;
    uint64_t t0 = sl_now_ns();
    int first = step;
    while (step < o->steps) {
        for (int b = 0; b < o->batch; b++) {
            size_t off = starts ? starts[data_next(&rng) % (uint64_t)n_starts]
                                : (size_t)(data_next(&rng) % (uint64_t)(n_train - T - 1));
            memcpy(batch_buf + (size_t)b * (T + 1), ids + off, sizeof(int32_t) * (T + 1));
            if (mask)
                memcpy(mask_buf + (size_t)b * (T + 1), mask + off, T + 1);
        }
        if ((rc = sl_train_model_run_masked(m, batch_buf, mask ? mask_buf : NULL, o->batch, true,
                                            &loss)))
            break;
        if (!isfinite(loss)) {
            snprintf(err, errlen, "loss is not finite at step %d (lower --lr)", step + 1);
            rc = SL_ERANGE;
            goto out;
        }
        sl_train_adamw(m, m1, m2, &opt, step, NULL);
        step++;
        bool val_now = (o->eval_every > 0 && step % o->eval_every == 0) || step == o->steps;
        if (val_now && (rc = val_loss(m, val, mask ? mask + n_train : NULL, n_val, o->batch,
                                      batch_buf, mask_buf, &vloss)))
            break;
        if (o->ckpt_path && (step % o->ckpt_every == 0 || step == o->steps ||
                             step == o->stop_after)) {
            ckpt_head h;
            fill_head(&h, o, &hp, vh, step, rng);
            if ((rc = ckpt_save(o->ckpt_path, &h, sl_train_model_params(m), m1, m2, err,
                                errlen)))
                goto out;
        }
        if (progress) {
            double el = (double)(sl_now_ns() - t0) / 1e9;
            int done = step - first;
            sl_train_progress p = {.step = step, .steps = o->steps, .loss = loss,
                                   .val_loss = vloss, .lr = sl_train_lr(&opt, step - 1),
                                   .tokens_per_s = el > 0 ? done * (double)o->batch * T / el : 0,
                                   .eta_s = done > 0 ? el / done * (o->steps - step) : 0,
                                   .val_now = val_now};
            progress(user, &p);
        }
        if (o->stop_after > 0 && step >= o->stop_after)
            break;
    }
    if (rc) {
        snprintf(err, errlen, "training step %d: %s", step + 1, sl_strerror(rc));
        goto out;
    }
    if (final_loss)
        *final_loss = loss;
    if (step == o->steps && o->out_path) {
        phase(progress, user, "writing the model");
        rc = sl_train_export(m, &v, o->name, o->f16, o->out_path, err, errlen);
    }
out:
    sl_free(batch_buf);
    sl_free(mask_buf);
    sl_free(mask);
    sl_free(hdr);
    sl_free(starts);
    sl_free(m1);
    sl_free(m2);
    sl_train_model_free(m);
    sl_pool_destroy(pool);
    sl_free(ids);
    sl_tok_destroy(tok);
    sl_train_vocab_free(&v);
    sl_buf_free(&corpus);
    return rc;
}
