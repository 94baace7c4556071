import { expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn } from '../support/users.js';

describeEachDialect('text that is not what it seems: invalid UTF-8, invisible prompts', (dialect) => {
  const t = useTestApp(dialect, {}, { worker: false });
  const jobsOf = (userId: string) => t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', userId).execute();

  it('a JSON body with invalid UTF-8 is refused with a clear problem, not silently repaired', async () => {
    const user = await signIn(t.app);
    for (const bad of [Buffer.from([0xff, 0xfe]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0xaf])]) {
      const payload = Buffer.concat([Buffer.from('{"prompt":"a fox '), bad, Buffer.from('","type":"image"}')]);
      const response = await t.app.inject({
        method: 'POST',
        url: '/api/anime/generate',
        headers: { ...user.authorization, 'content-type': 'application/json' },
        payload,
      });
      expect(response.statusCode, bad.toString('hex')).toBe(400);
      expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:malformed-json', detail: 'The body is not valid UTF-8.' });
    }
    // valid multi-byte text still passes byte for byte
    const good = await t.app.inject({
      method: 'POST',
      url: '/api/anime/generate',
      headers: { ...user.authorization, 'content-type': 'application/json' },
      payload: Buffer.from('{"prompt":"狐 — 🦊 café","type":"image"}'),
    });
    expect(good.statusCode).toBe(202);
    expect(good.json().prompt).toBe('狐 — 🦊 café');
    expect(await jobsOf(user.userId)).toHaveLength(1);
  });

  it('a prompt of only invisible characters is refused; visible text around them is kept', async () => {
    const user = await signIn(t.app);
    const generate = (prompt: string) =>
      t.app.inject({ method: 'POST', url: '/api/anime/generate', headers: user.authorization, payload: { prompt, type: 'image' } });
    for (const prompt of ['\u200b', '\u200b\u200c\u200d\u2060\ufeff', ' \u200e\u200f ', '\u3164\u3164', '\u2800', '\u034f\ufe0f', '\u00a0\u2003']) {
      const response = await generate(prompt);
      expect(response.statusCode, JSON.stringify(prompt)).toBe(400);
      expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:bad-request', errors: [{ pointer: '/prompt' }] });
    }
    expect(await jobsOf(user.userId)).toHaveLength(0);
    const mixed = await generate('a\u200bfox');
    expect(mixed.statusCode).toBe(202);
    expect(mixed.json().prompt).toBe('a\u200bfox');
  });
});
