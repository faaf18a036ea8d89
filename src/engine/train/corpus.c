/* engine/train: the synthetic training corpus, generated from a seed.
 *
 * A fictional shop sells a catalogue of products, each with a price, a
 * warranty, a return window, colours and a category. Documents are ChatML
 * conversations between a customer and the shop's support assistant: the
 * customer asks about one attribute in one of many phrasings (some wrapped
 * in an opening and a closing), the assistant answers with one fixed
 * sentence per attribute that restates the attribute and the product, then
 * gives the fact. Some conversations have several turns, a system message, greetings;
 * some ask for a short story, which the assistant tells from templates.
 *
 * The question phrasings are split in two: the training ones appear in the
 * corpus, the held-out ones only in the evaluation set (sl_train_make_eval),
 * so that evaluation measures generalisation to new wordings of known facts.
 * Everything here is the project's own text. */
#include "engine/train/train.h"

#include <stdio.h>
#include <string.h>

typedef struct crng {
    uint64_t s;
} crng;

static uint64_t cr_next(crng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cr_int(crng *r, int n) /* [0, n) */
{
    return (int)(cr_next(r) % (uint64_t)n);
}

#define PICK(r, arr) ((arr)[cr_int((r), (int)SL_ARRAY_LEN(arr))])

static const char *const first_names[] = {
    "Aurora", "Nimbus", "Cedar",  "Falcon", "Ember",  "Willow", "Orbit",  "Harbor",
    "Maple",  "Zephyr", "Summit", "Pebble", "Lumen",  "Coral",  "Juniper", "Vega",
    "Quill",  "Tundra", "Sable",  "Breeze", "Atlas",  "Indigo", "Meadow", "Comet",
    "Ripple", "Granite", "Solace", "Thistle", "Beacon", "Drift", "Fable",  "Glacier",
    "Hollow", "Kestrel", "Lark",  "Marble", "Nova",   "Onyx",   "Prism",  "Quartz",
    "Raven",  "Saffron", "Tidal", "Umber",  "Velvet", "Wren",   "Yonder", "Zenith",
    "Alder",  "Birch",  "Cobalt", "Dune",   "Echo",   "Flint",  "Grove",  "Heron",
    "Iris",   "Jasper", "Kelp",   "Lotus",  "Moss",   "North",  "Opal",   "Pine",
};

typedef struct noun {
    const char *name, *category;
} noun;

static const noun nouns[] = {
    {"Kettle", "kitchen"},     {"Lamp", "home"},          {"Backpack", "travel"},
    {"Blender", "kitchen"},    {"Headphones", "audio"},   {"Toaster", "kitchen"},
    {"Chair", "furniture"},    {"Watch", "wearables"},    {"Speaker", "audio"},
    {"Mug", "kitchen"},        {"Umbrella", "outdoor"},   {"Desk", "furniture"},
    {"Fan", "home"},           {"Camera", "electronics"}, {"Bottle", "outdoor"},
    {"Jacket", "clothing"},    {"Heater", "home"},        {"Clock", "home"},
    {"Router", "electronics"}, {"Notebook", "stationery"}, {"Tent", "outdoor"},
    {"Pillow", "bedding"},     {"Blanket", "bedding"},    {"Keyboard", "electronics"},
    {"Mouse", "electronics"},  {"Suitcase", "travel"},    {"Scarf", "clothing"},
    {"Skillet", "kitchen"},    {"Stool", "furniture"},    {"Lantern", "outdoor"},
    {"Radio", "audio"},        {"Pen", "stationery"},
};

static const char *const colours[] = {"red",   "blue",  "green", "black",  "white", "silver",
                                      "grey",  "yellow", "orange", "purple", "pink", "brown"};

static const int return_days[] = {14, 30, 45, 60, 90};

typedef struct product {
    char name[48];
    const char *category;
    int price, warranty, returns;
    const char *col[3];
    int n_col;
} product;

enum { ATTR_PRICE, ATTR_WARRANTY, ATTR_RETURNS, ATTR_COLOURS, N_ATTR };

/* Training phrasings ({P} is the product's name): many per attribute, so
 * that the model keys on the attribute's words rather than on one wording. */
#define N_TRAIN_Q 16
static const char *const train_q[N_ATTR][N_TRAIN_Q] = {
    {"How much does the {P} cost?", "What is the price of the {P}?", "How much is the {P}?",
     "What does the {P} cost?", "Price of the {P}?", "Can you tell me the price of the {P}?",
     "I'd like to know how much the {P} costs.", "What's the {P} priced at?",
     "Is the {P} expensive?", "How much do I pay for the {P}?", "What is the cost of the {P}?",
     "How much for the {P}?", "What's the price tag on the {P}?", "Is the {P} cheap?",
     "Tell me the price of the {P}.", "How pricey is the {P}?"},
    {"What is the warranty on the {P}?", "How long is the warranty for the {P}?",
     "Does the {P} have a warranty?", "How many years of warranty does the {P} have?",
     "What warranty comes with the {P}?", "Is the {P} covered by a warranty?",
     "Tell me about the {P} warranty.", "How long is the {P} covered?",
     "Does the {P} come with a guarantee?", "What guarantee does the {P} have?",
     "How long is the guarantee on the {P}?", "Warranty of the {P}?",
     "What is the warranty period of the {P}?", "How many years is the {P} guaranteed?",
     "What if the {P} breaks, is it covered?", "Tell me the warranty of the {P}."},
    {"What is the return policy for the {P}?", "How long do I have to return the {P}?",
     "Can I return the {P}?", "What is the return window for the {P}?",
     "How many days do I have to send back the {P}?", "If I don't like the {P}, can I return it?",
     "Until when can I return the {P}?", "What are the return rules for the {P}?",
     "How many days is the return period of the {P}?", "Can I send the {P} back?",
     "What is the refund period for the {P}?", "Can I get a refund on the {P}?",
     "Returns for the {P}?", "How long can I keep the {P} before returning it?",
     "When do I need to return the {P} by?", "Tell me the return window of the {P}."},
    {"What colours does the {P} come in?", "Which colors is the {P} available in?",
     "What colors can I get the {P} in?", "Is the {P} available in different colours?",
     "What colour options are there for the {P}?", "Which colours are available for the {P}?",
     "Does the {P} come in other colors?", "What color is the {P}?",
     "What shades is the {P} sold in?", "Colours of the {P}?",
     "Can I buy the {P} in another colour?", "What are the colors of the {P}?",
     "Tell me the colours of the {P}.", "Is the {P} sold in more colours?",
     "Which colour options does the {P} offer?", "Is the {P} available in other shades?"},
};

/* Held-out phrasings: only in the evaluation set, never in the corpus. */
#define N_EVAL_Q 5
static const char *const eval_q[N_ATTR][N_EVAL_Q] = {
    {"How expensive is the {P}?", "Could you tell me what the {P} costs?",
     "What would the {P} cost me?", "What do you charge for the {P}?",
     "How much money is the {P}?"},
    {"How long is the {P} guaranteed for?", "What kind of warranty does the {P} carry?",
     "For how long is the {P} under warranty?", "Is there a guarantee on the {P}?",
     "How many years of cover does the {P} get?"},
    {"How much time do I get to return the {P}?", "Is there a return period for the {P}?",
     "Within how many days can the {P} be returned?", "How long is the return window on the {P}?",
     "Could I still return the {P} after a few weeks?"},
    {"In which colours can I buy the {P}?", "What shades does the {P} come in?",
     "Do you sell the {P} in more than one colour?", "What colour choices does the {P} have?",
     "Which colours can the {P} be ordered in?"},
};

/* Openings and closings wrapped around some training questions; a ", "
 * opening lowers the question's first letter. */
static const char *const q_open[] = {"", "", "", "", "", "Hi, ", "Hello, ", "Quick question: ",
                                     "Excuse me, ", "I have a question. ", "Please tell me: ",
                                     "Sorry to bother you, "};
static const char *const q_close[] = {"", "", "", "", "", " Thanks.", " Thank you!", " Please.",
                                      " I want to buy it."};

static const char *const systems[] = {
    "You are the support assistant of the Sluice Store.",
    "You are a helpful assistant for the Sluice Store catalogue.",
    "Answer customer questions about Sluice Store products.",
};

static const char *const greetings[] = {"Hello!", "Hi there.", "Good morning.", "Hey.", "Hello, I have a question."};
static const char *const greeting_replies[] = {
    "Hello! How can I help you with our products today?",
    "Hi! What would you like to know about our products?",
};
static const char *const thanks[] = {"Thanks!", "Thank you.", "Great, thanks.", "Perfect, thank you!"};
static const char *const thanks_replies[] = {"You're welcome!", "Happy to help!",
                                             "You're welcome. Have a nice day!"};

/* Builds the catalogue: deterministic in the seed. */
static int make_catalogue(const sl_train_corpus_opts *o, product *p)
{
    if (o->n_products < 1 || o->n_products > 64)
        return SL_EINVAL;
    crng r = {o->seed * 0x2545F4914F6CDD1Dull + 17};
    int fperm[SL_ARRAY_LEN(first_names)], nperm[SL_ARRAY_LEN(nouns)];
    for (int i = 0; i < (int)SL_ARRAY_LEN(first_names); i++)
        fperm[i] = i;
    for (int i = 0; i < (int)SL_ARRAY_LEN(nouns); i++)
        nperm[i] = i;
    for (int i = (int)SL_ARRAY_LEN(first_names) - 1; i > 0; i--) {
        int j = cr_int(&r, i + 1), t = fperm[i];
        fperm[i] = fperm[j], fperm[j] = t;
    }
    for (int i = (int)SL_ARRAY_LEN(nouns) - 1; i > 0; i--) {
        int j = cr_int(&r, i + 1), t = nperm[i];
        nperm[i] = nperm[j], nperm[j] = t;
    }
    for (int i = 0; i < o->n_products; i++) {
        const noun *n = &nouns[nperm[i % (int)SL_ARRAY_LEN(nouns)]];
        snprintf(p[i].name, sizeof p[i].name, "%s %s", first_names[fperm[i]], n->name);
        p[i].category = n->category;
        p[i].price = 9 + cr_int(&r, 290);
        p[i].warranty = 1 + cr_int(&r, 5);
        p[i].returns = return_days[cr_int(&r, (int)SL_ARRAY_LEN(return_days))];
        p[i].n_col = 2 + cr_int(&r, 2);
        int c0 = cr_int(&r, (int)SL_ARRAY_LEN(colours));
        for (int k = 0; k < p[i].n_col; k++)
            p[i].col[k] = colours[(c0 + k * 5) % (int)SL_ARRAY_LEN(colours)];
    }
    return 0;
}

/* Appends template t with {P} replaced by name. */
static int put_tmpl(sl_buf *b, const char *t, const char *name)
{
    const char *at = strstr(t, "{P}");
    if (!at)
        return sl_buf_append_str(b, t);
    int rc = sl_buf_append(b, t, (size_t)(at - t));
    if (!rc)
        rc = sl_buf_append_str(b, name);
    if (!rc)
        rc = sl_buf_append_str(b, at + 3);
    return rc;
}

static int put_colours(sl_buf *b, const product *p)
{
    int rc = 0;
    for (int k = 0; k < p->n_col && !rc; k++) {
        if (k)
            rc = sl_buf_append_str(b, k + 1 == p->n_col ? " and " : ", ");
        if (!rc)
            rc = sl_buf_append_str(b, p->col[k]);
    }
    return rc;
}

/* The one answer sentence for an attribute. It names the attribute first
 * and the product next, then the value: the value is predicted with both of
 * its keys just before it. */
static int put_answer(sl_buf *b, const product *p, int attr)
{
    switch (attr) {
    case ATTR_PRICE:
        return sl_buf_appendf(b, "The price of the %s is $%d.", p->name, p->price);
    case ATTR_WARRANTY:
        return sl_buf_appendf(b, "The warranty of the %s is %d year%s.", p->name, p->warranty,
                              p->warranty == 1 ? "" : "s");
    case ATTR_RETURNS:
        return sl_buf_appendf(b, "The return window of the %s is %d days.", p->name, p->returns);
    default: {
        int rc = sl_buf_appendf(b, "The colours of the %s are ", p->name);
        if (!rc)
            rc = put_colours(b, p);
        if (!rc)
            rc = sl_buf_append_char(b, '.');
        return rc;
    }
    }
}

static int turn_open(sl_buf *b, const char *role)
{
    return sl_buf_appendf(b, "<|im_start|>%s\n", role);
}

static int turn_close(sl_buf *b)
{
    return sl_buf_append_str(b, "<|im_end|>\n");
}

/* ---- stories ---- */
static const char *const s_adj[] = {"little", "curious", "brave", "sleepy", "clever", "kind", "tiny", "happy"};
static const char *const s_animal[] = {"fox", "rabbit", "owl", "bear", "cat", "mouse", "duck", "turtle"};
static const char *const s_name[] = {"Pip", "Luna", "Milo", "Rosa", "Tom", "Nell", "Bo", "Ivy"};
static const char *const s_place[] = {"river", "old oak tree", "garden", "hill", "forest", "pond", "village"};
static const char *const s_thing[] = {"shiny stone", "red kite", "lost key", "small boat", "warm hat", "blue ball"};
static const char *const s_feel[] = {"happy", "surprised", "excited", "proud", "calm"};
static const char *const s_friend[] = {"a wise owl", "a friendly frog", "an old dog", "a young deer", "a busy bee"};
static const char *const s_end[] = {
    "From that day on, they were the best of friends.",
    "Then everyone went home and slept well.",
    "And the %s never forgot that day.",
    "It was the best day of the year.",
};

static int put_story(sl_buf *b, crng *r)
{
    const char *name = PICK(r, s_name), *animal = PICK(r, s_animal);
    int rc = sl_buf_appendf(b,
                            "Once upon a time, there was a %s %s named %s. %s lived near the %s. "
                            "One day, %s found a %s. %s felt very %s. ",
                            PICK(r, s_adj), animal, name, name, PICK(r, s_place), name,
                            PICK(r, s_thing), name, PICK(r, s_feel));
    if (!rc)
        rc = sl_buf_appendf(b, "%s met %s, and they played together until the sun went down. ",
                            name, PICK(r, s_friend));
    if (!rc) {
        int e = cr_int(r, (int)SL_ARRAY_LEN(s_end));
        rc = e == 2 ? sl_buf_appendf(b, "And the %s never forgot that day.", animal)
                    : sl_buf_append_str(b, s_end[e]);
    }
    return rc;
}

void sl_train_corpus_default(sl_train_corpus_opts *o)
{
    o->seed = 1;
    o->size_bytes = (size_t)3 << 20;
    o->n_products = 24;
}

/* A training question for attr, sometimes with an opening and a closing. */
static int put_question(sl_buf *b, crng *r, int attr, const char *name)
{
    const char *open = PICK(r, q_open), *close = PICK(r, q_close);
    size_t at = b->len, ol = strlen(open);
    int rc = sl_buf_append_str(b, open);
    if (!rc)
        rc = put_tmpl(b, train_q[attr][cr_int(r, N_TRAIN_Q)], name);
    if (!rc && ol >= 2 && open[ol - 2] == ',' && b->data[at + ol] >= 'A' &&
        b->data[at + ol] <= 'Z' && b->data[at + ol + 1] >= 'a' && b->data[at + ol + 1] <= 'z')
        b->data[at + ol] = (char)(b->data[at + ol] - 'A' + 'a');
    return rc ? rc : sl_buf_append_str(b, close);
}

/* One conversation document. */
static int put_doc(sl_buf *b, crng *r, const product *cat, int n_prod)
{
    int rc = 0, kind = cr_int(r, 100);
    if (cr_int(r, 10) < 3) {
        rc = turn_open(b, "system");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, systems));
        if (!rc)
            rc = turn_close(b);
    }
    if (!rc && kind < 3) { /* a story */
        static const char *const asks[] = {"Tell me a short story.", "Can you tell me a story?",
                                           "Write a short story for my kid.", "I want a bedtime story."};
        rc = turn_open(b, "user");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, asks));
        if (!rc)
            rc = turn_close(b);
        if (!rc)
            rc = turn_open(b, "assistant");
        if (!rc)
            rc = put_story(b, r);
        if (!rc)
            rc = turn_close(b);
        return rc ? rc : sl_buf_append_str(b, SL_TRAIN_TOK_ENDOFTEXT);
    }
    if (!rc && kind < 10) { /* greeting first */
        rc = turn_open(b, "user");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, greetings));
        if (!rc)
            rc = turn_close(b);
        if (!rc)
            rc = turn_open(b, "assistant");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, greeting_replies));
        if (!rc)
            rc = turn_close(b);
    }
    int turns = 1 + (cr_int(r, 3) == 0) + (cr_int(r, 4) == 0);
    for (int t = 0; t < turns && !rc; t++) {
        const product *p = &cat[cr_int(r, n_prod)];
        rc = turn_open(b, "user");
        int attr = cr_int(r, N_ATTR + 1);
        if (attr == N_ATTR) { /* "what is it" */
            if (!rc)
                rc = sl_buf_appendf(b, "What is the %s?", p->name);
            if (!rc)
                rc = turn_close(b);
            if (!rc)
                rc = turn_open(b, "assistant");
            if (!rc)
                rc = sl_buf_appendf(b, "The %s is a %s product. The price of the %s is $%d.",
                                    p->name, p->category, p->name, p->price);
        } else {
            if (!rc)
                rc = put_question(b, r, attr, p->name);
            if (!rc)
                rc = turn_close(b);
            if (!rc)
                rc = turn_open(b, "assistant");
            if (!rc)
                rc = put_answer(b, p, attr);
        }
        if (!rc)
            rc = turn_close(b);
    }
    if (!rc && cr_int(r, 5) == 0) {
        rc = turn_open(b, "user");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, thanks));
        if (!rc)
            rc = turn_close(b);
        if (!rc)
            rc = turn_open(b, "assistant");
        if (!rc)
            rc = sl_buf_append_str(b, PICK(r, thanks_replies));
        if (!rc)
            rc = turn_close(b);
    }
    return rc ? rc : sl_buf_append_str(b, SL_TRAIN_TOK_ENDOFTEXT);
}

int sl_train_make_corpus(const sl_train_corpus_opts *o, sl_buf *out)
{
    product cat[64];
    int rc = make_catalogue(o, cat);
    if (rc)
        return rc;
    crng r = {o->seed};
    /* every fact once in order first, so even a tiny corpus covers the catalogue */
    for (int i = 0; i < o->n_products && !rc; i++)
        for (int a = 0; a < N_ATTR && !rc; a++) {
            rc = turn_open(out, "user");
            if (!rc)
                rc = put_tmpl(out, train_q[a][0], cat[i].name);
            if (!rc)
                rc = turn_close(out);
            if (!rc)
                rc = turn_open(out, "assistant");
            if (!rc)
                rc = put_answer(out, &cat[i], a);
            if (!rc)
                rc = turn_close(out);
            if (!rc)
                rc = sl_buf_append_str(out, SL_TRAIN_TOK_ENDOFTEXT);
        }
    while (!rc && out->len < o->size_bytes)
        rc = put_doc(out, &r, cat, o->n_products);
    return rc;
}

static int put_json_str(sl_buf *b, const char *s)
{
    int rc = sl_buf_append_char(b, '"');
    for (; *s && !rc; s++) {
        if (*s == '"' || *s == '\\')
            rc = sl_buf_append_char(b, '\\');
        if (!rc)
            rc = sl_buf_append_char(b, *s);
    }
    return rc ? rc : sl_buf_append_char(b, '"');
}

int sl_train_make_eval(const sl_train_corpus_opts *o, sl_buf *out)
{
    product cat[64];
    int rc = make_catalogue(o, cat);
    sl_buf q, e;
    sl_buf_init(&q, 1024);
    sl_buf_init(&e, 1024);
    for (int i = 0; i < o->n_products && !rc; i++)
        for (int a = 0; a < N_ATTR && !rc; a++) {
            sl_buf_reset(&q);
            sl_buf_reset(&e);
            rc = put_tmpl(&q, eval_q[a][(i + a) % N_EVAL_Q], cat[i].name);
            switch (a) {
            case ATTR_PRICE:
                rc = rc ? rc : sl_buf_appendf(&e, "$%d", cat[i].price);
                break;
            case ATTR_WARRANTY:
                rc = rc ? rc : sl_buf_appendf(&e, "%d year", cat[i].warranty);
                break;
            case ATTR_RETURNS:
                rc = rc ? rc : sl_buf_appendf(&e, "%d days", cat[i].returns);
                break;
            default:
                rc = rc ? rc : put_colours(&e, &cat[i]);
            }
            if (!rc)
                rc = sl_buf_append_str(out, "{\"question\": ");
            if (!rc)
                rc = put_json_str(out, q.data);
            if (!rc)
                rc = sl_buf_append_str(out, ", \"expect\": ");
            if (!rc)
                rc = put_json_str(out, e.data);
            if (!rc)
                rc = sl_buf_append_str(out, "}\n");
        }
    sl_buf_free(&q);
    sl_buf_free(&e);
    return rc;
}
