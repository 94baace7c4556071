import type { Config } from '../config/config.js';
import { PreviewRenderer } from './preview.js';
import type { Renderer } from './renderer.js';

/** The renderer the config names: `preview` (built in) or `comfyui` (one or more ComfyUI URLs). */
export async function createRenderer(config: Pick<Config, 'renderer' | 'previewStepMs' | 'comfyuiUrls'>): Promise<Renderer> {
  if (config.renderer === 'comfyui') {
    // Loaded only when chosen, so a preview-only install never touches the ComfyUI client.
    const modulePath = './comfyui/renderer.js';
    let loaded: { ComfyUIRenderer?: new (options: { urls: string[] }) => Renderer };
    try {
      loaded = (await import(modulePath)) as typeof loaded;
    } catch {
      throw new Error('CELFORGE_RENDERER=comfyui: the ComfyUI renderer is not part of this build');
    }
    if (!loaded.ComfyUIRenderer) throw new Error('CELFORGE_RENDERER=comfyui: the ComfyUI renderer is not part of this build');
    return new loaded.ComfyUIRenderer({ urls: config.comfyuiUrls });
  }
  return new PreviewRenderer({ stepDelayMs: config.previewStepMs });
}
