/* Chat templates: golden renders written out by hand from each family's
 * reference format, and detection from template snippets. */
#include "core/core.h"
#include "engine/chat/chat.h"
#include "test.h"

#define MSG(role, text) {SL_CHAT_ROLE_##role, SL_STR_LIT(text)}

/* system + user + assistant + user, the conversation every family renders. */
static const sl_chat_msg convo[] = {
    MSG(SYSTEM, "You are terse."),
    MSG(USER, "Hi"),
    MSG(ASSISTANT, "Hello!"),
    MSG(USER, "Name a color."),
};

static void expect_render(sl_chat_template t, const sl_chat_msg *m, size_t n, bool gen,
                          const char *bos, const char *eos, const char *want, int line)
{
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    int rc = sl_chat_render(t, m, n, gen, bos, eos, &b);
    const char *got = b.len ? b.data : "";
    if (rc || strcmp(got, want) != 0)
        T_FAIL_AT("line %d (%s): rc %d\n got: \"%s\"\nwant: \"%s\"", line, sl_chat_template_name(t), rc,
                  got, want);
    sl_buf_free(&b);
}

#define RENDER(t, m, gen, bos, eos, want)                                                          \
    expect_render(t, m, SL_ARRAY_LEN(m), gen, bos, eos, want, __LINE__)

static void test_golden_chatml(void)
{
    RENDER(SL_CHAT_CHATML, convo, true, NULL, NULL,
           "<|im_start|>system\nYou are terse.<|im_end|>\n"
           "<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n"
           "<|im_start|>user\nName a color.<|im_end|>\n"
           "<|im_start|>assistant\n");
    /* No generation prompt: ends after the last turn. */
    RENDER(SL_CHAT_CHATML, convo, false, NULL, NULL,
           "<|im_start|>system\nYou are terse.<|im_end|>\n"
           "<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n"
           "<|im_start|>user\nName a color.<|im_end|>\n");
}

static void test_golden_llama3(void)
{
    RENDER(SL_CHAT_LLAMA3, convo, true, NULL, NULL,
           "<|begin_of_text|>"
           "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_golden_llama2(void)
{
    RENDER(SL_CHAT_LLAMA2, convo, true, NULL, NULL,
           "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
           "<s>[INST] Name a color. [/INST]");
}

static void test_golden_mistral(void)
{
    RENDER(SL_CHAT_MISTRAL, convo, true, NULL, NULL,
           "<s>[INST] You are terse.\n\nHi [/INST]Hello!</s>[INST] Name a color. [/INST]");
}

static void test_golden_gemma(void)
{
    RENDER(SL_CHAT_GEMMA, convo, true, NULL, NULL,
           "<bos><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
           "<start_of_turn>model\nHello!<end_of_turn>\n"
           "<start_of_turn>user\nName a color.<end_of_turn>\n"
           "<start_of_turn>model\n");
}

static void test_golden_phi3(void)
{
    RENDER(SL_CHAT_PHI3, convo, true, NULL, NULL,
           "<|system|>\nYou are terse.<|end|>\n"
           "<|user|>\nHi<|end|>\n"
           "<|assistant|>\nHello!<|end|>\n"
           "<|user|>\nName a color.<|end|>\n"
           "<|assistant|>\n");
}

static void test_golden_zephyr_and_tinyllama(void)
{
    const char *want = "<|system|>\nYou are terse.</s>\n"
                       "<|user|>\nHi</s>\n"
                       "<|assistant|>\nHello!</s>\n"
                       "<|user|>\nName a color.</s>\n"
                       "<|assistant|>\n";
    RENDER(SL_CHAT_ZEPHYR, convo, true, NULL, NULL, want);
    RENDER(SL_CHAT_TINYLLAMA, convo, true, NULL, NULL, want);
}

static void test_bos_eos_override_and_developer(void)
{
    static const sl_chat_msg m[] = {MSG(DEVELOPER, "Rules."), MSG(USER, "Q"), MSG(ASSISTANT, "A")};
    RENDER(SL_CHAT_LLAMA2, m, false, "<BOS>", "<EOS>",
           "<BOS>[INST] <<SYS>>\nRules.\n<</SYS>>\n\nQ [/INST] A <EOS>");
    RENDER(SL_CHAT_ZEPHYR, m, false, NULL, "<|endoftext|>",
           "<|system|>\nRules.<|endoftext|>\n<|user|>\nQ<|endoftext|>\n<|assistant|>\nA<|endoftext|>\n");
    /* An empty BOS text renders none. */
    RENDER(SL_CHAT_LLAMA3, m, false, "", NULL,
           "<|start_header_id|>system<|end_header_id|>\n\nRules.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>");
    EXPECT(sl_chat_template_has_bos(SL_CHAT_LLAMA3));
    EXPECT(sl_chat_template_has_bos(SL_CHAT_GEMMA));
    EXPECT(!sl_chat_template_has_bos(SL_CHAT_CHATML));
    EXPECT(!sl_chat_template_has_bos(SL_CHAT_ZEPHYR));
}

static void test_trimming(void)
{
    static const sl_chat_msg m[] = {MSG(USER, "  spaced \n")};
    RENDER(SL_CHAT_LLAMA3, m, true, NULL, NULL,
           "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nspaced<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    RENDER(SL_CHAT_GEMMA, m, true, NULL, NULL,
           "<bos><start_of_turn>user\nspaced<end_of_turn>\n<start_of_turn>model\n");
    /* chatml keeps the text as given */
    RENDER(SL_CHAT_CHATML, m, false, NULL, NULL, "<|im_start|>user\n  spaced \n<|im_end|>\n");
}

static void test_tool_results(void)
{
    static const sl_chat_msg m[] = {
        MSG(USER, "Weather?"),
        MSG(ASSISTANT, ""),
        MSG(TOOL, "{\"t\":21}"),
        MSG(TOOL, "{\"t\":22}"),
    };
    RENDER(SL_CHAT_CHATML, m, true, NULL, NULL,
           "<|im_start|>user\nWeather?<|im_end|>\n"
           "<|im_start|>assistant\n<|im_end|>\n"
           "<|im_start|>user\n<tool_response>\n{\"t\":21}\n</tool_response>\n"
           "<tool_response>\n{\"t\":22}\n</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n");
    static const sl_chat_msg one[] = {MSG(USER, "Weather?"), MSG(TOOL, "sunny")};
    RENDER(SL_CHAT_LLAMA3, one, true, NULL, NULL,
           "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>"
           "<|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    RENDER(SL_CHAT_MISTRAL, one, true, NULL, NULL,
           "<s>[INST] Weather? [/INST][INST] Tool result:\nsunny [/INST]");
    RENDER(SL_CHAT_PHI3, one, true, NULL, NULL,
           "<|user|>\nWeather?<|end|>\n<|user|>\nTool result:\nsunny<|end|>\n<|assistant|>\n");
}

static void test_system_without_user(void)
{
    /* The system text has no user turn to join: it becomes one. */
    static const sl_chat_msg only[] = {MSG(SYSTEM, "Be brief.")};
    RENDER(SL_CHAT_GEMMA, only, true, NULL, NULL,
           "<bos><start_of_turn>user\nBe brief.\n\n<end_of_turn>\n<start_of_turn>model\n");
    RENDER(SL_CHAT_LLAMA2, only, true, NULL, NULL, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n [/INST]");
    /* Two system messages are joined by a blank line. */
    static const sl_chat_msg two[] = {MSG(SYSTEM, "A."), MSG(DEVELOPER, "B."), MSG(USER, "Go")};
    RENDER(SL_CHAT_MISTRAL, two, true, NULL, NULL, "<s>[INST] A.\n\nB.\n\nGo [/INST]");
}

static void test_errors(void)
{
    sl_buf b;
    sl_buf_init(&b, 40);
    EXPECT_EQ_INT(sl_chat_render(SL_CHAT_CHATML, convo, SL_ARRAY_LEN(convo), true, NULL, NULL, &b),
                  SL_ETOOBIG);
    sl_buf_reset(&b);
    sl_chat_msg bad = {(sl_chat_role)9, SL_STR_LIT("x")};
    EXPECT_EQ_INT(sl_chat_render(SL_CHAT_CHATML, &bad, 1, true, NULL, NULL, &b), SL_EINVAL);
    EXPECT_EQ_INT(sl_chat_render((sl_chat_template)99, convo, 1, true, NULL, NULL, &b), SL_EINVAL);
    sl_buf_free(&b);

    sl_chat_role role;
    EXPECT_EQ_INT(sl_chat_role_parse(SL_STR_LIT("developer"), &role), 0);
    EXPECT_EQ_INT(role, SL_CHAT_ROLE_DEVELOPER);
    EXPECT_EQ_INT(sl_chat_role_parse(SL_STR_LIT("tool"), &role), 0);
    EXPECT_EQ_INT(role, SL_CHAT_ROLE_TOOL);
    EXPECT_EQ_INT(sl_chat_role_parse(SL_STR_LIT("function"), &role), SL_EINVAL);
}

static void expect_detect(const char *src, sl_chat_template want, int line)
{
    sl_chat_template got = SL_CHAT_TEMPLATE_COUNT;
    int rc = sl_chat_template_detect(src, &got);
    if (rc || got != want)
        T_FAIL_AT("line %d: rc %d, detected %s, expected %s", line, rc, sl_chat_template_name(got),
                  sl_chat_template_name(want));
}

static void test_detect(void)
{
    expect_detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                  "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
                  "%}{{ '<|im_start|>assistant\\n' }}{% endif %}",
                  SL_CHAT_CHATML, __LINE__);
    /* Qwen 2.5 style, which also mentions tool_response */
    expect_detect("{%- if tools %}{{- '<|im_start|>system\\n' }}...{%- elif message.role == \"tool\" "
                  "%}{{- '\\n<tool_response>\\n' }}{{- message.content }}",
                  SL_CHAT_CHATML, __LINE__);
    expect_detect("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                  "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
                  "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content "
                  "= bos_token + content %}{% endif %}{{ content }}{% endfor %}",
                  SL_CHAT_LLAMA3, __LINE__);
    expect_detect("{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
                  "messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in "
                  "loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                  "content | trim + ' [/INST]' }}{% endif %}{% endfor %}",
                  SL_CHAT_LLAMA2, __LINE__);
    expect_detect("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
                  "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
                  "'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
                  SL_CHAT_MISTRAL, __LINE__);
    expect_detect("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') "
                  "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
                  "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' "
                  "}}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
                  SL_CHAT_GEMMA, __LINE__);
    expect_detect("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' "
                  "+ message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' "
                  "%}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
                  "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
                  SL_CHAT_PHI3, __LINE__);
    expect_detect("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' "
                  "+ message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
                  "'<|system|>\\n' + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last "
                  "and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
                  SL_CHAT_ZEPHYR, __LINE__);
}

static void test_detect_unknown_and_names(void)
{
    sl_chat_template t = SL_CHAT_CHATML;
    EXPECT_EQ_INT(sl_chat_template_detect("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                                          "{% endfor %}",
                                          &t),
                  SL_ENOTFOUND);
    EXPECT_EQ_INT(sl_chat_template_detect(NULL, &t), SL_EINVAL);
    const char *help = sl_chat_template_help();
    EXPECT_CONTAINS(help, "chat_template: <name>");
    EXPECT_CONTAINS(help, "model config");
    for (int i = 0; i < SL_CHAT_TEMPLATE_COUNT; i++)
        EXPECT_CONTAINS(help, sl_chat_template_name((sl_chat_template)i));

    EXPECT_EQ_INT(sl_chat_template_by_name("Gemma", &t), 0);
    EXPECT_EQ_INT(t, SL_CHAT_GEMMA);
    EXPECT_EQ_INT(sl_chat_template_by_name("qwen", &t), 0);
    EXPECT_EQ_INT(t, SL_CHAT_CHATML);
    EXPECT_EQ_INT(sl_chat_template_by_name("tinyllama", &t), 0);
    EXPECT_EQ_INT(t, SL_CHAT_TINYLLAMA);
    EXPECT_EQ_INT(sl_chat_template_by_name("vicuna", &t), SL_ENOTFOUND);
    EXPECT_EQ_STR(sl_chat_template_name((sl_chat_template)42), "unknown");
}

int main(void)
{
    RUN(test_golden_chatml);
    RUN(test_golden_llama3);
    RUN(test_golden_llama2);
    RUN(test_golden_mistral);
    RUN(test_golden_gemma);
    RUN(test_golden_phi3);
    RUN(test_golden_zephyr_and_tinyllama);
    RUN(test_bos_eos_override_and_developer);
    RUN(test_trimming);
    RUN(test_tool_results);
    RUN(test_system_without_user);
    RUN(test_errors);
    RUN(test_detect);
    RUN(test_detect_unknown_and_names);
    return TEST_REPORT();
}
