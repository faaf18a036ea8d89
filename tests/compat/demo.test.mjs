// The demo model through the official OpenAI Node SDK: held-out catalogue
// questions (phrasings the training corpus never contains) about facts the
// model was trained on; most answers must contain the expected fact.
//
// demo.sh starts sluice serving data/models/demo.gguf as sluice-demo and passes:
//   SLUICE_BASE_URL  http://127.0.0.1:PORT/v1
//   SLUICE_API_KEY   the one key in the config's server.api_keys
//   DEMO_EVAL        data/models/demo-eval.jsonl: {"question", "expect"} per line,
//                    4 per product (price, warranty, return window, colours)
//
// Run with: bash demo.sh

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import OpenAI from 'openai';

const baseURL = process.env.SLUICE_BASE_URL;
const apiKey = process.env.SLUICE_API_KEY;
const evalPath = process.env.DEMO_EVAL;
if (!baseURL || !apiKey || !evalPath) {
  throw new Error('SLUICE_BASE_URL, SLUICE_API_KEY and DEMO_EVAL must be set (use demo.sh)');
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
// Every held-out question is asked (80: price, warranty, return window and
// colours of each of the 20 products; a tiny model answers each in tens of
// milliseconds), so that the rate is measured on more than a handful.
//
// The threshold, 60 of 80 (75 %): the demo model that scripts/demo_model.sh
// builds (seed 1, two threads: the same file on any machine with the same
// BLAS) answered 67/80 (84 %) when measured. Five other training runs of the
// same corpus (other seeds and thread counts, with and without the loss mask
// and document-start windows) answered 63 to 72 of 80 (79-90 %), so a model
// built with another BLAS or CPU could plausibly land anywhere in that range;
// 60 sits 3 answers below the worst of those runs. It is still far above what
// a model that ignored the question's attribute would get (about 1 in 4: one
// of the product's four facts); the previous demo model (8 phrasings per
// attribute, no masking) got 21/80 (26 %) and would fail.
const THRESHOLD = 60;
const MIN_QUESTIONS = 80;

it('answers most held-out catalogue questions with the right fact', async () => {
  const lines = readFileSync(evalPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  assert.ok(lines.length >= MIN_QUESTIONS, `${evalPath}: ${lines.length} questions`);
  const picked = lines.map((l) => JSON.parse(l));
  let right = 0;
  const misses = [];
  for (const q of picked) {
    const c = await client.chat.completions.create({
      model: 'sluice-demo',
      messages: [{ role: 'user', content: q.question }],
      temperature: 0,
      max_tokens: 40,
    });
    assert.equal(c.choices[0].message.role, 'assistant');
    const text = c.choices[0].message.content ?? '';
    if (text.includes(q.expect)) right++;
    else misses.push(`  ${q.question} -> ${JSON.stringify(text)} (expected ${q.expect})`);
  }
  console.log(`demo model: ${right}/${picked.length} held-out answers contain the expected fact ` +
              `(${Math.round((100 * right) / picked.length)} %; threshold ${THRESHOLD})`);
  if (misses.length) console.log('misses:\n' + misses.join('\n'));
  assert.ok(right >= THRESHOLD, `${right}/${picked.length} right, below the threshold ${THRESHOLD}`);
});
