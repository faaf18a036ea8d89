// The official OpenAI Node SDK against `sluice serve` in front of mockllm.
//
// run.sh starts both processes and passes:
//   SLUICE_BASE_URL  http://127.0.0.1:PORT/v1
//   SLUICE_API_KEY   the one key in the sluice config's server.api_keys
//   MOCK_EMBED_DIM   mockllm's --embedding-dim
// Sluice serves two model groups, "mock-model" and "mock-small", both on the
// same mockllm. mockllm replies with the words of the last user message
// repeated cyclically, one word per token, and counts prompt tokens as the
// words of all message contents.
//
// Run with: node --test compat.test.mjs

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';

const baseURL = process.env.SLUICE_BASE_URL;
const apiKey = process.env.SLUICE_API_KEY;
const embedDim = Number(process.env.MOCK_EMBED_DIM);
if (!baseURL || !apiKey || !(embedDim > 0)) {
  throw new Error('SLUICE_BASE_URL, SLUICE_API_KEY and MOCK_EMBED_DIM must be set (use run.sh)');
}

// maxRetries 0: every request below is exactly one HTTP exchange, so the
// SDK's own retries never hide or change a status.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 15_000 });
const MODEL = 'mock-model';
const USER = [{ role: 'user', content: 'alpha beta gamma' }];

// Awaits p, which must reject; returns the error.
async function rejection(p) {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('the request was expected to fail');
}

describe('chat completions', () => {
  it('create returns the echoed reply, usage and the request id', async () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'alpha beta gamma' },
    ];
    const { data: c, response } = await client.chat.completions
      .create({ model: MODEL, messages, max_tokens: 5 })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].index, 0);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, 'alpha beta gamma alpha beta');
    // capped by max_tokens below mockllm's default length: "length", as OpenAI says
    assert.equal(c.choices[0].finish_reason, 'length');
    // prompt: "be brief" (2 words) + "alpha beta gamma" (3 words)
    assert.deepEqual(
      { p: c.usage.prompt_tokens, c: c.usage.completion_tokens, t: c.usage.total_tokens },
      { p: 5, c: 5, t: 10 },
    );
    // the SDK exposes Sluice's X-Request-Id as _request_id
    assert.match(c._request_id, /^[0-9a-f]{32}$/);
    assert.equal(response.headers.get('x-request-id'), c._request_id);
  });

  it('a caller-supplied X-Request-Id is passed back', async () => {
    const c = await client.chat.completions.create(
      { model: MODEL, messages: USER, max_tokens: 1 },
      { headers: { 'X-Request-Id': 'compat-req-0001' } },
    );
    assert.equal(c.choices[0].message.content, 'alpha');
    assert.equal(c._request_id, 'compat-req-0001');
  });

  it('stream: true yields chunks whose deltas join to the reply', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: USER,
      max_tokens: 4,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.ok(!chunk.usage, 'no usage chunk unless asked for');
      for (const ch of chunk.choices) {
        text += ch.delta.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.equal(text, 'alpha beta gamma alpha');
    assert.ok(chunks >= 4, `one chunk per token at least, got ${chunks}`);
    assert.equal(finish, 'length'); // max_tokens: 4 cut the reply
  });

  it('stream_options.include_usage adds a last chunk with usage and no choices', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: USER,
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, 3);
    assert.equal(last.usage.completion_tokens, 3);
    assert.equal(last.usage.total_tokens, 6);
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    assert.equal(text, 'alpha beta gamma');
    // only the last chunk carries usage
    assert.ok(chunks.slice(0, -1).every((c) => !c.usage));
  });

  it('the SDK stream helper accumulates the final completion', async () => {
    const runner = client.beta.chat.completions.stream({
      model: MODEL,
      messages: [{ role: 'user', content: 'one two' }],
      max_tokens: 3,
    });
    const deltas = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, 'one two one');
    assert.equal(deltas.join(''), 'one two one');
  });
});

describe('completions and embeddings', () => {
  it('completions.create returns the prompt words as text', async () => {
    const c = await client.completions.create({ model: MODEL, prompt: 'one two three', max_tokens: 2 });
    assert.equal(c.object, 'text_completion');
    assert.equal(c.choices[0].text, 'one two');
    assert.equal(c.usage.prompt_tokens, 3);
    assert.equal(c.usage.completion_tokens, 2);
    assert.equal(c.usage.total_tokens, 5);
  });

  it('completions.create with stream: true', async () => {
    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'red green',
      max_tokens: 3,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices.map((c) => c.text).join('');
    assert.equal(text, 'red green red');
  });

  it('embeddings.create: two inputs give two unit vectors of the mock dimension', async () => {
    // no encoding_format: the SDK asks for base64 and decodes it itself
    const e = await client.embeddings.create({ model: MODEL, input: ['first text', 'second text'] });
    assert.equal(e.object, 'list');
    assert.equal(e.data.length, 2);
    assert.deepEqual(e.data.map((d) => d.index), [0, 1]);
    for (const d of e.data) {
      assert.equal(d.object, 'embedding');
      assert.equal(d.embedding.length, embedDim);
      const norm = Math.hypot(...d.embedding);
      assert.ok(Math.abs(norm - 1) < 1e-4, `unit norm, got ${norm}`);
    }
    assert.notDeepEqual(e.data[0].embedding, e.data[1].embedding);
    assert.equal(e.usage.prompt_tokens, 4);

    // the float encoding gives the same vectors (float32 precision)
    const f = await client.embeddings.create({
      model: MODEL,
      input: ['first text', 'second text'],
      encoding_format: 'float',
    });
    for (let i = 0; i < 2; i++) {
      assert.equal(f.data[i].embedding.length, embedDim);
      f.data[i].embedding.forEach((x, j) => {
        assert.ok(Math.abs(x - e.data[i].embedding[j]) < 1e-6, `vector ${i}[${j}]: ${x} vs ${e.data[i].embedding[j]}`);
      });
    }
  });
});

describe('models', () => {
  it('models.list returns every configured group', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['mock-model', 'mock-small']);
    for (const m of page.data) {
      assert.equal(m.object, 'model');
      assert.equal(m.owned_by, 'sluice');
      assert.ok(Number.isInteger(m.created) && m.created > 1_600_000_000, `created ${m.created}`);
    }
    // auto-pagination sees the same models once each
    const seen = [];
    for await (const m of client.models.list()) seen.push(m.id);
    assert.deepEqual(seen.sort(), ['mock-model', 'mock-small']);
  });

  it('models.retrieve returns one model', async () => {
    const m = await client.models.retrieve('mock-small');
    assert.equal(m.id, 'mock-small');
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'sluice');
  });

  it('models.retrieve of an unknown id is a NotFoundError', async () => {
    const e = await rejection(client.models.retrieve('no-such-model'));
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
  });
});

describe('errors', () => {
  it('an unknown model is a NotFoundError with code, param and type', async () => {
    const e = await rejection(client.chat.completions.create({ model: 'no-such-model', messages: USER }));
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e}`);
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.param, 'model');
    assert.equal(typeof e.type, 'string');
    assert.ok(e.type.length > 0);
    assert.match(e.message, /^404 /);
    assert.match(e.message, /no-such-model/);
    assert.match(e.request_id, /^[0-9a-f]{32}$/);
  });

  it('temperature: 5 is a BadRequestError for param temperature', async () => {
    const e = await rejection(
      client.chat.completions.create({ model: MODEL, messages: USER, temperature: 5 }),
    );
    assert.ok(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, 'temperature');
    assert.equal(e.type, 'invalid_request_error');
  });

  it('a wrong API key is an AuthenticationError', async () => {
    const bad = new OpenAI({ baseURL, apiKey: 'sk-wrong-key', maxRetries: 0, timeout: 15_000 });
    const e = await rejection(bad.chat.completions.create({ model: MODEL, messages: USER }));
    assert.ok(e instanceof OpenAI.AuthenticationError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    assert.equal(e.param, null);
    assert.match(e.message, /^401 .*API key/);
    const e2 = await rejection(bad.embeddings.create({ model: MODEL, input: 'x' }));
    assert.ok(e2 instanceof OpenAI.AuthenticationError, `got ${e2?.constructor?.name}: ${e2}`);
  });

  it('an upstream 500 is a 502 InternalServerError with code upstream_error', async () => {
    // Extra body fields: this SDK version sends unknown params as they are
    // (in TypeScript they would need a cast or @ts-expect-error).
    const e = await rejection(
      client.chat.completions.create({ model: MODEL, messages: USER, mock: { status: 500 } }),
    );
    assert.ok(e instanceof OpenAI.InternalServerError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 502);
    assert.equal(e.code, 'upstream_error');
    assert.match(e.message, /500/);
  });

  it('an upstream 429 is a RateLimitError', async () => {
    const e = await rejection(
      client.chat.completions.create({ model: MODEL, messages: USER, mock: { status: 429, retry_after: 1 } }),
    );
    assert.ok(e instanceof OpenAI.RateLimitError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 429);
    assert.equal(e.headers['retry-after'], '1');
  });

  it('a stream cut mid-way throws an APIError after the first chunks', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: USER,
      max_tokens: 20,
      stream: true,
      mock: { cut_after: 2 },
    });
    let text = '';
    let caught = null;
    try {
      for await (const chunk of stream) text += chunk.choices.map((c) => c.delta.content ?? '').join('');
    } catch (e) {
      caught = e;
    }
    assert.ok(caught, 'the iterator must throw');
    assert.ok(caught instanceof OpenAI.APIError, `got ${caught?.constructor?.name}: ${caught}`);
    assert.equal(caught.code, 'upstream_error');
    assert.equal(text, 'alpha beta', 'the two chunks before the cut were yielded');
    // the gateway is fine afterwards
    const c = await client.chat.completions.create({ model: MODEL, messages: USER, max_tokens: 1 });
    assert.equal(c.choices[0].message.content, 'alpha');
  });
});
