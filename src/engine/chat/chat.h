/*
 * chat: renders OpenAI-style chat messages into the prompt text a model was
 * trained on, natively in C (no template engine).
 *
 * A model's GGUF carries its chat template as Jinja source
 * (tokenizer.chat_template). Rather than interpret Jinja, Sluice recognises
 * the template's family from distinctive markers (sl_chat_template_detect) or
 * takes the family from the model config (`chat_template: <name>`), and
 * renders that family's format with fixed code. The families and their shape:
 *
 *   chatml (qwen)  <|im_start|>role\n...<|im_end|>\n
 *   llama3         <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
 *   llama2         <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] answer </s>
 *   mistral        <s>[INST] system\n\nuser [/INST]answer</s>[INST] ...
 *   gemma          <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
 *   phi3           <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n
 *   zephyr         <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n
 *   tinyllama      the zephyr format, as TinyLlama-Chat uses it
 *
 * Roles: developer is treated as system. Families without a system slot
 * (llama2, mistral, gemma) fold the system text into the next user turn; if an
 * assistant turn or the end comes first, the system text becomes a user turn
 * of its own. Tool results: chatml wraps them Qwen-style in
 * <tool_response>...</tool_response> inside one user turn per run of
 * consecutive tool messages; llama3 uses its ipython role; every other family
 * has no tool role and renders a tool result as a user turn whose text is
 * "Tool result:\n" followed by the content. llama3, llama2 and gemma trim
 * surrounding whitespace from message text as their reference templates do.
 *
 * BOS contract: the rendered text starts with the BOS text exactly when the
 * family's reference template emits bos_token (llama3, llama2, mistral,
 * gemma; sl_chat_template_has_bos says which). The caller tokenizes the
 * rendered text with special tokens parsed and must NOT add BOS again for those
 * families; for the others it adds BOS only if the model's tokenizer asks for
 * it (tokenizer.ggml.add_bos_token).
 */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include "core/core.h"

/* Append only. */
typedef enum {
    SL_CHAT_CHATML = 0,
    SL_CHAT_LLAMA3,
    SL_CHAT_LLAMA2,
    SL_CHAT_MISTRAL,
    SL_CHAT_GEMMA,
    SL_CHAT_PHI3,
    SL_CHAT_ZEPHYR,
    SL_CHAT_TINYLLAMA,
    SL_CHAT_TEMPLATE_COUNT
} sl_chat_template;

typedef enum {
    SL_CHAT_ROLE_SYSTEM = 0,
    SL_CHAT_ROLE_DEVELOPER, /* rendered as system */
    SL_CHAT_ROLE_USER,
    SL_CHAT_ROLE_ASSISTANT,
    SL_CHAT_ROLE_TOOL,
} sl_chat_role;

typedef struct sl_chat_msg {
    sl_chat_role role;
    sl_str content; /* p may be NULL when n == 0 */
} sl_chat_msg;

/* Recognises the template family from the Jinja source of
 * tokenizer.chat_template. Returns 0 and *out, or SL_ENOTFOUND (then
 * sl_chat_template_help() is the message to show), or SL_EINVAL for NULL. */
int sl_chat_template_detect(const char *jinja_source, sl_chat_template *out);

/* Looks a family up by its config name ("chatml", "qwen", "llama3", "llama2",
 * "mistral", "gemma", "phi3", "zephyr", "tinyllama"; case-insensitive).
 * Returns 0 and *out, or SL_ENOTFOUND (see sl_chat_template_help()). */
int sl_chat_template_by_name(const char *name, sl_chat_template *out);

/* Returns the canonical config name of t (static string), or "unknown". */
const char *sl_chat_template_name(sl_chat_template t);

/* Returns a static message for an unrecognised or unknown template: what to
 * set in the model config and the accepted names. */
const char *sl_chat_template_help(void);

/* Returns whether sl_chat_render starts the text with BOS for family t. */
bool sl_chat_template_has_bos(sl_chat_template t);

/* Parses an OpenAI role name ("system", "developer", "user", "assistant",
 * "tool"). Returns 0 and *out, or SL_EINVAL. */
int sl_chat_role_parse(sl_str name, sl_chat_role *out);

/* Appends the prompt for msgs[0..n) in family t to out. With
 * add_generation_prompt the text ends with the opening of an assistant turn.
 * bos_text / eos_text are the model's BOS / EOS token texts, or NULL for the
 * family's usual ones ("<|begin_of_text|>", "<s>", "<bos>"; "</s>").
 * Returns 0, SL_EINVAL for a bad family or role, or the sl_buf error
 * (SL_ETOOBIG, SL_ENOMEM); on error out holds a partial render. */
int sl_chat_render(sl_chat_template t, const sl_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, const char *bos_text, const char *eos_text,
                   sl_buf *out);

#endif
