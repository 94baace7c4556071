import { expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { limitTestRoutes } from './routes.js';

describeEachDialect('client address and CELFORGE_TRUST_PROXY', (dialect) => {
  const t = useTestApp(dialect, { trustProxy: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'] }, { extraRoutes: limitTestRoutes });
  const seen = async (remoteAddress: string, forwardedFor?: string) => {
    const response = await t.app.inject({
      url: '/api/anime/_test/whoami',
      remoteAddress,
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    });
    return (response.json() as { ip: string }).ip;
  };

  it('believes X-Forwarded-For from a listed proxy address or CIDR', async () => {
    expect(await seen('127.0.0.1', '203.0.113.7')).toBe('203.0.113.7');
    expect(await seen('10.20.30.40', '203.0.113.8')).toBe('203.0.113.8');
    expect(await seen('fd12::1', '2001:db8::5')).toBe('2001:db8::5');
  });

  it('takes the nearest untrusted hop of a chain, not the client-written first entry', async () => {
    expect(await seen('10.0.0.1', '198.51.100.66, 203.0.113.9')).toBe('203.0.113.9');
    expect(await seen('10.0.0.1', '198.51.100.66, 203.0.113.9, 10.0.0.2')).toBe('203.0.113.9');
  });

  it('ignores X-Forwarded-For from any other peer', async () => {
    expect(await seen('192.0.2.1', '203.0.113.7')).toBe('192.0.2.1');
    expect(await seen('11.0.0.1', '127.0.0.1')).toBe('11.0.0.1');
    expect(await seen('127.0.0.2', '203.0.113.7')).toBe('127.0.0.2');
    expect(await seen('192.0.2.1')).toBe('192.0.2.1');
  });
});

describeEachDialect('client address without trusted proxies', (dialect) => {
  const t = useTestApp(dialect, {}, { extraRoutes: limitTestRoutes });
  it('never reads X-Forwarded-For', async () => {
    const response = await t.app.inject({ url: '/api/anime/_test/whoami', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.7' } });
    expect(response.json()).toEqual({ ip: '127.0.0.1' });
  });
});
