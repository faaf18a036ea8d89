/* Chat template detection and native rendering. The formats are described in
 * chat.h; each family's renderer below follows its reference template. */
#include "chat.h"

#include <string.h>
#include <strings.h>

static const char *const names[SL_CHAT_TEMPLATE_COUNT] = {
    [SL_CHAT_CHATML] = "chatml", [SL_CHAT_LLAMA3] = "llama3", [SL_CHAT_LLAMA2] = "llama2",
    [SL_CHAT_MISTRAL] = "mistral", [SL_CHAT_GEMMA] = "gemma",  [SL_CHAT_PHI3] = "phi3",
    [SL_CHAT_ZEPHYR] = "zephyr",   [SL_CHAT_TINYLLAMA] = "tinyllama",
};

const char *sl_chat_template_help(void)
{
    return "the model's chat template (tokenizer.chat_template) is not one Sluice recognises; "
           "set `chat_template: <name>` in the model config, where <name> is one of: "
           "chatml (also qwen), llama3, llama2, mistral, gemma, phi3, zephyr, tinyllama";
}

const char *sl_chat_template_name(sl_chat_template t)
{
    return (unsigned)t < SL_CHAT_TEMPLATE_COUNT ? names[t] : "unknown";
}

int sl_chat_template_by_name(const char *name, sl_chat_template *out)
{
    if (!name)
        return SL_EINVAL;
    for (int i = 0; i < SL_CHAT_TEMPLATE_COUNT; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *out = (sl_chat_template)i;
            return 0;
        }
    }
    if (strcasecmp(name, "qwen") == 0) {
        *out = SL_CHAT_CHATML;
        return 0;
    }
    return SL_ENOTFOUND;
}

int sl_chat_template_detect(const char *src, sl_chat_template *out)
{
    if (!src)
        return SL_EINVAL;
    /* Most distinctive markers first: a ChatML or Llama 3 template may mention
     * other families' tokens in comments, the reverse is rarer. */
    if (strstr(src, "<|im_start|>"))
        *out = SL_CHAT_CHATML;
    else if (strstr(src, "<|start_header_id|>"))
        *out = SL_CHAT_LLAMA3;
    else if (strstr(src, "<start_of_turn>"))
        *out = SL_CHAT_GEMMA;
    else if (strstr(src, "[INST]"))
        *out = strstr(src, "<<SYS>>") ? SL_CHAT_LLAMA2 : SL_CHAT_MISTRAL;
    else if (strstr(src, "<|user|>") && strstr(src, "<|end|>"))
        *out = SL_CHAT_PHI3;
    else if (strstr(src, "<|user|>") && (strstr(src, "</s>") || strstr(src, "eos_token")))
        *out = SL_CHAT_ZEPHYR;
    else
        return SL_ENOTFOUND;
    return 0;
}

bool sl_chat_template_has_bos(sl_chat_template t)
{
    return t == SL_CHAT_LLAMA3 || t == SL_CHAT_LLAMA2 || t == SL_CHAT_MISTRAL || t == SL_CHAT_GEMMA;
}

int sl_chat_role_parse(sl_str name, sl_chat_role *out)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < SL_ARRAY_LEN(roles); i++) {
        if (sl_str_eq_c(name, roles[i])) {
            *out = (sl_chat_role)i;
            return 0;
        }
    }
    return SL_EINVAL;
}

/* ---- rendering ---- */

/* A render in progress: the first failing append sticks in rc and makes every
 * later append a no-op, so renderers read as straight-line text. */
typedef struct render {
    sl_buf *out;
    int rc;
    const char *bos;
    const char *eos;
} render;

static void put(render *r, const char *s)
{
    if (!r->rc)
        r->rc = sl_buf_append_str(r->out, s);
}

static void put_str(render *r, sl_str s)
{
    if (!r->rc && s.n)
        r->rc = sl_buf_append(r->out, s.p, s.n);
}

static const char tool_prefix[] = "Tool result:\n";

static void render_chatml(render *r, const sl_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case SL_CHAT_ROLE_SYSTEM:
        case SL_CHAT_ROLE_DEVELOPER:
            put(r, "<|im_start|>system\n");
            break;
        case SL_CHAT_ROLE_USER:
            put(r, "<|im_start|>user\n");
            break;
        case SL_CHAT_ROLE_ASSISTANT:
            put(r, "<|im_start|>assistant\n");
            break;
        case SL_CHAT_ROLE_TOOL:
            /* One user turn per run of consecutive tool results. */
            if (i == 0 || m[i - 1].role != SL_CHAT_ROLE_TOOL)
                put(r, "<|im_start|>user");
            put(r, "\n<tool_response>\n");
            put_str(r, m[i].content);
            put(r, "\n</tool_response>");
            if (i + 1 == n || m[i + 1].role != SL_CHAT_ROLE_TOOL)
                put(r, "<|im_end|>\n");
            continue;
        }
        put_str(r, m[i].content);
        put(r, "<|im_end|>\n");
    }
    if (gen)
        put(r, "<|im_start|>assistant\n");
}

static void render_llama3(render *r, const sl_chat_msg *m, size_t n, bool gen)
{
    static const char *const role_names[] = {
        [SL_CHAT_ROLE_SYSTEM] = "system", [SL_CHAT_ROLE_DEVELOPER] = "system",
        [SL_CHAT_ROLE_USER] = "user",     [SL_CHAT_ROLE_ASSISTANT] = "assistant",
        [SL_CHAT_ROLE_TOOL] = "ipython",
    };
    put(r, r->bos);
    for (size_t i = 0; i < n; i++) {
        put(r, "<|start_header_id|>");
        put(r, role_names[m[i].role]);
        put(r, "<|end_header_id|>\n\n");
        put_str(r, sl_str_trim(m[i].content));
        put(r, "<|eot_id|>");
    }
    if (gen)
        put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* phi3 and zephyr: "<|role|>\n" content end "\n" per message. */
static void render_tagged(render *r, const sl_chat_msg *m, size_t n, bool gen, const char *end)
{
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case SL_CHAT_ROLE_SYSTEM:
        case SL_CHAT_ROLE_DEVELOPER:
            put(r, "<|system|>\n");
            break;
        case SL_CHAT_ROLE_USER:
            put(r, "<|user|>\n");
            break;
        case SL_CHAT_ROLE_ASSISTANT:
            put(r, "<|assistant|>\n");
            break;
        case SL_CHAT_ROLE_TOOL:
            put(r, "<|user|>\n");
            put(r, tool_prefix);
            break;
        }
        put_str(r, m[i].content);
        put(r, end);
        put(r, "\n");
    }
    if (gen)
        put(r, "<|assistant|>\n");
}

/* One user turn of a family without a system slot; sys is the pending system
 * text (may be empty) that is folded in front of the content. */
static void folded_user(render *r, sl_chat_template t, sl_str sys, sl_str content, bool tool)
{
    switch (t) {
    case SL_CHAT_LLAMA2:
        put(r, r->bos); /* the Llama 2 template opens every [INST] with BOS */
        put(r, "[INST] ");
        if (sys.n) {
            put(r, "<<SYS>>\n");
            put_str(r, sl_str_trim(sys));
            put(r, "\n<</SYS>>\n\n");
        }
        if (tool)
            put(r, tool_prefix);
        put_str(r, sl_str_trim(content));
        put(r, " [/INST]");
        break;
    case SL_CHAT_MISTRAL:
        put(r, "[INST] ");
        if (sys.n) {
            put_str(r, sys);
            put(r, "\n\n");
        }
        if (tool)
            put(r, tool_prefix);
        put_str(r, content);
        put(r, " [/INST]");
        break;
    default: /* gemma */
        put(r, "<start_of_turn>user\n");
        if (sys.n) {
            put_str(r, sys);
            put(r, "\n\n");
        }
        if (tool)
            put(r, tool_prefix);
        put_str(r, sl_str_trim(content));
        put(r, "<end_of_turn>\n");
        break;
    }
}

static void folded_assistant(render *r, sl_chat_template t, sl_str content)
{
    switch (t) {
    case SL_CHAT_LLAMA2:
        put(r, " ");
        put_str(r, sl_str_trim(content));
        put(r, " ");
        put(r, r->eos);
        break;
    case SL_CHAT_MISTRAL:
        put_str(r, content);
        put(r, r->eos);
        break;
    default: /* gemma */
        put(r, "<start_of_turn>model\n");
        put_str(r, sl_str_trim(content));
        put(r, "<end_of_turn>\n");
        break;
    }
}

/* llama2, mistral, gemma: system text is held in sys and folded into the
 * next user (or tool) turn; an assistant turn or the end flushes it as a user
 * turn of its own. Several system messages are joined with a blank line. */
static void render_folded(render *r, sl_chat_template t, const sl_chat_msg *m, size_t n, bool gen)
{
    sl_buf sys;
    sl_buf_init(&sys, r->out->max);
    if (t != SL_CHAT_LLAMA2)
        put(r, r->bos); /* llama2 writes BOS per turn instead */
    for (size_t i = 0; i < n && !r->rc; i++) {
        sl_str held = sl_str_make(sys.data, sys.len);
        switch (m[i].role) {
        case SL_CHAT_ROLE_SYSTEM:
        case SL_CHAT_ROLE_DEVELOPER:
            if (sys.len)
                r->rc = sl_buf_append_str(&sys, "\n\n");
            if (!r->rc)
                r->rc = sl_buf_append(&sys, m[i].content.p ? m[i].content.p : "", m[i].content.n);
            break;
        case SL_CHAT_ROLE_USER:
        case SL_CHAT_ROLE_TOOL:
            folded_user(r, t, held, m[i].content, m[i].role == SL_CHAT_ROLE_TOOL);
            sl_buf_reset(&sys);
            break;
        case SL_CHAT_ROLE_ASSISTANT:
            if (sys.len) {
                folded_user(r, t, held, sl_str_make(NULL, 0), false);
                sl_buf_reset(&sys);
            }
            folded_assistant(r, t, m[i].content);
            break;
        }
    }
    if (sys.len)
        folded_user(r, t, sl_str_make(sys.data, sys.len), sl_str_make(NULL, 0), false);
    sl_buf_free(&sys);
    if (gen && t == SL_CHAT_GEMMA)
        put(r, "<start_of_turn>model\n");
    /* llama2 and mistral: the closing [/INST] already invites the answer. */
}

int sl_chat_render(sl_chat_template t, const sl_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, const char *bos_text, const char *eos_text,
                   sl_buf *out)
{
    if ((unsigned)t >= SL_CHAT_TEMPLATE_COUNT || (n && !msgs))
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned)msgs[i].role > SL_CHAT_ROLE_TOOL || (msgs[i].content.n && !msgs[i].content.p))
            return SL_EINVAL;

    render r = {.out = out, .rc = 0, .bos = bos_text, .eos = eos_text ? eos_text : "</s>"};
    if (!r.bos)
        r.bos = t == SL_CHAT_LLAMA3 ? "<|begin_of_text|>" : t == SL_CHAT_GEMMA ? "<bos>" : "<s>";

    switch (t) {
    case SL_CHAT_CHATML:
        render_chatml(&r, msgs, n, add_generation_prompt);
        break;
    case SL_CHAT_LLAMA3:
        render_llama3(&r, msgs, n, add_generation_prompt);
        break;
    case SL_CHAT_LLAMA2:
    case SL_CHAT_MISTRAL:
    case SL_CHAT_GEMMA:
        render_folded(&r, t, msgs, n, add_generation_prompt);
        break;
    case SL_CHAT_PHI3:
        render_tagged(&r, msgs, n, add_generation_prompt, "<|end|>");
        break;
    case SL_CHAT_ZEPHYR:
    case SL_CHAT_TINYLLAMA:
        render_tagged(&r, msgs, n, add_generation_prompt, r.eos);
        break;
    case SL_CHAT_TEMPLATE_COUNT:
        return SL_EINVAL;
    }
    return r.rc;
}
