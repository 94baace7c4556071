/** Drives a browser's part of the code flow at a test provider over HTTP: cookies kept, redirects followed by hand. */
export class ProviderBrowser {
  private readonly jar = new Map<string, string>();

  private remember(response: Response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      this.jar.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
    }
  }

  private get cookie() {
    return [...this.jar].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  private async request(url: string, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie: this.cookie } });
    this.remember(response);
    return response;
  }

  /**
   * From the provider's authorization URL to the redirect back to Celforge: signs in as `login` on
   * the provider's page when it asks. Returns the callback URL the provider sent the browser to.
   */
  async authorize(authorizationUrl: string, login: string, callbackPrefix: string): Promise<URL> {
    let url = authorizationUrl;
    for (let hop = 0; hop < 10; hop++) {
      if (url.startsWith(callbackPrefix)) return new URL(url);
      const here = new URL(url);
      let response = await this.request(url);
      if (response.status === 200 && /\/interaction\//.test(here.pathname)) {
        response = await this.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ login }).toString() });
      }
      const location = response.headers.get('location');
      if (!location) throw new Error(`the provider stopped at ${here.pathname} with ${response.status}: ${(await response.text()).slice(0, 300)}`);
      url = new URL(location, here).href;
    }
    throw new Error('too many redirects at the provider');
  }
}
