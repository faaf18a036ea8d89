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
const QUESTIONS = 20;
// The threshold: with the demo configuration (scripts/demo_model.sh) the
// model answered MEASURED_OF_20 of these 20 questions correctly (and
// MEASURED_ALL of all 80 held-out questions). The model is deterministic
// for its seed, but its build is bitwise repeatable only for the same thread
// count and BLAS, so a model trained elsewhere may differ a little; the
// margin below allows for that, and 14/20 (70 %) is still "most answers",
// far above what a model that ignored the question's attribute would get
// (about 1 in 4: the product's other facts).
const THRESHOLD = 14;

it('answers most held-out catalogue questions with the right fact', async () => {
  const lines = readFileSync(evalPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  assert.ok(lines.length >= 4 * QUESTIONS, `${evalPath}: ${lines.length} questions`);
  const all = lines.map((l) => JSON.parse(l));
  // one question per product, cycling through the four attributes
  const picked = [];
  for (let i = 0; i < QUESTIONS; i++) picked.push(all[4 * i + (i % 4)]);
  let right = 0;
  const misses = [];
  for (const q of picked) {
    const c = await client.chat.completions.create({
      model: 'sluice-demo',
      messages: [{ role: 'user', content: q.question }],
      temperature: 0,
      max_tokens: 40,
    });
    const text = c.choices[0].message.content ?? '';
    if (text.includes(q.expect)) right++;
    else misses.push(`  ${q.question} -> ${JSON.stringify(text)} (expected ${q.expect})`);
  }
  console.log(`demo model: ${right}/${picked.length} held-out answers contain the expected fact ` +
              `(${Math.round((100 * right) / picked.length)} %; threshold ${THRESHOLD})`);
  if (misses.length) console.log('misses:\n' + misses.join('\n'));
  assert.ok(right >= THRESHOLD, `${right}/${picked.length} right, below the threshold ${THRESHOLD}`);
});
