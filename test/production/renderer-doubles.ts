import { PreviewRenderer } from '../../src/renderers/preview.js';
import { RendererError, type RenderContext, type RenderOutput, type RenderRequest, type Renderer, type RendererHealth } from '../../src/renderers/renderer.js';

/**
 * The preview renderer, except that a prompt starting with "hold:" keeps rendering (at 10 %)
 * until it is aborted or 20 s pass: a job that stays running for as long as a test needs.
 */
export class HoldingRenderer implements Renderer {
  readonly name = 'preview';
  readonly #preview = new PreviewRenderer({ stepDelayMs: 0 });
  aborted = 0;

  async render(request: RenderRequest, context: RenderContext): Promise<RenderOutput[]> {
    if (!request.prompt.startsWith('hold:')) return this.#preview.render(request, context);
    context.onProgress(10);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 20_000);
      context.signal.addEventListener('abort', () => {
        this.aborted += 1;
        clearTimeout(timer);
        reject(context.signal.reason);
      });
    });
    return this.#preview.render(request, context);
  }

  health(): Promise<RendererHealth> {
    return this.#preview.health();
  }
}

/** A scripted renderer: each call takes the next behaviour; counts calls per job. */
export class ScriptedRenderer implements Renderer {
  readonly name = 'scripted';
  readonly calls = new Map<string, number>();
  readonly #preview = new PreviewRenderer({ stepDelayMs: 0 });

  constructor(private readonly behaviour: (request: RenderRequest, call: number, context: RenderContext) => Promise<'render' | void>) {}

  async render(request: RenderRequest, context: RenderContext): Promise<RenderOutput[]> {
    const call = (this.calls.get(request.jobId) ?? 0) + 1;
    this.calls.set(request.jobId, call);
    await this.behaviour(request, call, context);
    return this.#preview.render({ ...request, width: 64, height: 64 }, context);
  }

  async health(): Promise<RendererHealth> {
    return { name: this.name, ok: true };
  }
}

export const retryable = () => new RendererError('The renderer is busy; the job will be retried.', true);
export const permanent = () => new RendererError('This prompt could not be rendered.', false);
