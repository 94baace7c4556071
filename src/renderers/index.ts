import type { Config } from '../config/config.js';
import { ComfyUIRenderer } from './comfyui/renderer.js';
import type { SlotLedger } from './comfyui/slot-leases.js';
import { PreviewRenderer } from './preview.js';
import type { Renderer } from './renderer.js';

/**
 * The renderer the config names: `preview` (built in) or `comfyui` (one or more ComfyUI URLs).
 * `sharedSlots` makes the places of a ComfyUI fleet shared with other workers (scale-out).
 */
export function createRenderer(
  config: Pick<Config, 'renderer' | 'previewStepMs' | 'comfyuiUrls' | 'comfyuiCheckpoint' | 'comfyuiMaxOutputBytes' | 'jobTimeoutSeconds' | 'comfyuiDepths'>,
  options: { sharedSlots?: () => SlotLedger } = {},
): Renderer {
  if (config.renderer === 'comfyui') {
    return new ComfyUIRenderer({
      urls: config.comfyuiUrls,
      checkpoint: config.comfyuiCheckpoint,
      maxOutputBytes: config.comfyuiMaxOutputBytes,
      depths: config.comfyuiDepths,
      ledger: options.sharedSlots?.(),
      // The worker's own time limit governs the job; the renderer's is a backstop just behind it.
      jobTimeoutMs: (config.jobTimeoutSeconds + 30) * 1000,
    });
  }
  return new PreviewRenderer({ stepDelayMs: config.previewStepMs });
}
